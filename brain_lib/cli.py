"""The ``brain`` command.

Heavy libraries (pandas, lightgbm, prefect, dbt) are imported inside the commands
that need them, so ``brain --help`` answers at once. Errors a user can cause are
printed as one line on stderr with a non-zero exit status, never as a traceback.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from brain_lib.config import Settings

app = typer.Typer(
    name="brain",
    help="Train, judge and keep the prediction models of a crypto trading desk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The warehouse (embedded PostgreSQL unless BRAIN_DATABASE_URL is set).")
ingest_app = typer.Typer(help="Load your own market data.")
models_app = typer.Typer(help="Model versions, champions, promotion and rollback.")
spool_app = typer.Typer(help="Records spooled while the warehouse was unreachable.")
quality_app = typer.Typer(help="Data quality: Great Expectations suites on the raw tables.")
replay_app = typer.Typer(help="The replay exchange: binance, bybit and okx REST on 127.0.0.1.")
features_app = typer.Typer(help="Feature importance of the champions: top features, shifts, drift.")
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
app.add_typer(models_app, name="models")
app.add_typer(spool_app, name="spool")
app.add_typer(features_app, name="features")
app.add_typer(replay_app, name="replay")
app.add_typer(quality_app, name="quality")

EXIT_USER_ERROR = 2
# the demo market carries a planted, slowly varying trend (README, "What brain demo
# plants"): a drift with a standard deviation of DEMO_TREND bar volatilities and a
# half-life of DEMO_TREND_HALF_LIFE bars, so a correct system finds something to trade
DEMO_TREND = 0.2
DEMO_TREND_HALF_LIFE = 48.0
# the market's seed; on seed 7 (the replay's default) ETH's models show too little skill
# on their training rows and its policy rightly stays flat, so the demo uses one where
# every symbol's signal is found (README, "What brain demo plants")
DEMO_SEED = 5
DEMO_DATA_START = "2025-01-01T00:00:00Z"


def _settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError

    from brain_lib.config import Settings
    from brain_lib.errors import ConfigError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting BRAIN_{where.upper()}: {first['msg']}") from None


def _console() -> Any:
    from rich.console import Console

    # wide enough for the metrics table when the output is a file or a pipe
    return Console(width=None if sys.stdout.isatty() else 160)


def _split(values: str | None) -> list[str] | None:
    if values is None:
        return None
    items = [v.strip() for v in values.split(",") if v.strip()]
    return items or None


def _prepare(settings: Settings) -> str:
    """Warehouse URL, with the embedded server started and the raw schema in place."""
    from brain_lib.dbt import ensure_raw_schema
    from brain_lib.warehouse import ensure_reachable, resolve_dsn

    dsn = resolve_dsn(settings)
    ensure_reachable(dsn)
    ensure_raw_schema(dsn, project_dir=settings.dbt_dir, state_dir=settings.home / "dbt")
    return dsn


# ----------------------------------------------------------------------------- db


@db_app.command("start")
def db_start() -> None:
    """Start the embedded warehouse (no-op with BRAIN_DATABASE_URL)."""
    settings = _settings()
    if settings.database_url is not None:
        typer.echo("BRAIN_DATABASE_URL is set: using that database, nothing embedded started")
        return
    from brain_lib.warehouse import EmbeddedWarehouse

    url = EmbeddedWarehouse(settings.home).start()
    typer.echo(f"embedded warehouse running: {url}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded warehouse."""
    from brain_lib.warehouse import EmbeddedWarehouse

    stopped = EmbeddedWarehouse(_settings().home).stop()
    typer.echo("embedded warehouse stopped" if stopped else "embedded warehouse was not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the warehouse runs, and where."""
    settings = _settings()
    if settings.database_url is not None:
        from brain_lib.warehouse import ensure_reachable, parse_dsn

        dsn = settings.database_url.get_secret_value()
        where = parse_dsn(dsn).redacted()
        ensure_reachable(dsn)
        typer.echo(f"external warehouse reachable: {where}")
        return
    from brain_lib.warehouse import EmbeddedWarehouse

    status = EmbeddedWarehouse(settings.home).status()
    state = f"running (pid {status['pid']})" if status["running"] else "stopped"
    typer.echo(f"embedded warehouse {state}; data in {status['data_dir']}")
    if not status["running"]:
        raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """Print the warehouse connection URL (starts the embedded one if needed)."""
    from brain_lib.warehouse import resolve_dsn

    typer.echo(resolve_dsn(_settings()))


# ------------------------------------------------------------------------- ingest


def read_candles_file(path: Path) -> Any:
    """Read a CSV or Parquet file of candles into a frame with ts + OHLCV columns.

    ``ts`` may be ISO-8601 text (UTC assumed when no offset is given) or epoch
    milliseconds (numbers above 10^11) or seconds. ``timestamp``, ``time``,
    ``date`` and ``datetime`` are accepted as names of the ``ts`` column.
    """
    import pandas as pd

    from brain_lib.errors import DataError

    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt", ".gz"):
            frame = pd.read_csv(path)
        else:
            raise DataError(f"{path}: unknown file type {path.suffix!r} (use .csv or .parquet)")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "ts" not in frame.columns:
        for alias in ("timestamp", "time", "date", "datetime"):
            if alias in frame.columns:
                frame = frame.rename(columns={alias: "ts"})
                break
    if "ts" in frame.columns and pd.api.types.is_numeric_dtype(frame["ts"]):
        unit = "ms" if frame["ts"].abs().max() > 1e11 else "s"
        frame["ts"] = pd.to_datetime(frame["ts"], unit=unit, utc=True)
    return frame


@ingest_app.command("ohlcv")
def ingest_ohlcv(
    file: Annotated[
        Path, typer.Argument(help="CSV or Parquet: ts, open, high, low, close, volume")
    ],
    exchange: Annotated[str, typer.Option(help="Exchange the candles come from.")],
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. BTC/USDT.")],
    timeframe: Annotated[str, typer.Option(help="Bar length, e.g. 1h.")] = "1h",
) -> None:
    """Load candles from a file through the bulk COPY path (idempotent)."""
    from brain_lib.warehouse import connect, copy_ohlcv

    settings = _settings()
    frame = read_candles_file(file)
    dsn = _prepare(settings)
    with connect(dsn) as conn:
        report = copy_ohlcv(
            conn, frame, exchange=exchange, symbol=symbol, timeframe=timeframe, source=str(file)
        )
    typer.echo(
        f"{file}: {report.added} rows added, {report.unchanged} unchanged "
        f"({exchange} {symbol} {timeframe})"
    )


# -------------------------------------------------------------------------- train


# the run's summary: (column title, row key, format); baselines and trading beside the score
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("composite", "composite", ".3f"),
    ("sharpe", "sharpe", ".2f"),
    ("dsr", "dsr", ".2f"),
    ("max_dd", "max_drawdown", ".1%"),
    ("b&h sharpe", "buy_hold_sharpe", ".2f"),
    ("exposure", "exposure", ".0%"),
    ("turnover", "turnover_per_bar", ".3f"),
    ("trades", "round_trips", ".0f"),
    ("hold", "avg_holding_bars", ".1f"),
)


def _metrics_table(rows: list[dict[str, Any]], title: str) -> Any:
    """The run's summary: one row per symbol × model type with its score beside the
    buy-and-hold baseline and how it traded; the version ids and the reasons follow the
    table (they are too long to sit in it)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    text_cols = ["symbol", "model_type", "status", "decision"]
    for col in text_cols:
        table.add_column(col, no_wrap=True)
    for header, _, _ in SUMMARY_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    lines = []
    for row in rows:
        cells = [str(row.get(c) or "") for c in text_cols]
        cells += [
            "" if row.get(key) is None else format(row[key], fmt) for _, key, fmt in SUMMARY_COLUMNS
        ]
        table.add_row(*cells)
        if row.get("version_id"):
            lines.append(
                Text(
                    f"{row['symbol']} {row['model_type']}: {row['version_id']} "
                    f"{row.get('decision') or row.get('status')}"
                    + (f" ({row['reason']})" if row.get("reason") else "")
                )
            )
    return Group(table, *lines)


def _check_symbols(dsn: str, settings: Settings) -> None:
    """Name unknown symbols before any flow starts."""
    from brain_lib.errors import UnknownSymbolError
    from brain_lib.warehouse import connect

    with connect(dsn) as conn:
        stored = {
            row[0]
            for row in conn.execute(
                "select distinct symbol from raw.ohlcv where exchange = %s and timeframe = %s",
                (settings.exchange, settings.timeframe),
            ).fetchall()
        }
    unknown = [s for s in settings.symbols if s not in stored]
    if unknown:
        known = ", ".join(sorted(stored)) or "nothing"
        raise UnknownSymbolError(
            f"unknown symbol(s) {', '.join(unknown)}: no {settings.timeframe} candles on "
            f"{settings.exchange!r} (stored: {known}); load them with brain ingest ohlcv"
        )


def _check_horizon(settings: Settings) -> None:
    """Refuse a training setup that cannot work, before anything starts: an invalid
    policy or cost (the training config checks every setting) or a label horizon longer
    than the test folds the lookback gives."""
    from brain_lib.errors import ConfigError
    from brain_lib.features import feature_warmup_bars
    from brain_lib.training import CALIBRATION_FOLDS, bar_length

    config = settings.training_config()
    bars = int(settings.lookback_days * 86_400 // bar_length(settings.timeframe).total_seconds())
    rows = bars - feature_warmup_bars() - config.label_horizon
    fold = config.test_size or rows // (config.n_splits + CALIBRATION_FOLDS + 1)
    if config.label_horizon > fold:
        raise ConfigError(
            f"invalid setting BRAIN_LABEL_HORIZON={config.label_horizon}: longer than a test "
            f"fold ({fold} bars with {settings.lookback_days} days and "
            f"{config.n_splits} splits); use a shorter horizon or a longer lookback"
        )


def _run_retrain(settings: Settings, **params: Any) -> list[dict[str, Any]]:
    """Run daily-retrain once and return its per-symbol rows; exit 1 if any failed."""
    # Prefect's server telemetry tries the network (closed on many desks) and, on the
    # temporary server's SQLite, races the run for the database lock
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    state = run_flow(daily_retrain, **params)
    rows = state.result(raise_on_failure=False)
    if not isinstance(rows, list):
        from brain_lib.errors import BrainError

        raise BrainError(f"daily-retrain ended {state.name}: {state.message or rows}")
    console = _console()
    console.print(_metrics_table(rows, f"daily-retrain: {state.name}"))
    for row in rows:
        if row["status"] != "ok":
            console.print(f"[red]{row['symbol']} {row['model_type']}: {row['error']}[/red]")
    # a symbol kept out by the data-quality gate is a failure to act on, not a success
    if not state.is_completed() or any(r["status"] == "blocked" for r in rows):
        raise typer.Exit(1)
    return rows


@app.command()
def train(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default BRAIN_SYMBOLS).")
    ] = None,
    exchange: Annotated[
        str | None, typer.Option(help="Exchange the candles were stored under.")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="Bar length, e.g. 1h.")] = None,
    model_types: Annotated[str | None, typer.Option(help="Comma-separated model types.")] = None,
    lookback_days: Annotated[int | None, typer.Option(help="Training window in days.")] = None,
    start: Annotated[datetime | None, typer.Option(help="Window start (UTC); with --end.")] = None,
    end: Annotated[datetime | None, typer.Option(help="Window end, exclusive (UTC).")] = None,
) -> None:
    """Run daily-retrain once on the chosen symbols and print their metrics."""
    from brain_lib.errors import ConfigError

    if start is not None and end is None:
        raise ConfigError("--start needs --end")
    if start is not None and end is not None:
        if end <= start:
            raise ConfigError(
                f"empty date range: --end {end:%Y-%m-%d %H:%M} "
                f"is not after --start {start:%Y-%m-%d %H:%M}"
            )
        lookback_days = max(1, int((end - start).total_seconds() // 86400))
    settings = _settings(
        symbols=_split(symbols),
        exchange=exchange,
        timeframe=timeframe,
        model_types=_split(model_types),
        lookback_days=lookback_days,
    )
    _check_horizon(settings)
    dsn = _prepare(settings)  # fail fast, before Prefect starts, on an unreachable warehouse
    _check_symbols(dsn, settings)
    _run_retrain(
        settings,
        symbols=settings.symbols,
        exchange=settings.exchange,
        timeframe=settings.timeframe,
        model_types=settings.model_types,
        lookback_days=settings.lookback_days,
        end=end,
    )


# --------------------------------------------------------------------------- demo


def _print_best_models(dsn: str) -> None:
    from rich.table import Table

    from brain_lib.warehouse import connect

    with connect(dsn) as conn:
        cur = conn.execute(
            "select symbol, model_type, version_id, composite_score, trained_at "
            "from marts.best_model_per_symbol order by symbol"
        )
        rows = cur.fetchall()
    table = Table(title="marts.best_model_per_symbol")
    for col in ("symbol", "model_type", "version_id", "composite_score", "trained_at"):
        table.add_column(col)
    for symbol, model_type, version_id, score, trained_at in rows:
        table.add_row(
            symbol, model_type, version_id, f"{score:.4f}", f"{trained_at:%Y-%m-%d %H:%M:%S}"
        )
    _console().print(table)


@app.command()
def demo(
    symbols: Annotated[int, typer.Option(min=1, max=5, help="How many demo symbols.")] = 3,
    days: Annotated[int, typer.Option(min=30, help="Days of hourly candles to collect.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market.")] = DEMO_SEED,
) -> None:
    """The whole job offline: warehouse, replay exchange, collect-market-data through ccxt,
    daily-retrain, the best models and the dbt docs."""
    import pandas as pd
    from rich.table import Table

    from brain_lib.dbt import run_dbt
    from brain_lib.errors import BrainError
    from brain_lib.market.collect import DATASETS
    from brain_lib.market.replay import ReplayConfig, ReplayServer
    from flows.collect_market_data import collect_market_data
    from flows.runner import run_flow

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    bases = ["BTC", "ETH", "SOL", "BNB", "XRP"][:symbols]
    names = [f"{base}/USDT:USDT" for base in bases]  # binance USD-M perpetuals
    settings = _settings(exchange="binance", timeframe="1h", symbols=names)
    console = _console()
    dsn = _prepare(settings)
    console.print(f"warehouse: {'BRAIN_DATABASE_URL' if settings.database_url else dsn}")
    # a fixed clock: the same market on every run, so a second run collects nothing new
    start = pd.Timestamp(DEMO_DATA_START)
    clock = start + pd.Timedelta(days=days, minutes=30)
    config = ReplayConfig(
        seed=seed,
        trend=DEMO_TREND,
        trend_half_life=DEMO_TREND_HALF_LIFE,
        bases=tuple(bases),
        data_start=DEMO_DATA_START,
        now=clock.isoformat(),
    )
    with ReplayServer(config) as replay:
        console.print(f"replay exchange (binance, bybit, okx formats) on {replay.url}")
        state = run_flow(
            collect_market_data,
            exchanges=["binance"],
            symbols=names,
            datasets=list(DATASETS),
            since=start.to_pydatetime(),
            replay=replay.url,
        )
    rows = state.result(raise_on_failure=False)
    if not isinstance(rows, list) or not state.is_completed():
        raise BrainError(f"collect-market-data ended {state.name}: {state.message}")
    table = Table(title="collect-market-data (binance through ccxt, replay exchange)")
    for col in ("stream", "status", "new", "unchanged", "last", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            f"{r['symbol']} {r['dataset']}",
            r["status"],
            str(r["new_rows"]),
            str(r["unchanged_rows"]),
            (r["last_ts"] or r["stored_last_ts"] or "")[:16],
            r["message"][:70],
        )
    console.print(table)
    _run_retrain(
        settings,
        symbols=names,
        exchange="binance",
        timeframe="1h",
        model_types=settings.model_types,
        lookback_days=min(settings.lookback_days, days - 1),
    )
    _print_best_models(dsn)
    run_dbt(
        ["docs", "generate"], dsn=dsn, project_dir=settings.dbt_dir, state_dir=settings.home / "dbt"
    )
    docs = settings.home / "dbt" / "target" / "index.html"
    console.print(f"dbt docs: {docs}  (serve with: brain dbt docs serve --port 8080)")
    console.print(
        "Prefect UI: run `prefect server start`, then set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api before `brain demo` to keep runs there."
    )


# ------------------------------------------------------------------------- models


def _rebuild_champion_marts(dsn: str, settings: Settings) -> None:
    from brain_lib.dbt import run_dbt

    run_dbt(
        ["build", "--select", "model_champion_history", "best_model_per_symbol"],
        dsn=dsn,
        project_dir=settings.dbt_dir,
        state_dir=settings.home / "dbt",
    )


@models_app.command("list")
def models_list(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N versions.")] = 50,
) -> None:
    """Versions, newest first, with their composite score; * marks a champion."""
    from rich.table import Table

    from brain_lib.errors import NoModelError
    from brain_lib.registry import COMPOSITE_OF_METRICS_SQL
    from brain_lib.warehouse import connect

    dsn = _prepare(_settings())
    with connect(dsn) as conn:
        rows = conn.execute(
            f"""
            select v.version_id, v.symbol, v.model_type, v.created_at,
                   {COMPOSITE_OF_METRICS_SQL},
                   max(m.value) filter (where m.metric = 'sharpe'),
                   bool_or(c.version_id is not null)
            from raw.model_versions v
            left join raw.model_metrics m on m.version_id = v.version_id and m.scope = 'oos'
            left join raw.model_champions c on c.version_id = v.version_id
            where %s::text is null or v.symbol = %s
            group by v.version_id order by v.created_at desc, v.version_id desc limit %s
            """,
            (symbol, symbol, limit),
        ).fetchall()
    if not rows:
        raise NoModelError(f"no model versions{' for ' + symbol if symbol else ''}")
    table = Table(title="model versions (* = champion)")
    for col in ("", "version_id", "symbol", "model_type", "trained_at", "composite", "sharpe"):
        table.add_column(col, no_wrap=True)
    for vid, sym, mtype, created, score, sharpe, champ in rows:
        table.add_row(
            "*" if champ else "",
            vid,
            sym,
            mtype,
            f"{created:%Y-%m-%d %H:%M:%S}",
            "no evidence" if score is None else f"{score:.4f}",
            "" if sharpe is None else f"{sharpe:.3f}",
        )
    _console().print(table)


@models_app.command("show")
def models_show(version: Annotated[str, typer.Argument(help="Version id.")]) -> None:
    """Manifest, metrics, artifact location and champion status of one version."""
    import json

    from brain_lib.registry import get_version, load_model
    from brain_lib.warehouse import connect

    dsn = _prepare(_settings())
    with connect(dsn) as conn:
        info = get_version(conn, version)
    # a version is only worth showing if it can be served: refuse a missing or changed
    # artifact and a manifest from a newer Brain, with the reason
    load_model(info.artifact_uri, info.artifact_sha256, info.manifest, info.version_id)
    with connect(dsn) as conn:
        metrics = conn.execute(
            "select scope, metric, value from raw.model_metrics where version_id = %s "
            "order by scope, metric",
            (version,),
        ).fetchall()
        champion = conn.execute(
            "select since from raw.model_champions where version_id = %s", (version,)
        ).fetchone()
    console = _console()
    console.print(
        f"[bold]{info.version_id}[/bold]  {info.exchange} {info.symbol} "
        f"{info.timeframe} {info.model_type}"
    )
    console.print(f"trained_at: {info.created_at:%Y-%m-%d %H:%M:%S %Z}   run: {info.run_id or '-'}")
    console.print(f"artifact:   {info.artifact_uri}  (sha256 {info.artifact_sha256}, verified)")
    since = f"yes, since {champion[0]:%Y-%m-%d %H:%M:%S}" if champion else "no"
    console.print(f"champion:   {since}")
    for scope, label in (("oos", "out of sample"), ("champion_replay", "champion replayed")):
        values = {name: value for sc, name, value in metrics if sc == scope}
        if values:
            console.print(_metric_groups(values, label))
    console.print("manifest:")
    console.print_json(json.dumps(info.manifest, default=str))


METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "performance",
        (
            "sharpe",
            "sortino",
            "calmar",
            "profit_factor",
            "hit_ratio",
            "max_drawdown",
            "annualised_return",
            "total_return",
            "gross_sharpe",
        ),
    ),
    ("luck", ("psr", "dsr", "dsr_trials", "dsr_benchmark_sharpe")),
    (
        "trading",
        (
            "exposure",
            "turnover_per_bar",
            "round_trips",
            "avg_holding_bars",
            "cost_paid",
            "funding_paid",
            "policy_flat_folds",
        ),
    ),
    (
        "baselines",
        (
            "buy_hold_sharpe",
            "buy_hold_total_return",
            "buy_hold_max_drawdown",
            "buy_hold_annualised_return",
            "excess_sharpe",
            "information_ratio",
            "flat_total_return",
            "flat_max_drawdown",
        ),
    ),
)


def _metric_groups(values: dict[str, float | None], label: str) -> Any:
    """A version's metrics as a table, one row per group (performance, luck, trading,
    baselines, then anything else)."""
    from rich.table import Table

    table = Table(title=f"metrics, {label}", show_header=False, title_justify="left")
    table.add_column("group", style="bold", no_wrap=True)
    table.add_column("values")
    shown: set[str] = set()

    def cell(name: str) -> str:
        value = values[name]
        return f"{name} {'undefined' if value is None else format(value, '.4g')}"

    for group, names in METRIC_GROUPS:
        present = [n for n in names if n in values]
        shown.update(present)
        if present:
            table.add_row(group, ", ".join(cell(n) for n in present))
    rest = sorted(set(values) - shown)
    if rest:
        table.add_row("other", ", ".join(cell(n) for n in rest))
    return table


@models_app.command("history")
def models_history(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. SOL/USDT.")],
    at: Annotated[
        datetime | None, typer.Option(help="Which version was champion at this time (UTC).")
    ] = None,
    model_type: Annotated[str | None, typer.Option(help="Only this model type.")] = None,
) -> None:
    """Which version was champion when, and why it changed."""
    from datetime import UTC

    from rich.table import Table

    from brain_lib.errors import NoModelError
    from brain_lib.warehouse import connect, table_exists

    settings = _settings()
    dsn = _prepare(settings)
    when = at.replace(tzinfo=at.tzinfo or UTC) if at is not None else None
    with connect(dsn) as conn:
        if not table_exists(conn, "marts.model_champion_history"):
            _rebuild_champion_marts(dsn, settings)
        rows = conn.execute(
            """
            select model_type, version_id, valid_from, valid_to, event_type, reason, is_current
            from marts.model_champion_history
            where symbol = %s and (%s::text is null or model_type = %s)
              and (%s::timestamptz is null
                   or (valid_from <= %s::timestamptz
                       and (valid_to is null or valid_to > %s::timestamptz)))
            order by model_type, valid_from
            """,
            (symbol, model_type, model_type, when, when, when),
        ).fetchall()
    if not rows:
        moment = f" at {at:%Y-%m-%d %H:%M}" if at else ""
        raise NoModelError(f"no champion of {symbol}{moment}")
    title = f"champions of {symbol}" + (f" at {at:%Y-%m-%d %H:%M} UTC" if at else "")
    table = Table(title=title)
    for col in ("model_type", "version_id", "valid_from", "valid_to", "by", "reason"):
        table.add_column(col)
    for mtype, vid, start, end, event, reason, current in rows:
        table.add_row(
            mtype,
            vid,
            f"{start:%Y-%m-%d %H:%M:%S}",
            "current" if current else f"{end:%Y-%m-%d %H:%M:%S}",
            event,
            reason or "",
        )
    _console().print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="Version id to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the event).")],
) -> None:
    """Make a version the champion of its symbol and model type (recorded as an event)."""
    from brain_lib.registry import promote
    from brain_lib.warehouse import connect

    settings = _settings()
    dsn = _prepare(settings)
    with connect(dsn) as conn:
        previous = promote(conn, version, reason=reason)
    _rebuild_champion_marts(dsn, settings)
    typer.echo(f"{version} is champion (was: {previous or 'none'})")


@models_app.command("rollback")
def models_rollback(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. SOL/USDT.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the event).")],
    model_type: Annotated[str | None, typer.Option(help="Model type, if several.")] = None,
) -> None:
    """Move the champion back to the version that was champion before it."""
    from brain_lib.registry import rollback
    from brain_lib.warehouse import connect

    settings = _settings()
    dsn = _prepare(settings)
    with connect(dsn) as conn:
        restored, demoted = rollback(conn, symbol, reason=reason, model_type=model_type)
    _rebuild_champion_marts(dsn, settings)
    typer.echo(f"{symbol}: champion rolled back to {restored} (demoted {demoted})")


# -------------------------------------------------------------------------- spool


@spool_app.command("list")
def spool_list() -> None:
    """Record sets waiting in the spool."""
    from brain_lib.spool import pending

    files = pending(_settings().home / "spool")
    for path in files:
        typer.echo(str(path))
    typer.echo(f"{len(files)} record set(s) spooled")


@spool_app.command("replay")
def spool_replay() -> None:
    """Land spooled record sets in the warehouse (exactly once), then rebuild the marts."""
    from brain_lib.dbt import run_dbt
    from brain_lib.spool import replay

    settings = _settings()
    dsn = _prepare(settings)
    report = replay(dsn, settings.home / "spool")
    if report.landed:
        run_dbt(["build"], dsn=dsn, project_dir=settings.dbt_dir, state_dir=settings.home / "dbt")
    typer.echo(
        f"{len(report.landed)} landed, {len(report.already)} already there, "
        f"{len(report.failed)} failed"
    )
    for name, error in report.failed.items():
        typer.echo(f"{name}: {error}", err=True)
    if report.failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------------ collect


def _stream_progress(dsn: str, specs: list[Any], since: datetime | None) -> Any:
    """A rich progress bar per stream, fed by polling ``raw.collection_streams`` (which
    the collector updates with every page) while the flow runs in this thread."""
    import threading
    from datetime import UTC, timedelta

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from brain_lib.warehouse import connect

    now = datetime.now(UTC)
    start = since.replace(tzinfo=since.tzinfo or UTC) if since else now - timedelta(days=365)
    progress = Progress(
        TextColumn("{task.description:<44}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=_console(),
    )
    keys = {(sp.exchange, sp.symbol, sp.dataset, sp.series): sp for sp in specs}
    first: dict[tuple[str, str, str, str], datetime] = {}
    with connect(dsn) as conn:
        for row in conn.execute(
            "select exchange, symbol, dataset, series, last_ts from raw.collection_streams"
        ).fetchall():
            if tuple(row[:4]) in keys and row[4] is not None:
                first[tuple(row[:4])] = row[4]
    bars = {
        key: progress.add_task(sp.label, total=1000, status="waiting") for key, sp in keys.items()
    }
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            try:
                with connect(dsn) as conn:
                    rows = conn.execute(
                        "select exchange, symbol, dataset, series, status, last_ts "
                        "from raw.collection_streams"
                    ).fetchall()
            except Exception:  # the bars are a courtesy; the flow reports errors
                continue
            for exchange, symbol, dataset, series, status, last_ts in rows:
                key = (exchange, symbol, dataset, series)
                if key not in bars or last_ts is None:
                    continue
                begin = min(first.get(key, start), start)
                span = max((now - begin).total_seconds(), 1.0)
                done = min(max((last_ts - begin).total_seconds() / span, 0.0), 1.0)
                progress.update(bars[key], completed=int(done * 1000), status=status)

    thread = threading.Thread(target=poll, name="brain-collect-progress", daemon=True)

    class _Bars:
        def __enter__(self) -> Any:
            progress.start()
            thread.start()
            return self

        def finish(self, rows: list[dict[str, Any]]) -> None:
            for row in rows:
                key = (row["exchange"], row["symbol"], row["dataset"], row["series"])
                if key in bars:
                    label = f"{row['status']}: {row['new_rows']} new, {row['unchanged_rows']} same"
                    progress.update(bars[key], completed=1000, status=label)

        def __exit__(self, *exc: object) -> None:
            stop.set()
            thread.join(timeout=5)
            progress.stop()

    return _Bars()


@app.command()
def collect(
    exchange: Annotated[
        str, typer.Option(help="Comma-separated exchanges: binance, bybit, okx.")
    ] = "binance",
    symbols: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated ccxt symbols, e.g. BTC/USDT:USDT (perpetual), BTC/USDT."
        ),
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Where a stream with nothing stored starts (UTC).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Collect nothing after it (UTC).")] = None,
    datasets: Annotated[
        str, typer.Option(help="Comma-separated: ohlcv, funding, oi, liquidations.")
    ] = "ohlcv,funding,oi,liquidations",
    timeframe: Annotated[str, typer.Option(help="Candle timeframe.")] = "1h",
    oi_period: Annotated[str, typer.Option(help="Open-interest sampling period.")] = "1h",
    replay: Annotated[
        bool, typer.Option(help="Start the replay exchange on 127.0.0.1 and collect from it.")
    ] = False,
    replay_url: Annotated[
        str | None, typer.Option(help="Collect from a replay exchange already running here.")
    ] = None,
) -> None:
    """Collect market data through ccxt (flow collect-market-data), a progress bar per stream."""
    from brain_lib.errors import ConfigError
    from brain_lib.market.collect import stream_specs

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    exchanges = _split(exchange) or []
    chosen = _split(symbols)
    if not chosen:
        raise ConfigError("--symbols is required, e.g. --symbols BTC/USDT:USDT,ETH/USDT:USDT")
    wanted = _split(datasets) or []
    specs = stream_specs(exchanges, chosen, wanted, timeframe=timeframe, oi_period=oi_period)
    settings = _settings()
    dsn = _prepare(settings)
    from flows.collect_market_data import collect_market_data
    from flows.runner import run_flow

    with _stream_progress(dsn, specs, since) as bars:
        state = run_flow(
            collect_market_data,
            exchanges=exchanges,
            symbols=chosen,
            datasets=wanted,
            since=since,
            until=until,
            timeframe=timeframe,
            oi_period=oi_period,
            replay=replay_url or replay,
        )
        rows = state.result(raise_on_failure=False)
        if isinstance(rows, list):
            bars.finish(rows)
    if not isinstance(rows, list):
        from brain_lib.errors import BrainError

        raise BrainError(f"collect-market-data ended {state.name}: {state.message or rows}")
    console = _console()
    for row in rows:
        if row["status"] != "ok":
            colour = "red" if row["status"] == "failed" else "yellow"
            console.print(f"[{colour}]{row['status']}: {row['message']}[/{colour}]")
        elif row["gaps"]:
            console.print(
                f"[yellow]{row['exchange']} {row['symbol']} {row['dataset']}: "
                f"{row['gaps']} gap(s) recorded in raw.collection_gaps[/yellow]"
            )
    console.print(f"collect-market-data: {state.name} ({state.message})")
    if not state.is_completed():
        raise typer.Exit(1)


@replay_app.command("serve")
def replay_serve(
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8765,
    now: Annotated[str | None, typer.Option(help="Fixed clock, ISO (default: wall clock).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market.")] = 7,
    bases: Annotated[str, typer.Option(help="Listed base assets.")] = "BTC,ETH,SOL",
    source: Annotated[str, typer.Option(help="synthetic or recorded.")] = "synthetic",
    autocorr: Annotated[float, typer.Option(help="Autocorrelation of synthetic returns.")] = 0.0,
    trend: Annotated[
        float, typer.Option(help="Planted trend, in bar volatilities (the demo plants 0.2).")
    ] = 0.0,
) -> None:
    """Run the replay exchange until Ctrl-C; point ccxt at it with brain collect --replay-url."""
    from brain_lib.errors import ConfigError
    from brain_lib.market.replay import ReplayConfig, serve

    try:
        config = ReplayConfig(
            seed=seed,
            now=now,
            bases=tuple(b.strip().upper() for b in bases.split(",") if b.strip()),
            source=source,
            autocorr=autocorr,
            trend=trend,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    serve(
        config,
        host=host,
        port=port,
        ready=lambda url: typer.echo(f"replay exchange on {url} (Ctrl-C stops it)"),
    )


# ------------------------------------------------------------------------ quality


@quality_app.command("check")
def quality_check(
    table: Annotated[
        str | None,
        typer.Option(
            help="ohlcv, funding_rates, open_interest, liquidations or model_metrics "
            "(default: all)."
        ),
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe (candles).")] = None,
    start: Annotated[datetime | None, typer.Option(help="Rows from (UTC, inclusive).")] = None,
    end: Annotated[datetime | None, typer.Option(help="Rows before (UTC, exclusive).")] = None,
) -> None:
    """Run the suites by hand: record the results, quarantine failing rows, build Data Docs.

    Exit 1 when a blocking expectation failed.
    """
    from brain_lib.quality import data_docs_dir, run_quality_checks

    settings = _settings()
    dsn = _prepare(settings)
    reports = run_quality_checks(
        dsn,
        tables=[table] if table else None,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        docs_dir=data_docs_dir(home=settings.home),
    )
    console = _console()
    for report in reports:
        colour = "green" if report.success else ("yellow" if report.ok else "red")
        console.print(f"[{colour}]{report.describe()}[/{colour}]", highlight=False)
    docs = next((r.docs_index for r in reports if r.docs_index), None)
    if docs:
        console.print(f"Data Docs: {docs}")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


# ----------------------------------------------------------------------- features


def _marts_table(dsn: str, sql: str, params: tuple[Any, ...], title: str) -> Any:
    """A rich table of a mart query, or a clear error when the mart is not built yet."""
    import psycopg
    from rich.table import Table

    from brain_lib.errors import WarehouseError
    from brain_lib.warehouse import connect

    with connect(dsn) as conn:
        try:
            cur = conn.execute(sql, params)
        except psycopg.errors.UndefinedTable:
            raise WarehouseError(
                f"{title}: the mart is not built yet; run brain features analyze"
            ) from None
        names = [d.name for d in cur.description or []]
        rows = cur.fetchall()
    table = Table(title=title)
    for name in names:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(
            *("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row)
        )
    return table, rows


@features_app.command("analyze")
def features_analyze(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every champion).")
    ] = None,
    window_days: Annotated[int, typer.Option(min=1, help="Recent window in days.")] = 30,
    end: Annotated[datetime | None, typer.Option(help="End of the recent window (UTC).")] = None,
) -> None:
    """Run nightly-feature-analysis once: recompute importance, build the shift and drift marts."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = _settings()
    _prepare(settings)  # fail fast on an unreachable warehouse, before Prefect starts
    from flows.nightly_feature_analysis import nightly_feature_analysis
    from flows.runner import run_flow

    state = run_flow(
        nightly_feature_analysis, symbols=_split(symbols), window_days=window_days, end=end
    )
    data = state.result(raise_on_failure=False)
    if not isinstance(data, dict):
        from brain_lib.errors import BrainError

        raise BrainError(f"nightly-feature-analysis ended {state.name}: {state.message or data}")
    console = _console()
    console.print(f"nightly-feature-analysis: {state.name} ({state.message})")
    for row in data.get("shifts", []):
        if row["shift_flag"]:
            console.print(
                f"[yellow]{row['symbol']} {row['model_type']} {row['importance_method']}: "
                f"shift: {row['shift_reason']}[/yellow]"
            )
    for m in data.get("marked", []):
        console.print(f"[yellow]{m['symbol']} marked for retraining[/yellow]")
    for f in data.get("failed", []):
        console.print(f"[red]{f['symbol']} {f['model_type']}: {f['error']}[/red]")
    if not state.is_completed():
        raise typer.Exit(1)


@features_app.command("top")
def features_top(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT.")],
    method: Annotated[str, typer.Option(help="shap, permutation or correlation.")] = "shap",
    n: Annotated[int, typer.Option(min=1, help="How many features.")] = 10,
    model_type: Annotated[str | None, typer.Option(help="Champion of this model type.")] = None,
) -> None:
    """The most important features of the symbol's champion (latest computation)."""
    from rich.table import Table

    from brain_lib.brain import BrainLibrary
    from brain_lib.errors import ConfigError

    if method not in ("shap", "permutation", "correlation"):
        raise ConfigError(f"unknown method {method!r}: use shap, permutation or correlation")
    settings = _settings()
    dsn = _prepare(settings)
    with BrainLibrary(dsn=dsn) as lib:
        rows = lib.get_top_features(symbol, n=n, method=method, model_type=model_type)
    table = Table(title=f"{symbol}: top {n} features by {method} ({rows[0]['kind']} importance)")
    for col in ("rank", "feature", "importance", "normalised", "computed_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["rank"]),
            r["feature"],
            f"{r['importance']:.6g}",
            f"{r['normalised']:.4f}",
            f"{r['computed_at']:%Y-%m-%d %H:%M}",
        )
    _console().print(table)


@features_app.command("shifts")
def features_shifts(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    flagged: Annotated[bool, typer.Option(help="Only comparisons that shifted.")] = False,
) -> None:
    """Latest training-vs-recent comparison of every champion (marts.feature_shifts)."""
    dsn = _prepare(_settings())
    table, _ = _marts_table(
        dsn,
        """
        select symbol, model_type, importance_method as method, version_id,
               computed_at::timestamp(0) as computed_at, rank_correlation, top_k_jaccard,
               moved_features, shift_flag, symbol_shift_flag
        from marts.feature_shifts
        where is_latest and is_champion and (%s::text is null or symbol = %s)
          and (not %s or shift_flag)
        order by symbol, model_type, importance_method
        """,
        (symbol, symbol, flagged),
        "marts.feature_shifts (latest, champions)",
    )
    _console().print(table)


@features_app.command("drift")
def features_drift(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Largest N PSIs.")] = 20,
) -> None:
    """Features whose distribution moved most, by PSI (marts.feature_drift)."""
    dsn = _prepare(_settings())
    table, _ = _marts_table(
        dsn,
        """
        select d.symbol, d.model_type, d.feature_name as feature, d.psi, d.drift_level,
               d.train_rows, d.recent_rows
        from marts.feature_drift d
        join raw.model_champions c on c.version_id = d.version_id
        where d.is_latest and d.psi is not null and (%s::text is null or d.symbol = %s)
        order by d.psi desc limit %s
        """,
        (symbol, symbol, limit),
        "marts.feature_drift (latest, champions)",
    )
    _console().print(table)


# ---------------------------------------------------------------------------- dbt


@app.command(
    "dbt",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def dbt_passthrough(ctx: typer.Context) -> None:
    """Run dbt on dbt_brain/ against the warehouse: brain dbt build, brain dbt docs generate…"""
    from brain_lib.dbt import run_dbt

    settings = _settings()
    dsn = _prepare(settings)
    result = run_dbt(
        list(ctx.args),
        dsn=dsn,
        project_dir=settings.dbt_dir,
        state_dir=settings.home / "dbt",
        check=False,
        timeout=24 * 3600,
    )
    typer.echo(result.output.rstrip())
    if not result.ok:
        raise typer.Exit(result.returncode)


# --------------------------------------------------------------------------- main


def main() -> None:
    """Entry point of the ``brain`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        from brain_lib.errors import BrainError

        if isinstance(exc, BrainError):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        raise


if __name__ == "__main__":
    main()
