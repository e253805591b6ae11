"""Benchmark: market-data collection from the replay exchange, rows per second.

What is measured (wall-clock, ``time.perf_counter``): ``brain_lib.market.collect.collect``
backfilling ``--days`` of data for every stream below from the replay exchange into an
empty warehouse, streams one after another (the flow runs them as parallel tasks; this
measures the per-stream pipeline):

* binance: spot and USD-M perpetual OHLCV, and the perpetual's funding and open interest
* bybit and okx: perpetual OHLCV, funding and open interest

for each base in ``--bases``; OHLCV and open interest at ``--timeframe`` (default 5m).

The replay exchange runs in its own process (``python -m brain_lib.market.replay``), so
its work of generating and serialising the answers does not share this process's GIL;
the warehouse is a throwaway embedded PostgreSQL in a temporary folder with the raw
schema made by dbt. Everything goes the real way: ccxt objects with the rate limiter on,
real HTTP on 127.0.0.1, validation, binary COPY / upserts, bookkeeping.

Two passes, each into an emptied warehouse:

1. ``ccxt rate limits``: each exchange's own limiter delay (binance 50 ms, bybit 20 ms x
   endpoint cost, okx 110 ms x cost): what a real backfill would be bounded by.
2. ``limiter at 0 ms``: the limiter still on but with no delay, to see the pipeline
   itself (HTTP to the local replay, ccxt parsing, validation, warehouse writes).

Reading the output: one line per stream with rows, requests, seconds, rows/s and the
share of the stream's time in each part, then the totals:

* ``ccxt parse``: JSON decoding plus ccxt's own work in the unified call (building the
  request, parsing into unified structures), i.e. the call's time minus the time
  waiting for the HTTP answer and minus the limiter's sleeps;
* ``http``: waiting for the replay's answer (its generation and the transfer);
* ``throttle``: ccxt's rate-limiter sleeps;
* ``write``: the warehouse transactions (rows, gaps, stream state);
* ``other``: the rest (Brain's validation of pages, clock and markets bookkeeping,
  Python around it).

``--json PATH`` also writes each pass's rows/s and time shares and two ratios
(``bench/_report.py``): rows/s with the limiter at 0 ms over rows/s with ccxt's rate
limits, and in the 0 ms pass the warehouse write's seconds against ccxt parsing's.
``--quick`` is 2 days of one base (BTC).

Run from the repository root::

    .venv/bin/python bench/bench_collect.py                   # 30 days of 5m data, 3 bases
    .venv/bin/python bench/bench_collect.py --days 7 --bases BTC
    .venv/bin/python bench/bench_collect.py --quick
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _machine import load_note, wait_for_quiet  # bench/ is on sys.path
from _report import add_report_args, measure, ratio, write_report

from brain_lib.dbt import ensure_raw_schema
from brain_lib.market.collect import (
    ExchangePool,
    RetryPolicy,
    StreamReport,
    StreamSpec,
    collect,
)
from brain_lib.warehouse import EmbeddedWarehouse, connect

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 3, 1, tzinfo=UTC)
TABLES = (
    "raw.ohlcv",
    "raw.funding_rates",
    "raw.open_interest",
    "raw.collection_gaps",
    "raw.collection_streams",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=30, help="days to backfill per stream")
    parser.add_argument("--timeframe", default="5m", help="OHLCV timeframe and OI period")
    parser.add_argument("--bases", default="BTC,ETH,SOL", help="base assets (USDT-quoted)")
    parser.add_argument(
        "--passes",
        default="limits,zero",
        help="which passes: limits (ccxt rate limits), zero (limiter at 0 ms)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait at most for an idle machine before each pass",
    )
    add_report_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.days, args.bases = 2, "BTC"
        args.quiet_wait = min(args.quiet_wait, 10.0)
    return args


def specs_for(bases: list[str], timeframe: str) -> list[StreamSpec]:
    out: list[StreamSpec] = []
    for base in bases:
        spot, perp = f"{base}/USDT", f"{base}/USDT:USDT"
        out.append(StreamSpec("binance", spot, "ohlcv", timeframe))
        for exchange in ("binance", "bybit", "okx"):
            out.append(StreamSpec(exchange, perp, "ohlcv", timeframe))
            out.append(StreamSpec(exchange, perp, "funding"))
            out.append(StreamSpec(exchange, perp, "oi", timeframe))
    return out


def start_replay(bases: list[str]) -> tuple[subprocess.Popen[str], str]:
    """The replay exchange in its own process; returns it and its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brain_lib.market.replay",
            "--port",
            "0",
            "--now",
            NOW.isoformat(),
            "--bases",
            ",".join(bases),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the replay exchange did not start (said {url!r})")
    return proc, url


def share(part: float, total: float) -> str:
    return f"{100 * part / total:5.1f}%" if total > 0 else "    -"


def report_pass(name: str, reports: list[StreamReport], wall: float) -> dict[str, float]:
    """Print the pass's table; its totals (rows, seconds summed over streams, parts, wall)."""
    print(f"\n== {name}: {len(reports)} streams in {wall:.2f} s ==")
    header = (
        f"{'stream':38s} {'rows':>7s} {'req':>5s} {'sec':>7s} {'rows/s':>9s} "
        f"{'ccxt parse':>10s} {'http':>6s} {'throttle':>8s} {'write':>6s} {'other':>6s}"
    )
    print(header)
    totals = {"rows": 0, "req": 0, "sec": 0.0, "parse": 0.0, "http": 0.0, "thr": 0.0, "wr": 0.0}
    by_dataset: dict[str, list[float]] = {}
    for r in reports:
        t = r.timings
        sec = r.elapsed_s
        other = max(sec - t.ccxt_parsing_s - t.http_s - t.throttle_s - t.write_s, 0.0)
        rate = r.new_rows / sec if sec > 0 else 0.0
        print(
            f"{r.label:38s} {r.new_rows:7d} {r.requests:5d} {sec:7.2f} {rate:9.0f} "
            f"{share(t.ccxt_parsing_s, sec):>10s} {share(t.http_s, sec):>6s} "
            f"{share(t.throttle_s, sec):>8s} {share(t.write_s, sec):>6s} {share(other, sec):>6s}"
            + ("" if r.status == "ok" else f"  [{r.status}: {r.message}]")
        )
        totals["rows"] += r.new_rows
        totals["req"] += r.requests
        totals["sec"] += sec
        totals["parse"] += t.ccxt_parsing_s
        totals["http"] += t.http_s
        totals["thr"] += t.throttle_s
        totals["wr"] += t.write_s
        entry = by_dataset.setdefault(r.dataset, [0.0, 0.0])
        entry[0] += r.new_rows
        entry[1] += sec
    sec = totals["sec"]
    other = max(sec - totals["parse"] - totals["http"] - totals["thr"] - totals["wr"], 0.0)
    print(
        f"{'TOTAL':38s} {int(totals['rows']):7d} {int(totals['req']):5d} {sec:7.2f} "
        f"{totals['rows'] / sec:9.0f} {share(totals['parse'], sec):>10s} "
        f"{share(totals['http'], sec):>6s} {share(totals['thr'], sec):>8s} "
        f"{share(totals['wr'], sec):>6s} {share(other, sec):>6s}"
    )
    print(f"overall: {totals['rows'] / wall:,.0f} rows/s over the pass's wall time")
    for dataset, (rows, secs) in by_dataset.items():
        print(f"  {dataset:8s} {rows / secs:10,.0f} rows/s ({int(rows)} rows in {secs:.2f} s)")
    parse, write = totals["parse"], totals["wr"]
    if parse + write > 0:
        print(
            f"ccxt parsing vs warehouse write: {parse:.2f} s vs {write:.2f} s "
            f"({100 * parse / (parse + write):.0f}% / {100 * write / (parse + write):.0f}%)"
        )
    return {**totals, "other": other, "wall": wall}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bases = [b.strip().upper() for b in args.bases.split(",") if b.strip()]
    specs = specs_for(bases, args.timeframe)
    since = NOW - timedelta(days=args.days)
    print(f"{len(specs)} streams, {args.days} days from {since:%Y-%m-%d}, {args.timeframe}")
    root = Path(tempfile.mkdtemp(prefix="brain-bench-collect-"))
    store = EmbeddedWarehouse(root)
    proc, url = start_replay(bases)
    ok = True
    try:
        dsn = store.start()
        ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=root / "dbt")
        print(f"replay exchange at {url} (own process); warehouse in {root}")
        passes = {"limits": ("ccxt rate limits", None), "zero": ("limiter at 0 ms", 0.0)}
        results: dict[str, dict[str, float]] = {}
        for key in [p.strip() for p in args.passes.split(",") if p.strip()]:
            name, rate_limit = passes[key]
            with connect(dsn) as conn:
                conn.execute(f"truncate {', '.join(TABLES)}")
            busy = wait_for_quiet(args.quiet_wait)
            print(f"\n{load_note()}; busy share before the pass: {busy}")
            pool = ExchangePool(url, rate_limit_ms=rate_limit)
            start = time.perf_counter()
            reports = collect(dsn, specs, pool=pool, since=since, retry=RetryPolicy(attempts=3))
            wall = time.perf_counter() - start
            results[key] = report_pass(name, reports, wall)
            with connect(dsn) as conn:
                dup = conn.execute(
                    "select count(*) - count(distinct (exchange, symbol, timeframe, ts)) "
                    "from raw.ohlcv"
                ).fetchone()
            failed = [r for r in reports if r.status != "ok" or r.gaps]
            if failed or (dup and dup[0]):
                ok = False
                print(f"CHECK FAILED: {len(failed)} streams not clean, {dup} duplicates")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        store.stop()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        write_json(args.json, results, len(specs), args.days)
    return 0 if ok else 1


def write_json(path: str, results: dict[str, dict[str, float]], streams: int, days: int) -> None:
    """The passes' figures and ratios in the shared report format (bench/_report.py)."""
    names = {"limits": "ccxt rate limits", "zero": "limiter at 0 ms"}
    measures: list[dict[str, Any]] = [measure("streams", value=streams, unit="streams")]
    for key, t in results.items():
        label = names[key]
        measures.append(measure(f"{label}: wall", seconds=t["wall"]))
        measures.append(measure(f"{label}: rows", value=t["rows"], unit="rows"))
        measures.append(measure(f"{label}: rows/s", value=t["rows"] / t["wall"], unit="rows/s"))
        for part, what in (("parse", "ccxt parsing"), ("http", "HTTP wait"), ("thr", "limiter")):
            measures.append(measure(f"{label}: {what}", seconds=t[part]))
        measures.append(measure(f"{label}: warehouse write", seconds=t["wr"]))
    ratios: list[dict[str, Any]] = []
    zero, limits = results.get("zero"), results.get("limits")
    size = f"{streams} streams × {days} d"
    if zero and limits and zero["wall"] > 0 and limits["wall"] > 0:
        fast, slow = zero["rows"] / zero["wall"], limits["rows"] / limits["wall"]
        ratios.append(
            ratio(
                f"collect rows/s ({size}): limiter at 0 ms / ccxt rate limits",
                brain=fast,
                other=slow,
                other_name="same with ccxt's rate limits",
                ratio=fast / slow if slow > 0 else None,
            )
        )
    if zero and zero["wr"] > 0:
        ratios.append(
            ratio(
                f"collect, limiter at 0 ms ({size}): ccxt parsing s / warehouse write s",
                brain=zero["wr"],
                other=zero["parse"],
                other_name="ccxt parsing",
            )
        )
    write_report(path, "collect", measures, ratios)


if __name__ == "__main__":
    raise SystemExit(main())
