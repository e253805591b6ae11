"""brain collect, brain spool and brain replay: market data in, and what waited outside."""

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
    replay_app,
    spool_app,
)

if TYPE_CHECKING:
    pass


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
    exchanges = _split(exchange, "--exchange") or []
    chosen = _split(symbols, "--symbols")
    if not chosen:
        raise ConfigError("--symbols is required, e.g. --symbols BTC/USDT:USDT,ETH/USDT:USDT")
    wanted = _split(datasets, "--datasets") or []
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
            console.print(f"{row['status']}: {row['message']}", style=colour)
        elif row["gaps"]:
            console.print(
                f"{row['exchange']} {row['symbol']} {row['dataset']}: "
                f"{row['gaps']} gap(s) recorded in raw.collection_gaps",
                style="yellow",
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
