"""brain listen: live websocket streams into the warehouse (liquidations)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from brain_lib.cli._app import _console, _prepare, _settings, _split, listen_app

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str | None) -> float | None:
    """``90s``, ``55m``, ``2h``, ``1d`` or plain seconds -> seconds; None: no limit."""
    if text is None:
        return None
    from brain_lib.errors import ConfigError

    found = _DURATION.match(text)
    if not found or float(found.group(1)) <= 0:
        raise ConfigError(f"--for {text!r} is not a duration: use e.g. 90s, 55m, 2h or 1d")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
    return float(found.group(1)) * scale


def _table(report: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"{report.exchange} liquidations ({report.listener_id})")
    for name in ("symbol", "received", "new", "already stored", "quarantined", "last"):
        table.add_column(name, justify="left" if name in ("symbol", "last") else "right")
    for row in report.as_rows():
        table.add_row(
            row["symbol"],
            str(row["messages"]),
            str(row["new_rows"]),
            str(row["unchanged_rows"]),
            str(row["rejected"]),
            (row["last_ts"] or "-")[:19],
        )
    table.caption = (
        f"{report.reconnects} reconnect(s), {len(report.gaps)} gap(s), "
        f"{report.rejected} message(s) quarantined, {report.batches} batch(es)"
    )
    return table


@listen_app.command("liquidations")
def listen_liquidations_command(
    exchange: Annotated[str, typer.Option(help="binance, bybit or okx.")] = "binance",
    symbols: Annotated[
        str | None,
        typer.Option(help="Comma-separated perpetuals, e.g. BTC/USDT:USDT (B/Q means B/Q:Q)."),
    ] = None,
    for_: Annotated[
        str | None,
        typer.Option("--for", help="How long: 90s, 55m, 2h (default: until Ctrl-C)."),
    ] = None,
    replay: Annotated[
        bool, typer.Option(help="Start the replay exchange on 127.0.0.1 and listen to it.")
    ] = False,
    replay_url: Annotated[
        str | None, typer.Option(help="Listen to a replay exchange already running here.")
    ] = None,
    replay_speed: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="With --replay: its streams run this many times faster than the wall "
            "clock (starting that much earlier), so a short run sees many liquidations.",
        ),
    ] = 1.0,
    check_every: Annotated[
        float, typer.Option(help="Seconds between quality-suite runs on what landed.")
    ] = 30.0,
) -> None:
    """Listen to forced liquidations through ccxt.pro websockets and land them in
    raw.liquidations (exactly once), with a live count per stream. Ctrl-C stops it after
    committing everything received."""
    from rich.live import Live

    from brain_lib.errors import ConfigError
    from brain_lib.market.listen import LiquidationListener, check_exchange
    from brain_lib.quality import data_docs_dir

    chosen = _split(symbols, "--symbols")
    if not chosen:
        raise ConfigError("--symbols is required, e.g. --symbols BTC/USDT:USDT,ETH/USDT:USDT")
    if replay and replay_url:
        raise ConfigError("give --replay or --replay-url, not both")
    duration = parse_duration(for_)
    check_exchange(exchange)  # before the warehouse starts
    settings = _settings()
    dsn = _prepare(settings)
    console = _console()
    server = None
    if replay:
        import time

        from brain_lib.market.replay import ReplayConfig, ReplayServer

        span_ms = int((duration or 3600.0) * 1000 * replay_speed)
        start = int(time.time() * 1000) - (span_ms if replay_speed > 1 else 0)
        server = ReplayServer(ReplayConfig(ws_start=start, ws_speed=replay_speed)).start()
        console.print(f"replay exchange on {server.url} (websocket {server.ws_url})")
    try:
        listener = LiquidationListener(
            dsn,
            exchange,
            chosen,
            replay_url=server.url if server is not None else replay_url,
            check_s=check_every,
            docs_dir=data_docs_dir(home=settings.home),
        )
        with Live(_table(listener.report), console=console, refresh_per_second=4) as live:
            listener.on_progress = lambda report: live.update(_table(report))
            report = listener.run(duration)
            live.update(_table(report))
    finally:
        if server is not None:
            server.stop()
    median, p99 = report.latency()
    if median is not None and p99 is not None:
        console.print(f"arrival to commit: median {median:.1f} ms, p99 {p99:.1f} ms")
    for check in report.checks:
        console.print(f"data quality: {check['summary']}", style=None if check["ok"] else "red")
    console.print(report.describe())
    if report.status != "ok":
        raise typer.Exit(1)
