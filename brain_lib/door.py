"""The front door: candles from outside (a user's file) checked by the raw.ohlcv suite
before any of them lands.

:func:`land_candles` is what ``brain ingest ohlcv`` runs:

1. **Shape** (:func:`brain_lib.warehouse.check_candles`): the columns, timestamps and
   numbers must be readable, booleans are not numbers, a stamp may not repeat. A file
   that fails here is refused whole, with the row, and nothing is written.
2. **Staging**: the rows, numbered as in the file (1 = the first after the header),
   are copied into ``raw.ohlcv_landing`` under a new batch id and committed, since
   Great Expectations reads through its own connection.
3. **The suite**: GX runs the ``raw.ohlcv`` suite (``expectations/ohlcv.py``: finite,
   positive and plausible prices, high and low around open and close, the bar grid,
   one candle per bar, the date range, isolated spikes, gaps, moves) on that batch.
4. **One transaction**: the results go to ``raw.data_quality_results``; the rows that
   break a *blocking* row-level rule go to ``raw.quarantine_ohlcv`` with the rule,
   ``landed = false`` and their file row; every other row is merged into
   ``raw.ohlcv`` (:func:`brain_lib.warehouse.merge_staged_ohlcv`: added, unchanged,
   or a revision of a stored candle, applied or refused by its rule); the batch is
   deleted from the landing table. ``strict``: if any row breaks a blocking rule,
   nothing lands and nothing is quarantined (the file is refused whole).

Warnings (gaps, large moves) never keep a row out; they are reported, and the
training gate treats them as it always does. A batch left in the landing table by a
killed process is deleted by the next call after a day; a failure in steps 3–4
deletes its own batch.

    >>> report = land_candles(dsn, frame, exchange="mydesk", symbol="BTC/USDT",
    ...                       timeframe="1h", source="btc.csv")        # doctest: +SKIP
    >>> print("\\n".join(report.lines()))                              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from brain_lib import warehouse
from brain_lib.quality import (
    TABLES,
    ExpectationResult,
    QualityReport,
    TableSpec,
    _run_checkpoint,
    _substitute_batch,
    record_results,
)

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

    from expectations.settings import QualitySettings

__all__ = ["LANDING", "DoorReport", "RuleOutcome", "land_candles"]

log = logging.getLogger(__name__)

# the landing table, validated with the raw.ohlcv suite; filtered on its batch only
LANDING = TableSpec(
    name="ohlcv_landing",
    columns=("batch_id", "source_row", *TABLES["ohlcv"].columns),
    key=("batch_id", "source_row"),
    filters={"batch": "batch_id"},
    suite_name="raw.ohlcv",
)
STALE_BATCH = "1 day"


@dataclass(frozen=True)
class RuleOutcome:
    """A rule that rows of the batch broke: its rows, as file rows (first few)."""

    expectation: str
    description: str
    severity: str
    count: int
    rows: tuple[int, ...]

    def line(self, verb: str) -> str:
        head = ", ".join(str(r) for r in self.rows[:5])
        more = ", …" if self.count > len(self.rows[:5]) else ""
        where = f" (row {head}{more})" if self.rows else ""
        return f"{verb}: {self.description} [{self.expectation}]: {self.count} row(s){where}"


@dataclass(frozen=True)
class DoorReport:
    """What the door did with one file."""

    source: str
    exchange: str
    symbol: str
    timeframe: str
    rows: int
    run_id: str
    refused: tuple[RuleOutcome, ...]
    warnings: tuple[RuleOutcome, ...]
    load: warehouse.LoadReport
    quarantined: int = 0  # copies newly written to raw.quarantine_ohlcv
    bad_rows: int = 0  # rows of the file that break a blocking rule
    # why the whole file was refused (nothing written), or None
    refused_whole: str | None = None
    quality: QualityReport | None = field(default=None, repr=False)

    @property
    def clean(self) -> bool:
        """Every row landed (or was already there) and no revision was refused."""
        return not self.refused and not self.load.refused

    def lines(self) -> list[str]:
        """The report as a person reads it: one line per broken rule, then the sum."""
        what = f"{self.exchange} {self.symbol} {self.timeframe}"
        verb = "refused" if self.refused_whole else "quarantined"
        out = [f"{self.source}: {r.line(verb)}" for r in self.refused]
        out += [f"{self.source}: {r.line('warning')}" for r in self.warnings]
        if self.refused_whole:
            out.append(
                f"{self.source}: refused whole ({self.refused_whole}): {self.bad_rows} "
                "row(s) break a blocking rule; "
                f"nothing written ({what})"
            )
            return out
        load = self.load
        if load.refused:
            stamps = ", ".join(str(ts) for ts in load.refused_ts)
            out.append(
                f"{self.source}: {load.refused} revision(s) refused: those candles were "
                f"stored with other values and had settled ({stamps}"
                f"{', …' if load.refused > len(load.refused_ts) else ''}); the stored "
                "values stay, the new ones are kept in raw.ohlcv_revisions; pass "
                "--revise to apply them"
            )
        summary = f"{load.added} rows added, {load.unchanged} unchanged"
        if load.revised:
            summary += f", {load.revised} revised"
        if self.refused:
            summary += f", {self.bad_rows} quarantined (raw.quarantine_ohlcv)"
        out.append(f"{self.source}: {summary} ({what})")
        return out


def _failing_rows(conn: psycopg.Connection, result: ExpectationResult, batch_sql: str) -> list[int]:
    """The file rows of the batch that break ``result``'s rule (its own query)."""
    from psycopg import sql

    assert result.query is not None
    failing = _substitute_batch(result.query, batch_sql).replace("%", "%%")
    query = sql.SQL("SELECT DISTINCT source_row FROM ({failing}) AS failing ORDER BY 1").format(
        failing=sql.SQL(failing)
    )
    return [int(row[0]) for row in conn.execute(query).fetchall()]


def _outcome(result: ExpectationResult, rows: list[int]) -> RuleOutcome:
    count = len(rows) if rows else int(result.unexpected_count or 0)
    if not count and isinstance(result.observed_value, int):
        count = result.observed_value
    return RuleOutcome(
        expectation=result.expectation,
        description=result.description,
        severity=result.severity,
        count=count,
        rows=tuple(rows[:5]),
    )


def _stage(
    dsn: str, frame: pd.DataFrame, batch_id: str, exchange: str, symbol: str, timeframe: str
) -> None:
    """Copy the batch into raw.ohlcv_landing and commit; drop stale batches first."""
    import numpy as np

    with warehouse.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "delete from raw.ohlcv_landing where loaded_at < now() - %s::interval",
            (STALE_BATCH,),
        )
        cur.execute(
            "create temp table _landing_copy (source_row int8, ts timestamptz, open float8, "
            "high float8, low float8, close float8, volume float8) on commit drop"
        )
        payload = warehouse.binary_copy_payload(frame, np.arange(1, len(frame) + 1))
        with cur.copy(
            "copy _landing_copy (source_row, ts, open, high, low, close, volume) "
            "from stdin (format binary)"
        ) as copy:
            copy.write(payload)
        cur.execute(
            """
            insert into raw.ohlcv_landing (batch_id, source_row, exchange, symbol, timeframe,
                                           ts, open, high, low, close, volume)
            select %s, source_row, %s, %s, %s, ts, open, high, low, close, volume
            from _landing_copy
            """,
            (batch_id, exchange, symbol, timeframe),
        )


def _drop_batch(dsn: str, batch_id: str) -> None:
    try:
        with warehouse.connect(dsn) as conn:
            conn.execute("delete from raw.ohlcv_landing where batch_id = %s", (batch_id,))
    except Exception as exc:  # the batch is removed by a later call after a day
        log.warning("could not delete landing batch %s: %s", batch_id, exc)


def land_candles(
    dsn: str,
    candles: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    source: str,
    strict: bool = False,
    revise: bool = False,
    settings: QualitySettings | None = None,
    run_id: str | None = None,
) -> DoorReport:
    """Check a frame of candles (ts + OHLCV, in file order) with the raw.ohlcv suite
    and land its valid rows, quarantine the others (module docstring).

    Names are the caller's to check (:mod:`brain_lib.names`). Raises
    :class:`~brain_lib.errors.DataError` for a structural problem (nothing written),
    :class:`~brain_lib.errors.QualityError` when GX cannot run, and the warehouse's
    errors; a raised error leaves nothing of the batch behind.
    """
    import time

    from expectations.settings import QualitySettings

    settings = settings if settings is not None else QualitySettings()
    frame = warehouse.check_candles(candles, source, allow_non_finite=True)
    run = run_id or uuid.uuid4().hex
    empty = warehouse.LoadReport(0, 0)
    if frame.empty:
        return DoorReport(source, exchange, symbol, timeframe, 0, run, (), (), empty)
    batch_id = uuid.uuid4().hex
    batch_sql = (
        f"SELECT t.* FROM raw.ohlcv_landing AS t WHERE t.batch_id = '{batch_id}'"  # a uuid hex
    )
    began = time.perf_counter()
    _stage(dsn, frame, batch_id, exchange, symbol, timeframe)
    try:
        results, _, _ = _run_checkpoint(
            dsn, LANDING, {"batch": batch_id}, batch_sql, run, settings, None
        )
        quality = QualityReport(
            run_id=run,
            table="ohlcv",
            suite=LANDING.suite,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            start=None,
            end=None,
            row_count=len(frame),
            first_ts=frame["ts"].min().to_pydatetime(),
            last_ts=frame["ts"].max().to_pydatetime(),
            results=tuple(results),
            validated_at=datetime.now(UTC),
            seconds=time.perf_counter() - began,
            batch_sql=batch_sql,
        )
        with warehouse.connect(dsn) as conn:
            refused: list[tuple[ExpectationResult, list[int]]] = []
            warnings: list[RuleOutcome] = []
            for result in quality.failures:
                rows = _failing_rows(conn, result, batch_sql) if result.query else []
                if result.blocking and result.row_level:
                    refused.append((result, rows))
                else:
                    warnings.append(_outcome(result, rows))
            outcomes = tuple(_outcome(r, rows) for r, rows in refused)
            bad_rows = len({row for _, rows in refused for row in rows})
            # a blocking rule that names no rows (a gap rule made blocking) refuses all
            broken = [r for r in quality.blocking_failures if not r.row_level]
            whole = (
                "--strict"
                if strict and outcomes
                else "a blocking rule names no rows: " + ", ".join(r.expectation for r in broken)
                if broken
                else None
            )
            if whole is not None:
                conn.rollback()
                return DoorReport(
                    source,
                    exchange,
                    symbol,
                    timeframe,
                    len(frame),
                    run,
                    outcomes + tuple(_outcome(r, []) for r in broken),
                    tuple(warnings),
                    empty,
                    bad_rows=bad_rows,
                    refused_whole=whole,
                    quality=quality,
                )
            load, quarantined = _commit_batch(
                conn, quality, refused, batch_id, exchange, symbol, timeframe, source, revise
            )
    finally:
        _drop_batch(dsn, batch_id)
    return DoorReport(
        source,
        exchange,
        symbol,
        timeframe,
        len(frame),
        run,
        outcomes,
        tuple(warnings),
        load,
        quarantined=quarantined,
        bad_rows=bad_rows,
        quality=quality,
    )


def _commit_batch(
    conn: psycopg.Connection,
    quality: QualityReport,
    refused: list[tuple[ExpectationResult, list[int]]],
    batch_id: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    source: str,
    revise: bool,
) -> tuple[warehouse.LoadReport, int]:
    """Results, quarantine, the valid rows and the batch's removal: one transaction."""
    bad = sorted({row for _, rows in refused for row in rows})
    with conn.transaction(), conn.cursor() as cur:
        record_results(conn, quality)
        quarantined = 0
        for result, rows in refused:
            cur.execute(
                """
                insert into raw.quarantine_ohlcv (
                    exchange, symbol, timeframe, ts, open, high, low, close, volume,
                    loaded_at, expectation, reason, severity, run_id, landed, source,
                    source_row)
                select exchange, symbol, timeframe, ts, open, high, low, close, volume,
                       loaded_at, %s, %s, %s, %s, false, %s, source_row
                from raw.ohlcv_landing
                where batch_id = %s and source_row = any(%s)
                on conflict do nothing
                """,
                (
                    result.expectation,
                    result.description,
                    result.severity,
                    quality.run_id,
                    source,
                    batch_id,
                    rows,
                ),
            )
            quarantined += cur.rowcount
        warehouse.create_ohlcv_stage(cur)
        cur.execute(
            """
            insert into _ohlcv_stage (ts, open, high, low, close, volume)
            select ts, open, high, low, close, volume from raw.ohlcv_landing
            where batch_id = %s and not (source_row = any(%s))
            """,
            (batch_id, bad),
        )
        staged = cur.rowcount
        load = warehouse.merge_staged_ohlcv(
            cur,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            source=source,
            staged=staged,
            revise=revise,
        )
        cur.execute("delete from raw.ohlcv_landing where batch_id = %s", (batch_id,))
    return load, quarantined
