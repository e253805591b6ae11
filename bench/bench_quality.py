"""Benchmark: validating 1,000,000 candles in PostgreSQL with the Great Expectations suite.

What is measured (wall-clock, ``time.perf_counter``), on a throwaway embedded PostgreSQL
started in a temporary folder (stopped and removed at the end):

1. ``gx cold``: the first ``brain_lib.quality.validate_table(dsn, "ohlcv")`` of the
   process over all ``--rows`` candles (default 1,000,000: ``--hours`` hourly bars per
   symbol from ``generate_candles``, as many symbols as needed). Includes importing
   Great Expectations, creating the ephemeral context and the data source, and syncing
   the suites: what a fresh worker process pays once.
2. ``gx warm``: the same call again (context reused), ``--repeats`` times: the batch's
   shape query (rows, first and last ts) plus one GX checkpoint run of the 8
   expectations of ``raw.ohlcv``, each one SQL statement in PostgreSQL.
3. ``gx warm + data docs``: the same with ``docs_dir`` (the result is kept as JSON in the
   folder and rendered: validation page, suite page, index).
4. ``plain SQL``: the very same statements without GX: the shape query and, per
   expectation, ``SELECT count(*) FROM (<its unexpected-rows query>)`` on the same
   batch, through one psycopg connection. The floor GX's overhead is measured against.
5. ``gate, one symbol``: ``gate_training_window`` on one symbol's whole window
   (``--hours`` bars): validation of the window without its quarantined rows, results
   recorded, quarantine. What daily-retrain pays per symbol.

Candle generation and loading are not timed. Every measurement waits first
(``--quiet-wait`` seconds at most) for an idle machine; medians are reported.

Reading the output: seconds per measurement, rows/s, and ``gx warm / plain SQL``. The
target is ``gx warm`` under 10 s for 1,000,000 candles on a 2-core machine. The run
checks that the warm validation saw every row and that GX's count of unexpected rows
equals the plain SQL count for every expectation, and exits 1 otherwise.

``--json PATH`` also writes the medians and two ratios (``bench/_report.py``): gx warm
against plain SQL, and gx warm against the 10 s target (checked only with 1,000,000
candles or more). ``--quick`` is 100,000 candles and one repeat.

Run from the repository root::

    .venv/bin/python bench/bench_quality.py                 # 1 M candles
    .venv/bin/python bench/bench_quality.py --rows 200000   # quicker
    .venv/bin/python bench/bench_quality.py --quick
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

from _machine import load_note, wait_for_quiet  # bench/ is on sys.path
from _report import add_report_args, measure, write_report
from _report import ratio as ratio_row

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `expectations` is a top-level package of the repository
    sys.path.insert(0, str(REPO))

from brain_lib import quality  # noqa: E402
from brain_lib.dbt import ensure_raw_schema  # noqa: E402
from brain_lib.market import generate_candles  # noqa: E402
from brain_lib.warehouse import EmbeddedWarehouse, connect, copy_ohlcv  # noqa: E402

EXCHANGE = "bench"
TIMEFRAME = "1h"
TARGET_SECONDS = 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="candles to validate")
    parser.add_argument("--hours", type=int, default=8760, help="hourly bars per symbol")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement")
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
        args.rows, args.repeats = 100_000, 1
        args.quiet_wait = min(args.quiet_wait, 10.0)
    for name in ("rows", "hours", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def load(dsn: str, rows: int, hours: int, seed: int) -> list[str]:
    """``rows`` candles: ``hours`` bars for each of ceil(rows / hours) symbols."""
    symbols: list[str] = []
    with connect(dsn) as conn:
        for i in range(math.ceil(rows / hours)):
            symbol = f"S{i:04d}/USDT"
            periods = min(hours, rows - i * hours)
            frame = generate_candles(symbol, periods, seed=seed, timeframe=TIMEFRAME)
            copy_ohlcv(
                conn,
                frame.drop(columns=["regime"]),
                exchange=EXCHANGE,
                symbol=symbol,
                timeframe=TIMEFRAME,
            )
            symbols.append(symbol)
    with connect(dsn, autocommit=True) as conn:
        conn.execute("vacuum analyze raw.ohlcv")
        conn.execute("checkpoint")
    return symbols


def plain_sql(
    dsn: str, report: quality.QualityReport
) -> tuple[float, dict[str, int], dict[str, float]]:
    """Seconds for the report's statements without GX, each expectation's count, and
    the seconds of each statement."""
    from psycopg import sql

    counts: dict[str, int] = {}
    each: dict[str, float] = {}
    with connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        shape = sql.SQL("SELECT count(*), min(ts), max(ts) FROM ({b}) AS batch").format(
            b=sql.SQL(report.batch_sql)
        )
        conn.execute(shape).fetchone()
        each["(batch shape)"] = time.perf_counter() - start
        for result in report.results:
            assert result.query is not None
            failing = quality._substitute_batch(result.query, report.batch_sql)
            statement = sql.SQL("SELECT count(*) FROM ({q}) AS failing").format(q=sql.SQL(failing))
            began = time.perf_counter()
            row = conn.execute(statement).fetchone()
            each[result.expectation] = time.perf_counter() - began
            counts[result.expectation] = int(row[0]) if row else -1
        return time.perf_counter() - start, counts, each


def fmt(label: str, times: list[float], rows: int) -> str:
    med = statistics.median(times)
    each = ", ".join(f"{t:.2f}" for t in times)
    return f"{label:<28} {med:8.2f} s  {rows / med:>12,.0f} rows/s   (runs: {each})"


def run(args: argparse.Namespace) -> int:
    print(f"before start: {load_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="brain-bench-quality-"))
    warehouse = EmbeddedWarehouse(tmp)
    failures: list[str] = []
    try:
        dsn = warehouse.start()
        ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=tmp / "dbt")
        t0 = time.perf_counter()
        symbols = load(dsn, args.rows, args.hours, args.seed)
        print(
            f"loaded {args.rows:,} candles ({len(symbols)} symbols) in "
            f"{time.perf_counter() - t0:.1f} s (not timed); embedded PostgreSQL in {tmp}"
        )

        wait_for_quiet(args.quiet_wait)
        start = time.perf_counter()
        report = quality.validate_table(dsn, "ohlcv", run_id="bench-cold")
        cold = time.perf_counter() - start
        print(f"  gx cold: {cold:.2f} s  ({report.describe()})")

        # the three measurements take turns, so that drift in the machine's load or
        # PostgreSQL's caches affects them alike
        warm: list[float] = []
        docs: list[float] = []
        plain: list[float] = []
        counts: dict[str, int] = {}
        each: dict[str, float] = {}
        for i in range(args.repeats):
            wait_for_quiet(args.quiet_wait)
            start = time.perf_counter()
            report = quality.validate_table(dsn, "ohlcv", run_id=f"bench-warm-{i}")
            warm.append(time.perf_counter() - start)
            if report.row_count != args.rows:
                failures.append(f"the validation saw {report.row_count:,} rows, not {args.rows:,}")

            wait_for_quiet(args.quiet_wait)
            start = time.perf_counter()
            quality.validate_table(dsn, "ohlcv", run_id=f"bench-docs-{i}", docs_dir=tmp / "docs")
            docs.append(time.perf_counter() - start)

            wait_for_quiet(args.quiet_wait)
            seconds, counts, each = plain_sql(dsn, report)
            plain.append(seconds)
            print(
                f"  repeat {i + 1}: gx warm {warm[-1]:.2f} s, gx warm + data docs "
                f"{docs[-1]:.2f} s, plain SQL {plain[-1]:.2f} s"
            )
        gx_counts = {r.expectation: r.unexpected_count for r in report.results}
        if gx_counts != counts:
            failures.append(f"GX counts {gx_counts} differ from plain SQL counts {counts}")

        gate: list[float] = []
        for i in range(args.repeats):
            wait_for_quiet(args.quiet_wait)
            start = time.perf_counter()
            decision = quality.gate_training_window(
                dsn, EXCHANGE, symbols[0], TIMEFRAME, None, None, run_id=f"bench-gate-{i}"
            )
            gate.append(time.perf_counter() - start)
            print(f"  gate {i + 1}: {gate[-1]:.2f} s (ok={decision.ok})")

        n = args.rows
        ratio = statistics.median(warm) / statistics.median(plain)
        print()
        print(f"validation of {n:,} candles, median of {args.repeats}")
        print(f"{'gx cold (first in process)':<28} {cold:8.2f} s")
        print(fmt("gx warm", warm, n))
        print(fmt("gx warm + data docs", docs, n))
        print(fmt("plain SQL, same statements", plain, n))
        bars = min(args.hours, n)
        print(fmt(f"gate, one symbol ({bars:,} bars)", gate, bars))
        verdict = "met" if statistics.median(warm) < TARGET_SECONDS else "MISSED"
        print(f"gx warm / plain SQL: {ratio:.2f}x")
        print(f"target gx warm < {TARGET_SECONDS:.0f} s: {verdict}")
        print(f"unexpected rows per expectation (GX = plain SQL): {gx_counts}")
        print(
            "plain SQL per statement (last repeat): "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in each.items())
        )
        print(f"after: {load_note()}")
        if args.json:
            t_warm, t_plain = statistics.median(warm), statistics.median(plain)
            write_report(
                args.json,
                "quality",
                [
                    measure("rows", value=n, unit="rows"),
                    measure("gx cold", seconds=cold),
                    measure("gx warm", seconds=t_warm),
                    measure("gx warm + data docs", seconds=statistics.median(docs)),
                    measure("plain SQL", seconds=t_plain),
                    measure(f"gate, one symbol ({bars:,} bars)", seconds=statistics.median(gate)),
                ],
                [
                    ratio_row(
                        f"GX suite on {n:,} candles: gx warm / plain SQL",
                        brain=t_warm,
                        other=t_plain,
                        other_name="plain SQL, same statements",
                        ratio=t_warm / t_plain,
                    ),
                    ratio_row(
                        f"GX suite on {n:,} candles: gx warm s / {TARGET_SECONDS:.0f} s"
                        + ("" if n >= 1_000_000 else " (the target is for 1 M candles)"),
                        brain=t_warm,
                        other=TARGET_SECONDS,
                        other_name="the target's seconds",
                        ratio=t_warm / TARGET_SECONDS,
                        target="< 1" if n >= 1_000_000 else None,
                    ),
                ],
            )
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
