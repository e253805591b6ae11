"""Run every benchmark and print one table of the ratios they measured, side by side.

Each benchmark runs as its own process (``sys.executable bench/<script> --json PATH``,
plus ``--quick`` when this script is given ``--quick``), one after the other, so one
benchmark's threads, memory and embedded PostgreSQL never touch another's timings. Their
reports (``bench/_report.py``) go to a temporary folder, their output to a log file per
benchmark in the same folder (``--logs DIR`` keeps them; ``--verbose`` shows it as it
runs). Then one table, a row per ratio:

* benchmark: the report's short name;
* compared: what the ratio is about, and the alternative it is measured against;
* Brain / alternative: the two figures (seconds unless the row says otherwise);
* ratio: as the benchmark defines it (the row's name says which way);
* target and result: ``pass`` or ``miss`` where the benchmark states a target (bulk load
  <= 1.3x the straight binary COPY, retrain flow compute <= 1.3x its bare fits,
  importance <= 10% of the fit time, ...), empty where it states none.

A benchmark that exits non-zero, or writes no readable report, is a ``FAILED (exit N)``
row (with any ratios it still wrote), the tail of its log is printed, the others still
run, and this script exits 1 at the end. A missed target is not a failure.

``--json PATH`` writes the combined table and every benchmark's report as one JSON file.

Run from the repository root (``make bench``, ``make bench-quick``)::

    .venv/bin/python bench/all.py                  # full sizes: tens of minutes on 2 cores
    .venv/bin/python bench/all.py --quick          # smoke sizes: 2-3 minutes
    .venv/bin/python bench/all.py --quick --only copy,dbt --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import read_report  # bench/ is on sys.path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STOP_GRACE_S = 60.0  # after a timeout, how long a benchmark may take to clean up


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    compares: str


BENCHES: tuple[Bench, ...] = (
    Bench("copy", "bench_copy.py", "bulk load vs straight binary COPY and DataFrame.to_sql"),
    Bench("retrain", "bench_retrain.py", "daily-retrain and its importance vs the bare fits"),
    Bench("shap", "bench_shap.py", "native TreeSHAP vs shap.TreeExplainer"),
    Bench("metrics", "bench_metrics.py", "brain_lib.metrics vs empyrical and quantstats"),
    Bench("collect", "bench_collect.py", "collection rows/s from the replay exchange"),
    Bench("quality", "bench_quality.py", "Great Expectations vs plain SQL"),
    Bench("dbt", "bench_dbt.py", "dbt build of all marts on the load data"),
)

HEADER = ("benchmark", "compared", "Brain", "alternative", "ratio", "target", "result")


@dataclass
class Outcome:
    """What one benchmark's process left: exit code, wall time, its report (or why not)."""

    bench: Bench
    exit_code: int
    seconds: float
    report: dict[str, Any] | None
    error: str | None = None
    log: Path | None = None
    tail: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.exit_code != 0 or self.report is None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="pass --quick to every benchmark (smoke sizes)"
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="also write the combined table as JSON"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated benchmarks to run (default all: "
        + ",".join(b.name for b in BENCHES)
        + ")",
    )
    parser.add_argument(
        "--logs", metavar="DIR", default=None, help="keep each benchmark's report and log in DIR"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds one benchmark may run before it is stopped and counted as failed",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show each benchmark's output as it runs"
    )
    args = parser.parse_args(argv)
    known = [b.name for b in BENCHES]
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    args.benches = [b for b in BENCHES if not wanted or b.name in wanted]
    return args


def tail_of(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def wait_or_stop(proc: subprocess.Popen[bytes], timeout: float | None) -> int:
    """The benchmark's exit code; 124 when it ran past ``timeout``. Then it gets SIGINT
    first, so that its ``finally`` blocks stop its embedded PostgreSQL (and Prefect
    server) and remove its temporary folder; SIGKILL only after ``STOP_GRACE_S``."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 124


def run_one(
    bench: Bench, folder: Path, quick: bool, timeout: float | None, verbose: bool
) -> Outcome:
    """Run one benchmark in its own process; read its report."""
    report_path = folder / f"{bench.name}.json"
    log_path = folder / f"{bench.name}.log"
    cmd = [sys.executable, str(HERE / bench.script), "--json", str(report_path)]
    if quick:
        cmd.append("--quick")
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=None if verbose else log,
                stderr=None if verbose else subprocess.STDOUT,
            )
        except OSError as exc:  # the interpreter could not start
            log.write(f"{exc}\n")
            code = 127
        else:
            code = wait_or_stop(proc, timeout)
    seconds = time.perf_counter() - start
    report: dict[str, Any] | None = None
    error: str | None = None
    if code == 124:
        error = f"stopped after {timeout:g} s"
    if report_path.exists():
        try:
            report = read_report(report_path)
        except (OSError, ValueError) as exc:
            error = f"unreadable report: {exc}"
    elif code == 0:
        error = "no report written"
    return Outcome(bench, code, seconds, report, error, log_path, tail_of(log_path))


def fmt_number(x: Any) -> str:
    if x is None:
        return "-"
    value = float(x)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_ratio(x: Any) -> str:
    return "-" if x is None else f"{fmt_number(x)}x"


def result_of(ok: bool | None) -> str:
    if ok is None:
        return ""
    return "pass" if ok else "miss"


def table_rows(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """One row per ratio of every report; a failed benchmark adds a FAILED row."""
    rows: list[dict[str, Any]] = []
    for out in outcomes:
        name = out.report["bench"] if out.report else out.bench.name
        for r in out.report["ratios"] if out.report else []:
            rows.append(
                {
                    "benchmark": name,
                    "compared": f"{r['name']} (vs {r['other_name']})",
                    "brain": r["brain"],
                    "other": r["other"],
                    "ratio": r["ratio"],
                    "target": r["target"],
                    "ok": r["ok"],
                    "result": result_of(r["ok"]),
                }
            )
        if out.failed:
            why = f"; {out.error}" if out.error else ""
            rows.append(
                {
                    "benchmark": name,
                    "compared": f"{out.bench.compares}: {out.bench.script} failed{why}",
                    "brain": None,
                    "other": None,
                    "ratio": None,
                    "target": None,
                    "ok": False,
                    "result": f"FAILED (exit {out.exit_code})",
                }
            )
        elif out.report is not None and not out.report["ratios"]:
            rows.append(
                {
                    "benchmark": name,
                    "compared": f"{out.bench.compares}: no ratio reported",
                    "brain": None,
                    "other": None,
                    "ratio": None,
                    "target": None,
                    "ok": None,
                    "result": "",
                }
            )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    cells = [
        (
            row["benchmark"],
            row["compared"],
            fmt_number(row["brain"]),
            fmt_number(row["other"]),
            fmt_ratio(row["ratio"]),
            row["target"] or "",
            row["result"],
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADER)]
    right = {2, 3, 4}  # the numbers

    def line(values: tuple[str, ...]) -> str:
        parts = [
            v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    out = [line(HEADER), line(tuple("-" * w for w in widths))]
    out += [line(c) for c in cells]
    return "\n".join(out)


def write_combined(
    path: str, quick: bool, outcomes: list[Outcome], rows: list[dict[str, Any]]
) -> None:
    combined = {
        "quick": quick,
        "benchmarks": [
            {
                "bench": out.bench.name,
                "script": out.bench.script,
                "exit_code": out.exit_code,
                "seconds": round(out.seconds, 3),
                "failed": out.failed,
                "error": out.error,
                "report": out.report,
            }
            for out in outcomes
        ],
        "rows": rows,
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(combined, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    keep = args.logs is not None
    folder = Path(args.logs) if keep else Path(tempfile.mkdtemp(prefix="brain-bench-all-"))
    folder.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    try:
        for bench in args.benches:
            mode = " --quick" if args.quick else ""
            print(f"running {bench.script}{mode} ...", file=sys.stderr, flush=True)
            out = run_one(bench, folder, args.quick, args.timeout, args.verbose)
            outcomes.append(out)
            state = "FAILED" if out.failed else "ok"
            extra = f" ({out.error})" if out.error else ""
            print(
                f"  {bench.name}: {state}, exit {out.exit_code}, {out.seconds:.0f} s{extra}",
                file=sys.stderr,
                flush=True,
            )
            if out.failed and out.tail and not args.verbose:
                for text in out.tail:
                    print(f"    | {text}", file=sys.stderr)
        rows = table_rows(outcomes)
        total = time.perf_counter() - started
        print()
        print(render(rows))
        times = ", ".join(f"{o.bench.name} {o.seconds:.0f} s" for o in outcomes)
        print(f"\n{'quick sizes' if args.quick else 'full sizes'}; {total:.0f} s in all ({times})")
        if keep:
            print(f"reports and logs: {folder}")
        if args.json:
            write_combined(args.json, args.quick, outcomes, rows)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    failed = [o.bench.name for o in outcomes if o.failed]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
