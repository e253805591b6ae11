"""Data quality: run the Great Expectations suites (``expectations/``) against the
warehouse, record every result, quarantine failing rows, and gate training windows.

What a validation is
--------------------
A *batch* is a row range of one raw table: the rows with the given exchange, symbol and
timeframe (each optional) and ``start <= ts < end`` (each bound optional), as a GX query
asset over the real PostgreSQL table. GX runs the table's suite through a checkpoint
(Data Docs updated when a folder is given); every rule is a SQL statement over the batch
that PostgreSQL executes, and GX fetches only one count per rule. Nothing is loaded
into pandas.

    report = validate_table(dsn, "ohlcv", exchange="binance", symbol="BTC/USDT",
                            timeframe="1h", start=t0, end=t1, run_id=flow_run_id)
    with connect(dsn) as conn:
        record_results(conn, report)   # raw.data_quality_results, one row per expectation
        quarantine(conn, report)       # raw.quarantine_<table>, failing rows + reason

or all three at once for several tables: :func:`run_quality_checks` (``brain quality
check``).

Severity and the gate
---------------------
Each expectation is ``blocking`` (GX severity critical) or ``warning`` (defaults and
overrides: ``expectations/README.md``, ``QualitySettings.severity``).
:func:`gate_training_window` validates a symbol's training window, minus the rows
already quarantined, records the results and quarantines new failures. A blocking
failure (or an empty window) means: do not train this symbol in this run; the champion
stays and :attr:`GateDecision.reasons` says why. Warnings never block. Rows quarantined
by this run are left out of the next run's window, which then passes.

Quarantine
----------
Rows that fail a row-level expectation are copied, with the expectation and its
reason, to ``raw.quarantine_<table>`` by re-running the very query GX ran on the same
batch (so the rows copied are the rows counted). The copy is keyed by the raw row's
key + expectation: quarantining again adds nothing. Neither the copy nor the raw row
is ever deleted; training leaves out every candle that has a copy
(:func:`quarantined_timestamps`, :func:`exclude_quarantined`).

Uniqueness
----------
raw.ohlcv's primary key (exchange, symbol, timeframe, ts) refuses a literal duplicate,
so "unique (exchange, symbol, timeframe, ts)" could never fail on it. The suite checks
uniqueness per *bar* instead (``expect_one_candle_per_bar``): two rows whose ts fall in
one bar of the timeframe (an open-time and a close-time stamp, millisecond jitter) pass
the key and are still two candles for one bar; on a relation without the key (a landing
table, a copy) the same rule catches literal duplicates. Details: ``expectations/ohlcv.py``.

Data Docs
---------
With ``docs_dir`` the validation is rendered into the GX Data Docs site in that folder
(``report.docs_index`` is its ``index.html``; default folder :func:`data_docs_dir`). The
results are kept as JSON in ``<docs_dir>/validation_results``, from which GX builds the
index, so pages of earlier runs and processes stay listed.

SQL safety
----------
Table and column names come from the fixed allow-list :data:`TABLES` and are quoted
with ``psycopg.sql.Identifier``. The values of the statements this module writes are
parameters. The batch SELECT is shared with GX, which takes SQL text (a query asset),
so its filter values are SQL literals made by :func:`_text_literal` / :func:`_ts_literal`:
quotes doubled, ``:`` and ``\\`` written as Unicode escapes so that SQLAlchemy's
``text()``, which GX wraps the batch in, can never read a bind parameter inside a value;
timestamps are formatted from ``datetime`` objects.

Performance
-----------
One ephemeral GX context per process, reused (suites are synced with
``add_or_update`` only when the settings change); GX imports lazily (~5 s); results in
the BASIC format, and rules that ask only for a count. Validations in one process run
one at a time (the context is not thread-safe). ``bench/bench_quality.py`` measures
1,000,000 candles.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from brain_lib.errors import ConfigError, QualityError, WarehouseError
from brain_lib.warehouse import open_connection, parse_dsn

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

    from expectations.settings import QualitySettings

__all__ = [
    "TABLES",
    "ExpectationResult",
    "GateDecision",
    "QualityReport",
    "TableSpec",
    "data_docs_dir",
    "exclude_quarantined",
    "gate_training_window",
    "quarantine",
    "quarantined_timestamps",
    "record_results",
    "render_data_docs",
    "run_quality_checks",
    "validate_table",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableSpec:
    """How one raw table is validated: its columns, key, filters and quarantine table."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    # filter argument of validate_table -> column of the table
    filters: Mapping[str, str]
    time_column: str = "ts"
    quarantine_table: str | None = None
    # the quarantine table has `landed` (false: a row refused at the door, never in
    # the raw table, which must not keep a later valid row of its key out)
    quarantine_has_landed: bool = False
    # the suite, when it is not raw.<name> (the door's landing table runs raw.ohlcv's)
    suite_name: str | None = None

    @property
    def suite(self) -> str:
        return self.suite_name or f"raw.{self.name}"


TABLES: dict[str, TableSpec] = {
    "ohlcv": TableSpec(
        name="ohlcv",
        columns=(
            "exchange",
            "symbol",
            "timeframe",
            "ts",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "loaded_at",
        ),
        key=("exchange", "symbol", "timeframe", "ts"),
        filters={"exchange": "exchange", "symbol": "symbol", "timeframe": "timeframe"},
        quarantine_table="quarantine_ohlcv",
        quarantine_has_landed=True,
    ),
    "funding_rates": TableSpec(
        name="funding_rates",
        columns=("exchange", "symbol", "ts", "funding_rate", "mark_price", "loaded_at"),
        key=("exchange", "symbol", "ts"),
        filters={"exchange": "exchange", "symbol": "symbol"},
        quarantine_table="quarantine_funding_rates",
    ),
    "open_interest": TableSpec(
        name="open_interest",
        columns=(
            "exchange",
            "symbol",
            "period",
            "ts",
            "open_interest_amount",
            "open_interest_value",
            "loaded_at",
        ),
        key=("exchange", "symbol", "period", "ts"),
        # the sampling period plays the part of the timeframe
        filters={"exchange": "exchange", "symbol": "symbol", "timeframe": "period"},
        quarantine_table="quarantine_open_interest",
    ),
    "liquidations": TableSpec(
        name="liquidations",
        columns=(
            "exchange",
            "symbol",
            "liquidation_key",
            "ts",
            "side",
            "price",
            "quantity",
            "notional",
            "loaded_at",
        ),
        key=("exchange", "symbol", "liquidation_key"),
        filters={"exchange": "exchange", "symbol": "symbol"},
        quarantine_table="quarantine_liquidations",
    ),
    # metrics carry no exchange/symbol: they come from the version (joined below)
    "model_metrics": TableSpec(
        name="model_metrics",
        columns=(
            "version_id",
            "scope",
            "metric",
            "value",
            "window_start",
            "window_end",
            "computed_at",
        ),
        key=("version_id", "scope", "metric"),
        filters={"exchange": "exchange", "symbol": "symbol", "timeframe": "timeframe"},
        time_column="computed_at",
    ),
}


def _spec(table: str) -> TableSpec:
    name = table.removeprefix("raw.")
    if name not in TABLES:
        raise ConfigError(
            f"no quality suite for table {table!r} (known: {', '.join(sorted(TABLES))})"
        )
    return TABLES[name]


# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation of one validation."""

    expectation: str
    severity: str  # 'blocking' | 'warning'
    success: bool
    observed_value: Any
    unexpected_count: int | None
    description: str
    column: str | None = None
    row_level: bool = False
    exception: str | None = None
    # the unexpected-rows query GX ran ({batch} not substituted); quarantine re-runs it
    query: str | None = field(default=None, repr=False)

    @property
    def blocking(self) -> bool:
        return self.severity == "blocking"


@dataclass(frozen=True)
class QualityReport:
    """The outcome of one validation of one batch of one raw table."""

    run_id: str
    table: str
    suite: str
    exchange: str | None
    symbol: str | None
    timeframe: str | None
    start: datetime | None
    end: datetime | None
    row_count: int
    first_ts: datetime | None
    last_ts: datetime | None
    results: tuple[ExpectationResult, ...]
    validated_at: datetime
    seconds: float
    excluded_quarantined: bool = False
    docs_index: Path | None = None
    batch_sql: str = field(default="", repr=False)
    # the validation results kept in the Data Docs store (ValidationResultIdentifier
    # tuples), for render_data_docs when the page was not rendered at once
    docs_keys: tuple[tuple[str, ...], ...] = field(default=(), repr=False)

    @property
    def success(self) -> bool:
        """Every expectation passed."""
        return all(r.success for r in self.results)

    @property
    def ok(self) -> bool:
        """No blocking expectation failed (warnings may have)."""
        return not self.blocking_failures

    @property
    def failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]

    @property
    def blocking_failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.blocking]

    @property
    def warnings(self) -> list[ExpectationResult]:
        """Failed expectations of severity warning."""
        return [r for r in self.results if not r.success and not r.blocking]

    @property
    def batch_start(self) -> datetime | None:
        """Start of the range validated: the requested start, else the first row's ts."""
        return self.start if self.start is not None else self.first_ts

    @property
    def batch_end(self) -> datetime | None:
        """End of the range validated: the requested end, else the last row's ts."""
        return self.end if self.end is not None else self.last_ts

    def describe(self) -> str:
        """One line: table, batch, rows, outcome."""
        where = "/".join(v for v in (self.exchange, self.symbol, self.timeframe) if v) or "all"
        state = "passed" if self.success else ("FAILED" if not self.ok else "passed with warnings")
        failed = ", ".join(
            f"{r.expectation} ({r.severity}, "
            f"{'?' if r.unexpected_count is None else r.unexpected_count} rows)"
            for r in self.failures
        )
        return (
            f"{self.suite} [{where}] {self.row_count:,} rows: {state}"
            + (f": {failed}" if failed else "")
            + f" ({self.seconds:.2f} s)"
        )


@dataclass(frozen=True)
class GateDecision:
    """Whether a symbol's training window may be trained on, and why not."""

    ok: bool
    reasons: list[str]
    report: QualityReport
    quarantined: int = 0


# ----------------------------------------------------------- SQL text for the batch


def _text_literal(value: str) -> str:
    """A SQL string literal for ``value`` (standard_conforming_strings on).

    ``:`` and ``\\`` make a Unicode-escape literal (``U&'BTC/USDT\\003AUSDT'``), so
    SQLAlchemy's ``text()``, which GX wraps the batch in, never reads a bind parameter.
    """
    if "\x00" in value:
        raise ConfigError("a filter value contains a NUL character")
    quoted = value.replace("'", "''")
    if ":" not in value and "\\" not in value:
        return f"'{quoted}'"
    escaped = quoted.replace("\\", "\\\\").replace(":", "\\003A")
    return f"U&'{escaped}'"


def _as_utc(value: Any) -> datetime:
    """A timezone-aware UTC datetime from a datetime, pandas Timestamp or ISO string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"not an ISO timestamp: {value!r}") from None
    to_py = getattr(value, "to_pydatetime", None)
    if callable(to_py):
        value = to_py()
    if not isinstance(value, datetime):
        raise ConfigError(f"not a timestamp: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ts_literal(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.isoformat()}'"


def _ident(*names: str) -> str:
    from psycopg import sql

    return sql.Identifier(*names).as_string(None)


def _batch_sql(
    spec: TableSpec,
    filters: Mapping[str, str],
    start: datetime | None,
    end: datetime | None,
    exclude_quarantined: bool,
) -> str:
    """The SELECT of one batch of ``spec``'s table, as SQL text."""
    t = _ident("t")
    if spec.name == "model_metrics":
        source = (
            f"SELECT t.*, v.exchange, v.symbol, v.timeframe, v.model_type "
            f"FROM {_ident('raw', 'model_metrics')} AS {t} "
            f"JOIN {_ident('raw', 'model_versions')} AS v ON v.version_id = t.version_id"
        )
        owner = "v"
    else:
        source = f"SELECT t.* FROM {_ident('raw', spec.name)} AS {t}"
        owner = "t"
    conditions: list[str] = []
    for arg, value in filters.items():
        column = spec.filters[arg]
        conditions.append(f"{owner}.{_ident(column)} = {_text_literal(value)}")
    time_col = f"t.{_ident(spec.time_column)}"
    if start is not None:
        conditions.append(f"{time_col} >= {_ts_literal(start)}")
    if end is not None:
        conditions.append(f"{time_col} < {_ts_literal(end)}")
    if exclude_quarantined and spec.quarantine_table is not None:
        same_row = " AND ".join(f"q.{_ident(c)} = t.{_ident(c)}" for c in spec.key)
        if spec.quarantine_has_landed:
            same_row += " AND q.landed"
        conditions.append(
            f"NOT EXISTS (SELECT 1 FROM {_ident('raw', spec.quarantine_table)} AS q "
            f"WHERE {same_row})"
        )
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    return source + where


def _substitute_batch(query: str, batch_sql: str) -> str:
    """``query`` with ``{batch}`` replaced the way GX replaces it for a query asset."""
    return query.format(batch=f"({batch_sql}) AS subselect")


# ----------------------------------------------------------------- the GX context


class _GxState:
    """The process's one ephemeral GX context and what has been set up in it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.context: Any = None
        self.datasources: dict[str, Any] = {}
        self.suites_key: str | None = None
        self.suites: dict[str, Any] = {}
        self.sites: dict[Path, tuple[str, str]] = {}


_GX = _GxState()


def _quiet_gx() -> None:
    """Before the first GX import: no analytics (no network), no INFO chatter."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    for name in ("great_expectations", "posthog"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)


def _gx_context() -> Any:
    """The ephemeral context, created on first use (imports GX: ~5 s once).

    Its default Data Docs site (a temporary folder) is removed: Data Docs are built
    only where a caller asks (``docs_dir``).
    """
    if _GX.context is None:
        _quiet_gx()
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for name, site in list(context.list_data_docs_sites().items()):
            context.delete_data_docs_site(name)
            folder = Path(str(site.get("store_backend", {}).get("base_directory", "")))
            if folder.name.startswith("tmp") and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        _GX.context = context
    return _GX.context


def _sqlalchemy_url(dsn: str) -> tuple[str, str]:
    """(URL for GX's SQLAlchemy engine, the same URL without password for names and logs).

    A unix-socket folder goes in ``?host=`` with ``localhost`` as the host, which GX's
    PostgreSQL data source requires (STACK.md).
    """
    params = parse_dsn(dsn)
    user = quote(params.user, safe="")
    secret = f":{quote(params.password, safe='')}" if params.password else ""
    db = quote(params.dbname, safe="")
    if params.host.startswith("/"):
        tail = f"localhost:{params.port}/{db}?host={quote(params.host, safe='/')}"
    else:
        tail = f"{params.host}:{params.port}/{db}"
    return f"postgresql+psycopg://{user}{secret}@{tail}", f"postgresql+psycopg://{user}@{tail}"


def _scrub(message: str, dsn: str) -> str:
    """``message`` without the DSN's password (in any spelling GX might print)."""
    try:
        password = parse_dsn(dsn).password
    except ConfigError:
        return message
    if password:
        for spelling in {password, quote(password, safe="")}:
            message = message.replace(spelling, "***")
    return message


def _datasource(context: Any, dsn: str) -> Any:
    url, redacted = _sqlalchemy_url(dsn)
    name = "warehouse-" + hashlib.sha1(redacted.encode()).hexdigest()[:12]
    if name not in _GX.datasources:
        try:
            _GX.datasources[name] = context.data_sources.add_postgres(
                name, connection_string=url, kwargs={"pool_pre_ping": True}
            )
        except Exception as exc:
            raise WarehouseError(
                f"Great Expectations cannot connect to {redacted}: {_scrub(str(exc), dsn)}"
            ) from None
    return _GX.datasources[name]


def _synced_suites(context: Any, settings: QualitySettings) -> dict[str, Any]:
    """The suites of ``settings`` in the context (``add_or_update`` when they changed)."""
    key = settings.model_dump_json()
    if key != _GX.suites_key:
        from expectations import build_suites

        _GX.suites = {s.name: context.suites.add_or_update(s) for s in build_suites(settings)}
        _GX.suites_key = key
    return _GX.suites


def _docs_site(context: Any, docs_dir: Path) -> tuple[str, str]:
    """(Data Docs site, validation results store) of ``docs_dir``, set up once.

    The site reads its validation results from a file store inside the folder
    (``validation_results/``), not from the context's in-memory one: GX rebuilds the
    index from its source store and deletes every page whose result the store does not
    hold, so with an in-memory store each process would wipe the pages of the ones
    before. The index links the 500 most recent validations.
    """
    folder = Path(docs_dir).expanduser().resolve()
    if folder not in _GX.sites:
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
        site, store = f"brain-docs-{digest}", f"brain-results-{digest}"
        if store not in context.stores:
            context.add_store(
                store,
                {
                    "class_name": "ValidationResultsStore",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(folder / "validation_results"),
                    },
                },
            )
        if site not in context.list_data_docs_sites():
            context.add_data_docs_site(
                site,
                {
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,
                    "site_index_builder": {
                        "class_name": "DefaultSiteIndexBuilder",
                        "validation_results_limit": 500,
                    },
                    "site_section_builders": {
                        "validations": {"source_store_name": store},
                        "profiling": {"source_store_name": store},
                    },
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(folder),
                    },
                },
            )
        _GX.sites[folder] = (site, store)
    return _GX.sites[folder]


def _keep_results(context: Any, docs_dir: Path, outcome: Any) -> tuple[tuple[str, ...], ...]:
    """Keep the checkpoint's results in the folder's store; their keys as tuples."""
    _, store_name = _docs_site(context, docs_dir)
    store = context.stores[store_name]
    for key, result in outcome.run_results.items():
        store.set(key, result)
    return tuple(tuple(str(part) for part in key.to_tuple()) for key in outcome.run_results)


def _render_docs(
    context: Any, docs_dir: Path, keys: Iterable[Sequence[str]], suites: Iterable[str]
) -> Path:
    """Render the kept results of ``keys``, the pages of ``suites`` and the index."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    site, _ = _docs_site(context, docs_dir)
    identifiers: list[Any] = [ValidationResultIdentifier.from_tuple(tuple(k)) for k in keys]
    identifiers += [ExpectationSuiteIdentifier(name=name) for name in dict.fromkeys(suites)]
    context.build_data_docs(site_names=[site], resource_identifiers=identifiers)
    return Path(docs_dir).expanduser().resolve() / "index.html"


def render_data_docs(
    docs_dir: Path, keys: Iterable[Sequence[str]], suites: Iterable[str]
) -> Path | None:
    """Render into the Data Docs site of ``docs_dir``, in one pass, the kept but not yet
    rendered validations ``keys`` (``QualityReport.docs_keys`` of
    ``validate_table(..., render_docs=False)``), the pages of ``suites`` and the index;
    return the index page, or None when there is no key.

    GX compiles its page templates on every build (about 0.15 s), so a run that
    validates many batches renders once at its end rather than once per batch.
    """
    wanted = [tuple(key) for key in keys]
    if not wanted:
        return None
    with _GX.lock:
        context = _gx_context()
        try:
            return _render_docs(context, docs_dir, wanted, suites)
        except Exception as exc:
            raise QualityError(f"Data Docs could not be built in {docs_dir}: {exc}") from None


def data_docs_dir(settings: QualitySettings | None = None, home: Path | None = None) -> Path:
    """The Data Docs folder: ``settings.docs_dir``, else ``<home>/quality/data_docs``
    (``home`` defaults to Brain's data folder, ``BRAIN_HOME``)."""
    from expectations.settings import default_docs_dir

    if settings is not None and settings.docs_dir is not None:
        return Path(settings.docs_dir).expanduser()
    if home is None:
        from brain_lib.config import Settings

        home = Settings().home
    return default_docs_dir(home)


# ------------------------------------------------------------------- validation


def _dsn_of(conn_or_dsn: str | psycopg.Connection) -> str:
    if isinstance(conn_or_dsn, str):
        return conn_or_dsn
    info = conn_or_dsn.info
    host = info.host or "localhost"
    secret = f":{quote(info.password, safe='')}" if info.password else ""
    user = quote(info.user or "postgres", safe="")
    db = quote(info.dbname, safe="")
    if host.startswith("/"):
        return f"postgresql://{user}{secret}@/{db}?host={quote(host, safe='/')}&port={info.port}"
    return f"postgresql://{user}{secret}@{host}:{info.port}/{db}"


def _batch_shape(dsn: str, spec: TableSpec, batch_sql: str) -> tuple[int, Any, Any]:
    """(rows, first ts, last ts) of the batch; fails early and clearly when the warehouse
    is down or the table does not exist."""
    import psycopg
    from psycopg import sql

    time_col = sql.Identifier(spec.time_column)
    statement = sql.SQL("SELECT count(*), min({c}), max({c}) FROM ({b}) AS batch").format(
        c=time_col, b=sql.SQL(batch_sql.replace("%", "%%"))
    )
    with open_connection(dsn, autocommit=True) as conn:
        try:
            row = conn.execute(statement, ()).fetchone()
        except psycopg.errors.UndefinedTable as exc:
            raise QualityError(
                f"cannot validate raw.{spec.name}: {str(exc).splitlines()[0]} "
                "(create the raw schema: dbt run-operation create_raw_tables)"
            ) from None
    assert row is not None
    return int(row[0]), row[1], row[2]


def _result_from_gx(result: Any) -> ExpectationResult:
    from expectations.rules import severity_label

    config = result.expectation_config
    meta = dict(config.meta or {})
    kwargs = dict(config.kwargs or {})
    payload = dict(result.result or {})
    exception = None
    info = result.exception_info or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    for item in infos:
        if isinstance(item, Mapping) and item.get("raised_exception"):
            exception = str(item.get("exception_message") or "expectation raised")
            break
    observed = payload.get("observed_value")
    unexpected = payload.get("unexpected_count")
    if unexpected is None and isinstance(observed, int) and not isinstance(observed, bool):
        unexpected = observed  # Brain's rules observe their count of unexpected rows
    from expectations import rules

    rule = getattr(rules, _camel(config.type), None)
    return ExpectationResult(
        expectation=config.type,
        severity=severity_label(config.severity),
        success=bool(result.success) and exception is None,
        observed_value=observed,
        unexpected_count=int(unexpected) if unexpected is not None else None,
        description=str(meta.get("reason") or config.description or config.type),
        column=getattr(rule, "column", None) if rule is not None else kwargs.get("column"),
        row_level=bool(meta.get("row_level", False)),
        exception=exception,
        query=kwargs.get("unexpected_rows_query"),
    )


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def validate_table(
    conn_or_dsn: str | psycopg.Connection,
    table: str,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    start: Any = None,
    end: Any = None,
    run_id: str | None = None,
    docs_dir: Path | None = None,
    settings: QualitySettings | None = None,
    exclude_quarantined: bool = False,
    render_docs: bool = True,
) -> QualityReport:
    """Validate one batch of ``raw.<table>`` with its suite, through a GX checkpoint.

    The batch: rows with the given ``exchange``/``symbol``/``timeframe`` (for
    ``open_interest`` the timeframe filters ``period``; ``funding_rates`` and
    ``liquidations`` have none) and ``start <= ts < end``; every filter is optional.
    ``exclude_quarantined`` leaves out rows already in ``raw.quarantine_<table>`` (the
    training window's view). GX reads through its own connection: commit before.
    ``docs_dir`` given: the result is also kept in ``docs_dir/validation_results`` and
    rendered into the Data Docs site there (``report.docs_index`` is its index page);
    with ``render_docs`` False it is only kept, for one :func:`render_data_docs` of
    many validations later (``docs_index`` stays None).

    An expectation that cannot run (a SQL error) is a failed result with its
    ``exception``. Raises :class:`QualityError` when the table is missing or GX itself
    fails, :class:`WarehouseUnavailableError` when the warehouse cannot be reached.
    """
    from expectations.settings import QualitySettings

    spec = _spec(table)
    dsn = _dsn_of(conn_or_dsn)
    settings = settings if settings is not None else QualitySettings()
    filters: dict[str, str] = {}
    for arg, value in (("exchange", exchange), ("symbol", symbol), ("timeframe", timeframe)):
        if value is None:
            continue
        if arg not in spec.filters:
            raise ConfigError(f"raw.{spec.name} has no {arg} to filter on")
        filters[arg] = str(value)
    start_utc = _as_utc(start) if start is not None else None
    end_utc = _as_utc(end) if end is not None else None
    if start_utc is not None and end_utc is not None and end_utc <= start_utc:
        raise ConfigError(f"empty range: end {end_utc} is not after start {start_utc}")
    run = run_id or uuid.uuid4().hex
    batch_sql = _batch_sql(spec, filters, start_utc, end_utc, exclude_quarantined)

    began = time.perf_counter()
    validated_at = datetime.now(UTC)
    rows, first_ts, last_ts = _batch_shape(dsn, spec, batch_sql)
    results, docs_index, docs_keys = _run_checkpoint(
        dsn, spec, filters, batch_sql, run, settings, docs_dir, render_docs
    )
    report = QualityReport(
        run_id=run,
        table=spec.name,
        suite=spec.suite,
        exchange=filters.get("exchange"),
        symbol=filters.get("symbol"),
        timeframe=filters.get("timeframe"),
        start=start_utc,
        end=end_utc,
        row_count=rows,
        first_ts=first_ts,
        last_ts=last_ts,
        results=tuple(results),
        validated_at=validated_at,
        seconds=time.perf_counter() - began,
        excluded_quarantined=exclude_quarantined,
        docs_index=docs_index,
        batch_sql=batch_sql,
        docs_keys=docs_keys,
    )
    log.info("%s", report.describe())
    return report


def _asset_name(spec: TableSpec, filters: Mapping[str, str]) -> str:
    """A unique, file-name-safe name for the batch's query asset (Data Docs show it)."""
    parts = [spec.name, *(re.sub(r"[^A-Za-z0-9]+", "_", v).strip("_") for v in filters.values())]
    return "-".join([*parts, uuid.uuid4().hex[:8]])


def _run_checkpoint(
    dsn: str,
    spec: TableSpec,
    filters: Mapping[str, str],
    batch_sql: str,
    run_id: str,
    settings: QualitySettings,
    docs_dir: Path | None,
    render_docs: bool = True,
) -> tuple[list[ExpectationResult], Path | None, tuple[tuple[str, ...], ...]]:
    with _GX.lock:
        context = _gx_context()
        import great_expectations as gx
        from great_expectations.core.run_identifier import RunIdentifier

        source = _datasource(context, dsn)
        suite = _synced_suites(context, settings)[spec.suite]
        name = _asset_name(spec, filters)
        docs_index = None
        docs_keys: tuple[tuple[str, ...], ...] = ()
        asset = definition = checkpoint = None
        try:
            asset = source.add_query_asset(name, query=batch_sql)
            batch = asset.add_batch_definition_whole_table("batch")
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=name,
                    validation_definitions=[definition],
                    result_format={"result_format": "BASIC"},
                )
            )
            outcome = checkpoint.run(
                run_id=RunIdentifier(run_name=run_id, run_time=datetime.now(UTC))
            )
            if docs_dir is not None:
                docs_keys = _keep_results(context, docs_dir, outcome)
                if render_docs:
                    docs_index = _render_docs(context, docs_dir, docs_keys, [spec.suite])
        except (WarehouseError, QualityError):
            raise
        except Exception as exc:
            raise QualityError(
                f"validation of raw.{spec.name} could not run: {_scrub(str(exc), dsn)}"
            ) from None
        finally:
            if checkpoint is not None:
                context.checkpoints.delete(name)
            if definition is not None:
                context.validation_definitions.delete(name)
            if asset is not None:
                source.delete_asset(name)
        results: list[ExpectationResult] = []
        for suite_result in outcome.run_results.values():
            results.extend(_result_from_gx(r) for r in suite_result.results)
        return results, docs_index, docs_keys


# ------------------------------------------------------------------ recording


_INSERT_RESULT = """
insert into raw.data_quality_results (
    run_id, suite, table_name, expectation, column_name, severity, success,
    observed_value, unexpected_count, element_count, exchange, symbol, timeframe,
    batch_start, batch_end, validated_at, description, exception_message
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


def record_results(conn: psycopg.Connection, report: QualityReport) -> int:
    """Write one row per expectation of ``report`` to ``raw.data_quality_results``
    (in the caller's transaction); return the number of rows."""
    from psycopg.types.json import Jsonb

    rows = [
        (
            report.run_id,
            report.suite,
            report.table,
            r.expectation,
            r.column,
            r.severity,
            r.success,
            Jsonb(r.observed_value) if r.observed_value is not None else None,
            r.unexpected_count,
            report.row_count,
            report.exchange,
            report.symbol,
            report.timeframe,
            report.batch_start,
            report.batch_end,
            report.validated_at,
            r.description,
            r.exception,
        )
        for r in report.results
    ]
    with conn.cursor() as cur:
        cur.executemany(_INSERT_RESULT, rows)
    return len(rows)


def quarantine(conn: psycopg.Connection, report: QualityReport) -> dict[str, int]:
    """Copy the rows that failed a row-level expectation of ``report`` to
    ``raw.quarantine_<table>`` with the expectation, its reason, severity and run id.

    Re-runs each failed expectation's own query on the report's batch, all in ONE
    statement (in the caller's transaction), so every query sees the table as it was
    before this copy: a batch that leaves quarantined rows out (the gate's) does not
    lose a row to the first expectation's copy before the second one looks for it.
    Idempotent: a row already quarantined for that expectation is skipped. Returns
    expectation → rows newly quarantined, for each failed row-level expectation.
    """
    from psycopg import sql

    spec = _spec(report.table)
    if spec.quarantine_table is None:
        return {}
    failed = [r for r in report.results if not r.success and r.row_level and r.query]
    if not failed:
        return {}
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    branches = []
    params: list[str] = []
    for result in failed:
        assert result.query is not None
        failing = _substitute_batch(result.query, report.batch_sql).replace("%", "%%")
        branches.append(
            sql.SQL("SELECT {columns}, %s, %s, %s, %s FROM ({failing}) AS failing").format(
                columns=columns, failing=sql.SQL(failing)
            )
        )
        params += [result.expectation, result.description, result.severity, report.run_id]
    statement = sql.SQL(
        "INSERT INTO {target} ({columns}, expectation, reason, severity, run_id) "
        "{rows} ON CONFLICT DO NOTHING RETURNING expectation"
    ).format(
        target=sql.Identifier("raw", spec.quarantine_table),
        columns=columns,
        rows=sql.SQL(" UNION ALL ").join(branches),
    )
    added = {r.expectation: 0 for r in failed}
    with conn.cursor() as cur:
        cur.execute(statement, params)
        for (expectation,) in cur.fetchall():
            added[expectation] += 1
    return added


# ------------------------------------------------------------------- training


def quarantined_timestamps(
    conn: psycopg.Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: Any = None,
    end: Any = None,
) -> list[datetime]:
    """Open times of the candles of a series that are in quarantine (``start <= ts <
    end``, each optional), ascending. Training leaves these candles out."""
    import psycopg

    start_utc = _as_utc(start) if start is not None else None
    end_utc = _as_utc(end) if end is not None else None
    try:
        rows = conn.execute(
            """
            select distinct ts from raw.quarantine_ohlcv
            where exchange = %s and symbol = %s and timeframe = %s and landed
              and (%s::timestamptz is null or ts >= %s::timestamptz)
              and (%s::timestamptz is null or ts < %s::timestamptz)
            order by ts
            """,
            (exchange, symbol, timeframe, start_utc, start_utc, end_utc, end_utc),
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        raise QualityError(
            "raw.quarantine_ohlcv does not exist: the warehouse's raw schema predates "
            "data quality (dbt run-operation create_raw_tables)"
        ) from None
    return [row[0] for row in rows]


def exclude_quarantined(
    conn: psycopg.Connection,
    candles: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
) -> pd.DataFrame:
    """``candles`` (indexed by ts, as ``warehouse.load_ohlcv`` returns them) without
    the quarantined ones. The raw rows stay where they are."""
    import pandas as pd

    if candles.empty:
        return candles
    index = pd.DatetimeIndex(candles.index)
    stamps = quarantined_timestamps(
        conn, exchange, symbol, timeframe, index.min(), index.max() + pd.Timedelta(1, "us")
    )
    if not stamps:
        return candles
    drop = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    keep = ~index.isin(drop)
    return candles.loc[keep]


def gate_training_window(
    dsn: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: Any,
    end: Any,
    *,
    settings: QualitySettings | None = None,
    run_id: str | None = None,
    docs_dir: Path | None = None,
    record: bool = True,
    quarantine_rows: bool = True,
    render_docs: bool = True,
) -> GateDecision:
    """Validate a symbol's training window (``start <= ts < end``) before training.

    The window is validated without the candles already quarantined (training leaves
    them out too). With ``record`` the results go to ``raw.data_quality_results``; with
    ``quarantine_rows`` newly failing rows go to ``raw.quarantine_ohlcv`` (so the next
    run's window no longer holds them). ``ok`` is False when a blocking expectation
    failed or the window holds no candle: do not train the symbol in this run, keep its
    champion, and record ``reasons``. Warnings never make ``ok`` False.
    """
    report = validate_table(
        dsn,
        "ohlcv",
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        run_id=run_id,
        docs_dir=docs_dir,
        settings=settings,
        exclude_quarantined=True,
        render_docs=render_docs,
    )
    added = 0
    if record or quarantine_rows:
        with open_connection(dsn) as conn:
            if record:
                record_results(conn, report)
            if quarantine_rows:
                added = sum(quarantine(conn, report).values())
            conn.commit()
    reasons: list[str] = []
    if report.row_count == 0:
        reasons.append(
            f"no {timeframe} candles for {symbol} on {exchange} between "
            f"{report.start} and {report.end} (after leaving out quarantined ones)"
        )
    for failed in report.blocking_failures:
        if failed.exception is not None:
            reasons.append(f"{failed.expectation} could not run: {failed.exception}")
        else:
            reasons.append(
                f"{failed.expectation} failed on {failed.unexpected_count} of "
                f"{report.row_count} candles: expected {failed.description}"
            )
    decision = GateDecision(ok=not reasons, reasons=reasons, report=report, quarantined=added)
    if not decision.ok:
        log.warning(
            "quality gate: %s %s %s not trained: %s",
            exchange,
            symbol,
            timeframe,
            "; ".join(reasons),
        )
    return decision


def run_quality_checks(
    dsn: str,
    *,
    tables: Iterable[str] | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    start: Any = None,
    end: Any = None,
    settings: QualitySettings | None = None,
    run_id: str | None = None,
    docs_dir: Path | None = None,
    record: bool = True,
    quarantine_rows: bool = True,
    render_docs: bool = True,
) -> list[QualityReport]:
    """Validate, record and quarantine one batch per table (default: every table in
    :data:`TABLES`), all under one run id: what ``brain quality check`` and
    collect-market-data run. A filter a table has no column for (a timeframe for
    funding rates) is not applied to that table."""
    names: Sequence[str] = list(tables) if tables is not None else list(TABLES)
    specs = [_spec(name) for name in names]
    run = run_id or uuid.uuid4().hex
    reports: list[QualityReport] = []
    for spec in specs:
        given = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
        applicable = {k: v for k, v in given.items() if v is not None and k in spec.filters}
        report = validate_table(
            dsn,
            spec.name,
            exchange=applicable.get("exchange"),
            symbol=applicable.get("symbol"),
            timeframe=applicable.get("timeframe"),
            start=start,
            end=end,
            run_id=run,
            docs_dir=docs_dir,
            settings=settings,
            render_docs=False,
        )
        if record or quarantine_rows:
            with open_connection(dsn) as conn:
                if record:
                    record_results(conn, report)
                if quarantine_rows:
                    quarantine(conn, report)
                conn.commit()
        reports.append(report)
    if docs_dir is not None and render_docs:
        index = render_data_docs(
            docs_dir, [k for r in reports for k in r.docs_keys], [r.suite for r in reports]
        )
        reports = [replace(r, docs_index=index) for r in reports]
    return reports
