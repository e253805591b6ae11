"""Benchmark: loading candles into ``raw.ohlcv`` with Brain's COPY path vs ``DataFrame.to_sql``.

What is measured (wall-clock, ``time.perf_counter``), on a throwaway embedded PostgreSQL
started in a temporary folder (stopped and removed at the end):

1. ``copy fresh``: ``brain_lib.warehouse.copy_ohlcv`` loads ``--rows`` candles (default
   1,000,000: ``--hours`` hourly bars per symbol from ``generate_candles``, as many
   symbols as needed) into an empty ``raw.ohlcv``, one call per symbol, all in one
   transaction (as ``brain demo`` does). Each call validates the frame and, since every
   row is newer than the series' newest stored candle (none), binary-COPYs it straight
   into ``raw.ohlcv`` (the incremental fast path). The time includes the validation and
   the commit.
2. ``copy again``: the same rows once more; every row already exists, so they are
   staged in a temporary table and inserted with ``ON CONFLICT DO NOTHING``, and nothing
   is added (the idempotent path a re-run of a loader takes).
3. ``to_sql``: the obvious alternative, ``pandas.DataFrame.to_sql`` through SQLAlchemy
   (``postgresql+psycopg://``) with ``if_exists="append"``, ``chunksize=10_000`` and the
   default ``method``, into ``public.bench_to_sql`` (``like raw.ohlcv including all``,
   so the same primary key and default), emptied before each repeat. It gets one frame
   that already carries exchange/symbol/timeframe columns (building it is not timed).

4. ``server side alone`` (once, for reading the others): from a staged copy of the
   loaded rows, ``INSERT ... ON CONFLICT DO NOTHING`` into the emptied table (the part
   of ``copy_ohlcv`` no client code can speed up) and a straight binary ``COPY`` of the
   same rows (the floor of any load into this table with its primary key).

Candle generation, truncation between repeats and the row-count checks are not timed.
Copy runs are repeated ``--repeats`` times (``raw.ohlcv`` truncated before each fresh
load), ``to_sql`` ``--to-sql-repeats`` times (it is slow); medians are reported. Before
each measurement the benchmark waits (``--quiet-wait`` seconds at most) until the
machine is idle, since other processes on the CPU distort every figure.

Reading the output: one line per measurement with the median seconds and rows/s, then
``copy fresh / straight COPY`` (target at most 1.3x) and ``to_sql / copy`` = median
to_sql seconds / median fresh-copy seconds. The run ends with the row counts it
verified (``--rows`` rows in ``raw.ohlcv`` and in ``bench_to_sql``, 0 rows added by the
second COPY) and exits 1 when a count is wrong.

Run from the repository root::

    .venv/bin/python bench/bench_copy.py                 # 1 M rows
    .venv/bin/python bench/bench_copy.py --rows 200000   # quicker
    .venv/bin/python bench/bench_copy.py --quick         # 100,000 rows, one repeat

``--json PATH`` also writes the medians and two ratios (``bench/_report.py``): copy_ohlcv
(fresh) / straight binary COPY against the ``<= 1.3`` target, and to_sql / copy_ohlcv
(fresh). ``--quick`` is 100,000 rows, one repeat of each load, at most 10 s of waiting
for an idle machine.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _machine import load_note, wait_for_quiet  # bench/ is on sys.path
from _report import add_report_args, measure, ratio, write_report

from brain_lib.dbt import ensure_raw_schema
from brain_lib.market import generate_candles
from brain_lib.warehouse import (
    EmbeddedWarehouse,
    LoadReport,
    binary_copy_payload,
    connect,
    copy_ohlcv,
)

REPO = Path(__file__).resolve().parent.parent
EXCHANGE = "bench"
TIMEFRAME = "1h"
TO_SQL_TABLE = "bench_to_sql"
FLOOR_RATIO = 1.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="candles to load")
    parser.add_argument(
        "--hours", type=int, default=8760, help="hourly bars per symbol (the last one is cut)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats of both COPY loads")
    parser.add_argument("--to-sql-repeats", type=int, default=1, help="repeats of to_sql")
    parser.add_argument("--chunksize", type=int, default=10_000, help="to_sql chunksize")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic candles")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait at most for an idle machine before each measurement (0: never)",
    )
    add_report_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.to_sql_repeats = 100_000, 1, 1
        args.quiet_wait = min(args.quiet_wait, 10.0)
    for name in ("rows", "hours", "repeats", "to_sql_repeats", "chunksize"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def make_candles(rows: int, hours: int, seed: int) -> dict[str, pd.DataFrame]:
    """``rows`` candles in total: ``hours`` bars for each of ceil(rows / hours) symbols."""
    n_symbols = math.ceil(rows / hours)
    out: dict[str, pd.DataFrame] = {}
    for i in range(n_symbols):
        symbol = f"S{i:04d}/USDT"
        periods = min(hours, rows - i * hours)
        frame = generate_candles(symbol, periods, seed=seed, timeframe=TIMEFRAME)
        out[symbol] = frame.drop(columns=["regime"])
    return out


def to_sql_frame(candles: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All candles in one frame with the key columns of ``raw.ohlcv`` (for to_sql)."""
    parts = [
        frame.assign(exchange=EXCHANGE, symbol=symbol, timeframe=TIMEFRAME)
        for symbol, frame in candles.items()
    ]
    cols = ["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]
    return pd.concat(parts, ignore_index=True).loc[:, cols]


def sqlalchemy_url(dsn: str) -> str:
    """``postgresql://...`` (libpq URL, unix socket in ``?host=``) to SQLAlchemy's psycopg 3."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {dsn!r}")
    return f"postgresql+psycopg://{rest}"


def count_rows(dsn: str, table: str) -> int:
    with connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()
    return int(row[0]) if row else 0


def truncate(dsn: str, table: str) -> None:
    with connect(dsn, autocommit=True) as conn:
        conn.execute(f"truncate {table}")
        conn.execute(f"vacuum analyze {table}")
        conn.execute("checkpoint")


def time_copy(dsn: str, candles: dict[str, pd.DataFrame]) -> tuple[float, LoadReport]:
    """Seconds for loading every symbol with ``copy_ohlcv`` in one transaction."""
    added = unchanged = copied = 0
    start = time.perf_counter()
    with connect(dsn) as conn:
        for symbol, frame in candles.items():
            report = copy_ohlcv(conn, frame, exchange=EXCHANGE, symbol=symbol, timeframe=TIMEFRAME)
            added += report.added
            unchanged += report.unchanged
            copied += report.copied
    seconds = time.perf_counter() - start
    return seconds, LoadReport(added=added, unchanged=unchanged, copied=copied)


KEY_COLUMNS = "exchange, symbol, timeframe, ts, open, high, low, close, volume"


def straight_payload(candles: dict[str, pd.DataFrame]) -> list[bytes]:
    """Binary COPY payloads of every row with its key columns (built before timing)."""
    return [
        binary_copy_payload(frame, keys=(EXCHANGE, symbol, TIMEFRAME))
        for symbol, frame in candles.items()
    ]


def time_straight_copy(dsn: str, payloads: list[bytes]) -> float:
    """Seconds for a straight binary ``COPY raw.ohlcv`` of every symbol's rows (one
    COPY per symbol, as ``copy_ohlcv`` is called), one transaction, committed: the
    floor of any load into this table with its primary key (no validation, no key
    lookup, the payloads already built)."""
    start = time.perf_counter()
    with connect(dsn) as conn, conn.cursor() as cur:
        for payload in payloads:
            with cur.copy(f"copy raw.ohlcv ({KEY_COLUMNS}) from stdin (format binary)") as copy:
                copy.write(payload)
    return time.perf_counter() - start


def time_server_upsert(dsn: str, max_wait: float) -> float:
    """Seconds for the server's ``INSERT ... ON CONFLICT DO NOTHING`` of every row of
    ``raw.ohlcv`` from a staged copy into the emptied table: what the idempotent path
    asks of the server. Leaves the rows in place."""
    with connect(dsn, autocommit=True) as conn:
        conn.execute(f"create temp table bench_stage as select {KEY_COLUMNS} from raw.ohlcv")
        conn.execute("truncate raw.ohlcv")
        conn.execute("checkpoint")
        wait_for_quiet(max_wait)
        start = time.perf_counter()
        conn.execute(
            f"insert into raw.ohlcv ({KEY_COLUMNS}) select {KEY_COLUMNS} from bench_stage "
            "on conflict (exchange, symbol, timeframe, ts) do nothing"
        )
        return time.perf_counter() - start


def time_to_sql(url: str, frame: pd.DataFrame, chunksize: int) -> float:
    """Seconds for ``frame.to_sql`` (append, default method) into the bench table."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:  # open the pool's connection before timing
            conn.exec_driver_sql("select 1")
        start = time.perf_counter()
        frame.to_sql(
            TO_SQL_TABLE,
            engine,
            schema="public",
            if_exists="append",
            index=False,
            chunksize=chunksize,
        )
        return time.perf_counter() - start
    finally:
        engine.dispose()


def fmt_line(label: str, times: list[float], rows: int) -> str:
    med = statistics.median(times)
    each = ", ".join(f"{t:.2f}" for t in times)
    return f"{label:<26} {med:8.2f} s  {rows / med:>12,.0f} rows/s   (runs: {each})"


def write_json(
    path: str,
    n_rows: int,
    floor: list[float],
    fresh: list[float],
    again: list[float],
    to_sql: list[float],
    upsert: float,
) -> None:
    """The medians and the two ratios as a ``bench/_report.py`` report."""
    t_floor, t_fresh = statistics.median(floor), statistics.median(fresh)
    t_again, t_to_sql = statistics.median(again), statistics.median(to_sql)
    measures: list[dict[str, Any]] = [
        measure("rows", value=n_rows, unit="rows"),
        measure("straight binary COPY", seconds=t_floor),
        measure("copy_ohlcv, fresh table", seconds=t_fresh),
        measure("copy_ohlcv, all unchanged", seconds=t_again),
        measure("DataFrame.to_sql", seconds=t_to_sql),
        measure("server side alone: INSERT ... ON CONFLICT from staged rows", seconds=upsert),
        measure("copy_ohlcv, fresh table: rows/s", value=n_rows / t_fresh, unit="rows/s"),
    ]
    ratios = [
        ratio(
            f"bulk load {n_rows:,} rows: copy_ohlcv (fresh) / straight COPY",
            brain=t_fresh,
            other=t_floor,
            other_name="straight binary COPY",
            ratio=t_fresh / t_floor,
            target=f"<= {FLOOR_RATIO}",
        ),
        ratio(
            f"bulk load {n_rows:,} rows: to_sql / copy_ohlcv (fresh)",
            brain=t_fresh,
            other=t_to_sql,
            other_name="DataFrame.to_sql",
        ),
    ]
    write_report(path, "copy", measures, ratios)


def run(args: argparse.Namespace) -> int:
    print(f"before start: {load_note()}")
    t0 = time.perf_counter()
    candles = make_candles(args.rows, args.hours, args.seed)
    n_rows = sum(len(f) for f in candles.values())
    big = to_sql_frame(candles)
    print(
        f"generated {n_rows:,} candles ({len(candles)} symbols x up to {args.hours} bars) "
        f"in {time.perf_counter() - t0:.1f} s (not timed)"
    )

    tmp = Path(tempfile.mkdtemp(prefix="brain-bench-copy-"))
    warehouse = EmbeddedWarehouse(tmp)
    failures: list[str] = []
    try:
        dsn = warehouse.start()
        ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=tmp / "dbt")
        with connect(dsn, autocommit=True) as conn:
            conn.execute(f"create table public.{TO_SQL_TABLE} (like raw.ohlcv including all)")
        version = ""
        with connect(dsn, autocommit=True) as conn:
            row = conn.execute("show server_version").fetchone()
            version = str(row[0]) if row else "?"
        print(f"embedded PostgreSQL {version} in {tmp}")

        payloads = straight_payload(candles)
        fresh: list[float] = []
        floor: list[float] = []
        again: list[float] = []
        again_added: list[int] = []
        for i in range(args.repeats):
            truncate(dsn, "raw.ohlcv")
            wait_for_quiet(args.quiet_wait)
            floor.append(time_straight_copy(dsn, payloads))
            truncate(dsn, "raw.ohlcv")
            wait_for_quiet(args.quiet_wait)
            seconds, report = time_copy(dsn, candles)
            fresh.append(seconds)
            if report.added != n_rows or report.copied != n_rows:
                failures.append(
                    f"copy fresh #{i + 1} added {report.added:,} ({report.copied:,} by the "
                    f"fast path), not {n_rows:,}"
                )
            wait_for_quiet(args.quiet_wait)
            seconds, report = time_copy(dsn, candles)
            again.append(seconds)
            again_added.append(report.added)
            if report.added != 0 or report.unchanged != n_rows:
                failures.append(
                    f"copy again #{i + 1} added {report.added:,} (expected 0), "
                    f"unchanged {report.unchanged:,}"
                )
            print(
                f"  repeat {i + 1}: straight COPY {floor[-1]:.2f} s, copy_ohlcv fresh "
                f"{fresh[-1]:.2f} s, again {again[-1]:.2f} s"
            )

        upsert = time_server_upsert(dsn, args.quiet_wait)
        print(f"  server side only: upsert from a staged table {upsert:.2f} s")

        url = sqlalchemy_url(dsn)
        to_sql: list[float] = []
        for i in range(args.to_sql_repeats):
            truncate(dsn, f"public.{TO_SQL_TABLE}")
            wait_for_quiet(args.quiet_wait)
            to_sql.append(time_to_sql(url, big, args.chunksize))
            print(f"  to_sql repeat {i + 1}: {to_sql[-1]:.2f} s")

        in_raw = count_rows(dsn, "raw.ohlcv")
        in_bench = count_rows(dsn, f"public.{TO_SQL_TABLE}")
        if in_raw != n_rows:
            failures.append(f"raw.ohlcv holds {in_raw:,} rows, not {n_rows:,}")
        if in_bench != n_rows:
            failures.append(f"{TO_SQL_TABLE} holds {in_bench:,} rows, not {n_rows:,}")

        ratio = statistics.median(to_sql) / statistics.median(fresh)
        ratio_again = statistics.median(to_sql) / statistics.median(again)
        to_floor = statistics.median(fresh) / statistics.median(floor)
        print()
        print(f"{'load of ' + format(n_rows, ',') + ' rows':<26} {'median':>10}  {'rate':>17}")
        print(fmt_line("straight binary COPY", floor, n_rows))
        print(fmt_line("copy_ohlcv, fresh table", fresh, n_rows))
        print(fmt_line("copy_ohlcv, all unchanged", again, n_rows))
        print(fmt_line("DataFrame.to_sql", to_sql, n_rows))
        verdict = "met" if to_floor <= FLOOR_RATIO else "MISSED"
        print(
            f"copy (fresh) / straight COPY: {to_floor:5.2f}x  (target <= {FLOOR_RATIO}x: {verdict})"
        )
        print(f"to_sql / copy (fresh):     {ratio:6.1f}x")
        print(f"to_sql / copy (unchanged): {ratio_again:6.1f}x")
        print(
            f"server side alone (once): INSERT ... ON CONFLICT from a staged table "
            f"{upsert:.2f} s ({n_rows / upsert:,.0f} rows/s; the idempotent path's server "
            f"cost, {upsert / statistics.median(floor):.2f}x the straight COPY)"
        )
        print(
            f"rows: raw.ohlcv {in_raw:,}, {TO_SQL_TABLE} {in_bench:,}, "
            f"added by the second COPY: {', '.join(f'{n:,}' for n in again_added)}"
        )
        if args.json:
            write_json(args.json, n_rows, floor, fresh, again, to_sql, upsert)
    finally:
        try:
            warehouse.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for failure in failures:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
