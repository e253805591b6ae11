"""Benchmark: liquidations landed per second by the websocket listener, and the latency
from a liquidation's arrival to its committed row.

What is measured: one exchange (``--exchange``, default binance) and ``--symbols``
(default 10) perpetuals of the replay exchange, whose streams replay ``--hours`` of the
synthetic market (``--rate`` liquidations per symbol-hour on average) as fast as
``--speed`` allows, into a throwaway embedded PostgreSQL. The listener
(:class:`brain_lib.market.listen.LiquidationListener`, quality checks off: they are
measured in bench_quality.py) runs until the streams fall quiet.

Printed: liquidations sent and landed (they must be equal), landed per second over the
time the streams were busy, the arrival-to-commit latency (median and p99; arrival =
when ccxt.pro parsed it, commit = when its batch committed), and as the obvious
alternative the same rows written one INSERT and commit each (what a naive listener
does), with the ratio.

Run from the repository root::

    .venv/bin/python bench/bench_listen.py
    .venv/bin/python bench/bench_listen.py --exchange okx --symbols 3
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _machine import load_note, wait_for_quiet  # bench/ is on sys.path

from brain_lib.dbt import ensure_raw_schema
from brain_lib.market._replay_data import _to_ms
from brain_lib.market.listen import LiquidationListener
from brain_lib.market.replay import ReplayConfig, ReplayServer
from brain_lib.warehouse import EmbeddedWarehouse, connect

REPO = Path(__file__).resolve().parent.parent
BASES = ("BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT", "LTC", "TRX")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exchange", default="binance", choices=("binance", "bybit", "okx"))
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--hours", type=float, default=48.0)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--speed", type=float, default=20_000.0, help="market ms per wall ms")
    p.add_argument("--quiet-wait", type=float, default=30.0)
    return p.parse_args()


def naive_inserts(dsn: str, rows: list[tuple]) -> float:
    """The same rows, one INSERT and one commit each (into a copy of the table)."""
    with connect(dsn) as conn:
        conn.execute("create table public.naive (like raw.liquidations including all)")
        conn.commit()
        start = time.perf_counter()
        for row in rows:
            conn.execute(
                "insert into public.naive (exchange, symbol, liquidation_key, ts, side, "
                "price, quantity, notional) values (%s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict do nothing",
                row,
            )
            conn.commit()
        return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    bases = BASES[: args.symbols]
    root = Path(tempfile.mkdtemp(prefix="brain-bench-listen-"))
    warehouse = EmbeddedWarehouse(root)
    try:
        dsn = warehouse.start()
        ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=root / "dbt")
        now = "2025-06-01T00:00:00Z"
        ws_start = _to_ms(now) - int(args.hours * 3_600_000)
        config = ReplayConfig(
            now=now,
            bases=bases,
            ws_start=ws_start,
            ws_speed=args.speed,
            liquidation_rate=args.rate,
        )
        symbols = [f"{b}/USDT:USDT" for b in bases]
        busy = wait_for_quiet(args.quiet_wait)
        with ReplayServer(config) as replay:
            span_s = args.hours * 3600 / args.speed
            listener = LiquidationListener(
                dsn, args.exchange, symbols, replay_url=replay.url, check_s=None
            )
            started = time.perf_counter()
            report = listener.run(span_s + 4.0)
            wall = time.perf_counter() - started
            sent = [s for s in replay.ws.sent_to(args.exchange) if s.copy == 0]
        with connect(dsn) as conn:
            stored = conn.execute("select count(*) from raw.liquidations").fetchone()[0]
            rows = conn.execute(
                "select exchange, symbol, liquidation_key || 'n', ts, side, price, quantity, "
                "notional from raw.liquidations"
            ).fetchall()
        median, p99 = report.latency()
        print(f"machine: {load_note()}, busy share before: {busy}")
        print(
            f"{args.exchange}, {len(symbols)} symbols, {args.hours:g} h of market in "
            f"{span_s:.1f} s (listener ran {wall:.1f} s, {report.batches} batches)"
        )
        print(f"sent {len(sent)}, landed {stored} ({'equal' if stored == len(sent) else 'DIFFER'})")
        print(f"landed per second while the streams ran: {stored / span_s:,.0f}")
        print(f"arrival to commit: median {median:.1f} ms, p99 {p99:.1f} ms")
        naive = naive_inserts(dsn, rows)
        print(
            f"naive listener (one INSERT + commit per liquidation): {len(rows) / naive:,.0f} "
            f"rows/s; batched listener writes {report.batches} transactions for the same rows"
        )
        if stored != len(sent):
            raise SystemExit(1)
    finally:
        warehouse.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
