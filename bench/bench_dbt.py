"""Benchmark: one ``dbt build`` of every model and test on load-sized data.

Set-up: a throwaway embedded PostgreSQL in a temporary folder (stopped and removed at the
end), the raw schema from dbt (``ensure_raw_schema``).

Measured (wall-clock, ``time.perf_counter``), in this order:

1. ``dbt build, empty``: ``brain_lib.dbt.run_dbt(["build"])`` on the empty raw tables:
   dbt's fixed cost (start-up, parsing, the ``on-run-start`` DDL, every model and test,
   no rows).
2. ``load``: ``--symbols`` symbols (default 100) × ``--years`` years (default 2) of hourly
   candles from ``generate_candles`` (generation not timed) landed with
   ``brain_lib.warehouse.copy_ohlcv``, one call per symbol, one transaction, then
   ``vacuum analyze`` (not timed), as ``bench_copy.py`` loads them. The candles end an
   hour before now; the other raw tables stay empty (funding, open interest, models).
3. ``dbt build, loaded``: the same ``dbt build`` with the candles in ``raw.ohlcv``: every
   staging view and mart (``marts.fct_features_hourly`` reads every candle) and every
   data test. Then the slowest nodes from dbt's ``run_results.json``.

``--repeats`` repeats the loaded build (the marts are tables, rebuilt each time) and keeps
the median. Before each measurement the benchmark waits (``--quiet-wait`` seconds at most)
for an idle machine.

Reading the output: seconds of each step, rows/s of the load, and two ratios: the loaded
build over the empty one (what the data costs on top of dbt's fixed cost) and the loaded
build over the load (how the nightly build compares with landing the same candles).
``--json PATH`` writes them (``bench/_report.py``); ``--quick`` is 10 symbols × 0.25 years.
Exits 1 when a build fails or ``marts.fct_features_hourly`` does not hold one row per
candle.

Run from the repository root::

    .venv/bin/python bench/bench_dbt.py                          # 100 symbols × 2 years
    .venv/bin/python bench/bench_dbt.py --symbols 20 --years 1
    .venv/bin/python bench/bench_dbt.py --quick
"""

from __future__ import annotations

import argparse
import json
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

from brain_lib.dbt import ensure_raw_schema, run_dbt
from brain_lib.market import generate_candles
from brain_lib.warehouse import EmbeddedWarehouse, connect, copy_ohlcv

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "dbt_brain"
EXCHANGE = "bench"
TIMEFRAME = "1h"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=100, help="symbols of hourly candles")
    parser.add_argument("--years", type=float, default=2.0, help="years of candles per symbol")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the loaded build")
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
        args.symbols, args.years, args.repeats = 10, 0.25, 1
        args.quiet_wait = min(args.quiet_wait, 10.0)
    if args.symbols < 1 or args.years <= 0 or args.repeats < 1:
        parser.error("--symbols and --repeats must be >= 1, --years > 0")
    return args


def make_candles(symbols: int, years: float, seed: int) -> dict[str, pd.DataFrame]:
    """``symbols`` × ``years`` of hourly candles, ending an hour before now."""
    hours = max(2, round(years * 365 * 24))
    end = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=1)
    start = end - pd.Timedelta(hours=hours)
    out: dict[str, pd.DataFrame] = {}
    for i in range(symbols):
        symbol = f"S{i:04d}/USDT"
        frame = generate_candles(symbol, hours, seed=seed + i, start=start, timeframe=TIMEFRAME)
        out[symbol] = frame.drop(columns=["regime"])
    return out


def load(dsn: str, candles: dict[str, pd.DataFrame]) -> tuple[float, int]:
    """Seconds for landing every symbol with ``copy_ohlcv`` in one transaction; rows added."""
    added = 0
    start = time.perf_counter()
    with connect(dsn) as conn:
        for symbol, frame in candles.items():
            report = copy_ohlcv(conn, frame, exchange=EXCHANGE, symbol=symbol, timeframe=TIMEFRAME)
            added += report.added
    seconds = time.perf_counter() - start
    with connect(dsn, autocommit=True) as conn:
        conn.execute("vacuum analyze raw.ohlcv")
        conn.execute("checkpoint")
    return seconds, added


def build(dsn: str, state: Path) -> float:
    start = time.perf_counter()
    run_dbt(["build"], dsn=dsn, project_dir=PROJECT, state_dir=state)
    return time.perf_counter() - start


def slowest_nodes(state: Path, keep: int = 6) -> list[tuple[str, float]]:
    """The slowest nodes of the last dbt invocation (``run_results.json``)."""
    try:
        results = json.loads((state / "target" / "run_results.json").read_text())["results"]
    except (OSError, ValueError, KeyError):
        return []
    nodes = [(str(r["unique_id"]), float(r.get("execution_time") or 0.0)) for r in results]
    return sorted(nodes, key=lambda node: -node[1])[:keep]


def count(dsn: str, table: str) -> int:
    with connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()
    return int(row[0]) if row else 0


def run(args: argparse.Namespace) -> int:
    print(f"before start: {load_note()}")
    t0 = time.perf_counter()
    candles = make_candles(args.symbols, args.years, args.seed)
    n_rows = sum(len(f) for f in candles.values())
    print(
        f"generated {n_rows:,} candles ({args.symbols} symbols × {args.years:g} years, hourly) "
        f"in {time.perf_counter() - t0:.1f} s (not timed)"
    )
    tmp = Path(tempfile.mkdtemp(prefix="brain-bench-dbt-"))
    warehouse = EmbeddedWarehouse(tmp)
    state = tmp / "dbt"
    failures: list[str] = []
    try:
        dsn = warehouse.start()
        ensure_raw_schema(dsn, project_dir=PROJECT, state_dir=state)
        print(f"embedded PostgreSQL in {tmp}")

        wait_for_quiet(args.quiet_wait)
        t_empty = build(dsn, state)
        print(f"  dbt build, empty raw tables: {t_empty:.2f} s")

        wait_for_quiet(args.quiet_wait)
        t_load, added = load(dsn, candles)
        print(f"  load (copy_ohlcv): {t_load:.2f} s, {added:,} rows ({added / t_load:,.0f} rows/s)")
        if added != n_rows:
            failures.append(f"the load added {added:,} rows, not {n_rows:,}")

        loaded: list[float] = []
        for i in range(args.repeats):
            wait_for_quiet(args.quiet_wait)
            loaded.append(build(dsn, state))
            print(f"  dbt build, loaded, repeat {i + 1}: {loaded[-1]:.2f} s")
        nodes = slowest_nodes(state)
        features = count(dsn, "marts.fct_features_hourly")
        if features != n_rows:
            failures.append(f"marts.fct_features_hourly holds {features:,} rows, not {n_rows:,}")

        t_loaded = statistics.median(loaded)
        size = f"{args.symbols} symbols × {args.years:g} y ({n_rows:,} candles)"
        print()
        print(f"dbt build of every model and test, {size}")
        print(f"{'dbt build, empty raw tables':<36} {t_empty:8.2f} s")
        print(f"{'load with copy_ohlcv':<36} {t_load:8.2f} s  {n_rows / t_load:>12,.0f} rows/s")
        rate = n_rows / t_loaded
        print(f"{'dbt build, loaded (median)':<36} {t_loaded:8.2f} s  {rate:>12,.0f} rows/s")
        print(f"loaded build / empty build: {t_loaded / t_empty:.2f}x")
        print(f"loaded build / load:        {t_loaded / t_load:.2f}x")
        print(f"marts.fct_features_hourly: {features:,} rows")
        if nodes:
            print(
                "slowest nodes of the last build: " + ", ".join(f"{n} {s:.2f} s" for n, s in nodes)
            )
        print(f"after: {load_note()}")

        if args.json:
            measures: list[dict[str, Any]] = [
                measure("candles", value=n_rows, unit="rows"),
                measure("dbt build, empty raw tables", seconds=t_empty),
                measure("load (copy_ohlcv)", seconds=t_load),
                measure("dbt build, loaded", seconds=t_loaded),
                *(measure(f"node {name}", seconds=sec) for name, sec in nodes),
            ]
            ratios = [
                ratio(
                    f"dbt build, {size}: loaded / empty raw tables",
                    brain=t_loaded,
                    other=t_empty,
                    other_name="dbt build on empty raw tables",
                    ratio=t_loaded / t_empty,
                ),
                ratio(
                    f"dbt build, {size}: build / load of the candles",
                    brain=t_loaded,
                    other=t_load,
                    other_name="copy_ohlcv of the same candles",
                    ratio=t_loaded / t_load,
                ),
            ]
            write_report(args.json, "dbt", measures, ratios)
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
