"""brain train and brain demo: daily-retrain once, and the whole job offline."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brain_lib.cli._app import (
    _console,
    _prepare,
    _settings,
    _split,
    app,
)
from brain_lib.config import check_retrain_setup

if TYPE_CHECKING:
    from brain_lib.config import Settings


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
# the demo listens to the replay's liquidation streams, which replay the whole window
# in DEMO_LISTEN_S seconds at DEMO_LIQUIDATION_RATE liquidations per symbol-hour
DEMO_LISTEN_S = 12.0
DEMO_LIQUIDATION_RATE = 2.0


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


EXIT_INTERRUPTED = 130


def _landed_since(dsn: str, since: datetime) -> list[tuple[str, str, str]]:
    """(symbol, model type, decision) of every version landed since ``since``."""
    from brain_lib.warehouse import connect

    with connect(dsn) as conn:
        rows = conn.execute(
            "select v.symbol, v.model_type, coalesce(e.event_type, 'kept') "
            "from raw.model_versions v left join raw.model_events e "
            "on e.version_id = v.version_id and e.event_type in ('promotion', 'rollback') "
            "where v.created_at >= %s order by 1, 2",
            (since,),
        ).fetchall()
    return [(str(s), str(m), str(d)) for s, m, d in rows]


class _VersionProgress:
    """A rich bar of the versions landed so far (polled from ``raw.model_versions``
    while the flow runs in this thread), with the last one's symbol and decision."""

    def __init__(self, dsn: str, since: datetime, total: int) -> None:
        import threading

        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.dsn, self.since = dsn, since
        self.progress = Progress(
            TextColumn("daily-retrain"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} versions landed"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=_console(),
        )
        self.task = self.progress.add_task("daily-retrain", total=total, last="")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="brain-train-progress", daemon=True)

    def _poll(self) -> None:
        while not self.stop.wait(1.0):
            self.refresh()

    def refresh(self) -> None:
        try:
            landed = _landed_since(self.dsn, self.since)
        except Exception:  # the bar is a courtesy; the flow reports errors
            return
        last = f"last: {landed[-1][0]} {landed[-1][1]} {landed[-1][2]}" if landed else ""
        self.progress.update(self.task, completed=len(landed), last=last)

    def __enter__(self) -> _VersionProgress:
        self.progress.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.refresh()
        self.progress.stop()


def _interrupted_line(dsn: str, since: datetime, params: dict[str, Any]) -> str:
    """What a Ctrl-C left: which symbol × model types landed, which did not, the marts."""
    try:
        landed = _landed_since(dsn, since)
    except Exception as exc:  # the warehouse itself may be what went away
        return f"interrupted: could not read what landed ({type(exc).__name__}); " + (
            "see brain models list; the marts were not rebuilt: run brain dbt build"
        )
    done = {(s, m) for s, m, _ in landed}
    wanted = [(s, m) for s in params.get("symbols") or [] for m in params.get("model_types") or []]
    missing = [f"{s} {m}" for s, m in wanted if (s, m) not in done]
    parts = [
        "landed: " + ", ".join(f"{s} {m} ({d})" for s, m, d in landed)
        if landed
        else "no model landed"
    ]
    if missing:
        parts.append("not trained: " + ", ".join(missing) + " (their champions stay)")
    parts.append("the marts were not rebuilt: run brain dbt build")
    return "interrupted: " + "; ".join(parts)


def _run_retrain(dsn: str, settings: Settings, **params: Any) -> list[dict[str, Any]]:
    """Run daily-retrain once and return its per-symbol rows; exit 1 if any failed.

    Ctrl-C: the tasks already running finish (a version lands whole or not at all),
    the rest are cancelled, and one line says what landed; exit status 130.
    """
    # Prefect's server telemetry tries the network (closed on many desks) and, on the
    # temporary server's SQLite, races the run for the database lock
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from brain_lib.warehouse import connect
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    with connect(dsn) as conn:  # the warehouse's clock, which stamps the versions
        row = conn.execute("select now()").fetchone()
    since = row[0] if row else datetime.min
    total = len(params.get("symbols") or settings.symbols) * len(
        params.get("model_types") or settings.model_types
    )
    try:
        with _VersionProgress(dsn, since, total):
            state = run_flow(daily_retrain, **params)
    except KeyboardInterrupt:
        typer.echo(_interrupted_line(dsn, since, params), err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    rows = state.result(raise_on_failure=False)
    if not isinstance(rows, list):
        from brain_lib.errors import BrainError

        raise BrainError(f"daily-retrain ended {state.name}: {state.message or rows}")
    console = _console()
    console.print(_metrics_table(rows, f"daily-retrain: {state.name}"))
    for row in rows:
        if row["status"] != "ok":
            console.print(f"{row['symbol']} {row['model_type']}: {row['error']}", style="red")
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
        from datetime import UTC

        now = datetime.now(UTC)
        if start.replace(tzinfo=start.tzinfo or UTC) >= now:
            raise ConfigError(
                f"--start {start:%Y-%m-%d %H:%M} is in the future: there are no candles to train on"
            )
        lookback_days = max(1, int((end - start).total_seconds() // 86400))
    settings = _settings(
        symbols=_split(symbols, "--symbols"),
        exchange=exchange,
        timeframe=timeframe,
        model_types=_split(model_types, "--model-types"),
        lookback_days=lookback_days,
    )
    check_retrain_setup(settings)
    dsn = _prepare(settings)  # fail fast, before Prefect starts, on an unreachable warehouse
    _check_symbols(dsn, settings)
    _run_retrain(
        dsn,
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


def _demo_listen(dsn: str, names: list[str], replay_url: str, settings: Any) -> None:
    """Liquidations for the demo: listen to the replay's binance streams while they
    replay the demo's window (before the collection, whose dbt build then puts them in
    marts.fct_features_hourly)."""
    from brain_lib.market.listen import listen_liquidations
    from brain_lib.quality import data_docs_dir

    report = listen_liquidations(
        dsn,
        "binance",
        names,
        duration_s=DEMO_LISTEN_S + 4.0,
        replay_url=replay_url,
        check_s=0,
        docs_dir=data_docs_dir(home=settings.home),
    )
    median, p99 = report.latency()
    latency = f"; arrival to commit median {median:.0f} ms, p99 {p99:.0f} ms" if median else ""
    _console().print(f"listen liquidations (ccxt.pro websockets): {report.describe()}{latency}")
    if report.status != "ok":
        from brain_lib.errors import BrainError

        raise BrainError(f"listening to liquidations failed: {report.message}")


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
        liquidation_rate=DEMO_LIQUIDATION_RATE,
        ws_start=DEMO_DATA_START,
        ws_speed=(clock - start).total_seconds() / DEMO_LISTEN_S,
    )
    with ReplayServer(config) as replay:
        console.print(f"replay exchange (binance, bybit, okx formats) on {replay.url}")
        _demo_listen(dsn, names, replay.url, settings)
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
        dsn,
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
