"""Load run: a desk's universe through the real flows, with time, memory and warehouse size.

``--symbols N --years Y`` (default 10 x 1): a throwaway embedded PostgreSQL (raw schema
from dbt), Prefect's temporary server, and the replay exchange in its own process
(``python -m brain_lib.market.replay``) listing N synthetic USDT perpetuals ``S000`` ...
``S<N-1>`` with Y years of candles, funding prints every 8 hours and open interest. The
market is the demo's (seed 5, planted trend 0.2 bar vols, half-life 48 bars), so that
the models find something and versions are promoted (nightly-feature-analysis analyses
champions only). The clock is fixed (``--end``, default 2026-01-01, plus 30 minutes):
the same run gives the same rows every time.

Then the real flows, each through ``flows.runner.run_flow``, one after the other:

1. ``collect-market-data``: every symbol's OHLCV, funding and open interest from the
   replay (``--exchange``, default binance, the desk's exchange; binance keeps 30 days
   of open interest, so only those land, as from the real one; ``--exchange bybit``
   serves the whole window), through ccxt with the exchange's own rate limiter, then
   validation and ``dbt build +fct_features_hourly``.
2. ``daily-retrain``: LightGBM, feature importance on, ``build_marts=True`` (dbt build
   of the marts), a lookback of the whole window (Y years + 1 day).
3. ``nightly-feature-analysis`` (``--skip-analysis`` leaves it out): every champion.

Per flow it prints: wall time and ms per symbol; CPU-seconds of this process and of
the rest of the machine; peak memory of the process tree (this process and every
descendant, plus the PostgreSQL server, which its launcher leaves as a daemon: RSS
summed, which counts PostgreSQL's shared buffers once per backend that touched them,
and PSS, which shares them out), sampled from /proc every ``--sample-s`` (0.25 s) in a
thread, with each part's own peak (this process, PostgreSQL, Prefect's server, dbt,
the replay exchange) and ``ru_maxrss`` of this process and of its waited-for children;
the warehouse size (``pg_database_size``) and the row count of every table in the raw
and marts schemas; and the run times Prefect recorded per task (summed, and the wall
time during which that task ran at all). The replay exchange is test equipment: it is
reported as its own part and left out of the "product" peak.

Exit status 1 when a flow did not end Completed or the rows are not what was asked:
N x bars candles, N x prints funding rows, N x samples of open interest (the exchange's
retention applied), one model version per symbol, an analysis per champion. Exit 2,
before anything starts, for a size that cannot work or that the machine cannot hold:
one line naming the option and the limit.

``--matrix`` runs the grid ``--symbols-list`` x ``--years-list`` (default {10, 30, 100}
x {0.5, 1, 2}), each point as its own ``load.py`` process, and fits per flow a log-log
least-squares slope: time ~ symbols^a (rows per symbol fixed) and time ~
rows-per-symbol^b (symbols fixed), jointly over every point.

Run from the repository root::

    .venv/bin/python bench/load.py --symbols 3 --years 0.25            # about 2 min
    .venv/bin/python bench/load.py --symbols 10 --years 1 --json out.json
    .venv/bin/python bench/load.py --matrix --symbols-list 3,6 --years-list 0.25,0.5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _machine import busy_cpu_seconds, load_note, wait_for_quiet  # bench/ is on sys.path

REPO = Path(__file__).resolve().parent.parent
HOUR_S = 3600
DAY_S = 86_400
FUNDING_INTERVAL_S = 8 * HOUR_S
YEAR_DAYS = 365

# the market of `brain demo` (brain_lib/cli/train.py): a planted trend the models find
SEED = 5
TREND = 0.2
TREND_HALF_LIFE = 48  # the replay's default; `python -m brain_lib.market.replay` has no flag

# what the run accepts, before anything starts
MAX_SYMBOLS = 500
MAX_YEARS = 10.0
MAX_CANDLES = 20_000_000  # all symbols together
EARLIEST = datetime(2009, 1, 3, tzinfo=UTC)  # the raw.ohlcv suite refuses older candles
MIN_FOLD_BARS = 48  # brain_lib.config.MIN_FOLD_BARS: daily-retrain's shortest test fold
FEATURE_WARMUP_BARS = 168  # brain_lib.features.feature_warmup_bars()
LABEL_HORIZON = 8
FOLDS = 5 + 1 + 1  # scored folds + calibration fold + the first training block
RETENTION_DAYS = {("binance", "oi"): 30, ("okx", "funding"): 90}  # market/exchanges.py
PAGE_CAPS = {"binance": (1500, 1000, 500), "bybit": (1000, 200, 200)}  # ohlcv, funding, oi

# sizes per row, measured by this script (docs/benchmarks.md), with room to spare
DISK_BYTES_PER_CANDLE = 1_400  # warehouse + artifacts + dbt + Prefect, per candle stored
DISK_FIXED_BYTES = 600 * 2**20
RAM_FIXED_BYTES = 1_700 * 2**20  # Python + Prefect server + PostgreSQL at rest
RAM_BYTES_PER_CANDLE = 1_500  # daily-retrain trains every symbol at once (one thread each)
SAFETY = 0.8  # use at most this share of the free disk or the available memory

MATRIX_SYMBOLS = (10, 30, 100)
MATRIX_YEARS = (0.5, 1.0, 2.0)
FLOWS = ("collect-market-data", "daily-retrain", "nightly-feature-analysis")


class Refused(Exception):
    """A size the run will not start with (exit status 2)."""


# ------------------------------------------------------------------ options and sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--symbols", type=int, default=10, help="how many perpetuals")
    parser.add_argument("--years", type=float, default=1.0, help="years of history (365 d)")
    parser.add_argument("--timeframe", default="1h", help="candle timeframe (ccxt style)")
    parser.add_argument(
        "--exchange",
        choices=("binance", "bybit"),
        default="binance",
        help="the replay exchange's dialect (binance keeps 30 days of open interest)",
    )
    parser.add_argument(
        "--end", default="2026-01-01", help="last day of the data (a UTC date, not in the future)"
    )
    parser.add_argument("--skip-retrain", action="store_true", help="collect only")
    parser.add_argument(
        "--skip-analysis", action="store_true", help="leave out nightly-feature-analysis"
    )
    parser.add_argument(
        "--no-promote",
        action="store_true",
        help="do not promote by hand the versions daily-retrain did not promote",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--sample-s", type=float, default=0.25, help="memory sampling interval (s)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds to wait at most for an idle machine before each flow (0: never)",
    )
    parser.add_argument("--verbose", action="store_true", help="show Prefect's console log lines")
    parser.add_argument("--matrix", action="store_true", help="run the grid and fit slopes")
    parser.add_argument(
        "--symbols-list",
        default=",".join(map(str, MATRIX_SYMBOLS)),
        help="the grid's symbol counts (with --matrix)",
    )
    parser.add_argument(
        "--years-list",
        default=",".join(map(str, MATRIX_YEARS)),
        help="the grid's years (with --matrix)",
    )
    return parser.parse_args(argv)


def timeframe_seconds(timeframe: str) -> int:
    unit, amount = timeframe[-1:], timeframe[:-1]
    scale = {"m": 60, "h": HOUR_S, "d": DAY_S}
    if unit not in scale or not amount.isdigit() or int(amount) < 1:
        raise Refused(f"--timeframe {timeframe!r}: must be minutes, hours or days (5m, 1h, 4h, 1d)")
    step = int(amount) * scale[unit]
    if step > DAY_S or DAY_S % step:
        raise Refused(f"--timeframe {timeframe!r}: must divide a day (at most 1d)")
    return step


@dataclass(frozen=True)
class Plan:
    """What one run loads and trains, and what it must find in the warehouse."""

    symbols: int
    years: float
    timeframe: str
    exchange: str
    days: int
    step_s: int
    since: datetime
    end: datetime  # midnight UTC after the last candle; the replay's clock is 30 min on

    @property
    def names(self) -> list[str]:
        return [f"{base}/USDT:USDT" for base in self.bases]

    @property
    def bases(self) -> list[str]:
        width = max(3, len(str(self.symbols - 1)))
        return [f"S{i:0{width}d}" for i in range(self.symbols)]

    @property
    def now(self) -> datetime:
        return self.end + timedelta(minutes=30)

    @property
    def bars(self) -> int:
        """Closed candles per symbol: [since, end)."""
        return self.days * DAY_S // self.step_s

    def kept_days(self, dataset: str) -> int:
        keep = RETENTION_DAYS.get((self.exchange, dataset))
        return self.days if keep is None else min(self.days, keep)

    @property
    def funding_prints(self) -> int:
        """Prints stamped in [since, now]: every 8 hours from since, the one at end too."""
        days = self.kept_days("funding")
        return days * DAY_S // FUNDING_INTERVAL_S + 1

    @property
    def oi_samples(self) -> int:
        """Hourly samples stamped in [since, now]; with a retention, (now - keep, now]."""
        days = self.kept_days("oi")
        return days * 24 + (1 if days == self.days else 0)

    @property
    def candles(self) -> int:
        return self.symbols * self.bars

    @property
    def lookback_days(self) -> int:
        return self.days + 1

    @property
    def requests(self) -> int:
        """HTTP requests of the collection, about (full pages)."""
        ohlcv, funding, oi = PAGE_CAPS[self.exchange]
        per = (
            -(-self.bars // ohlcv) + -(-self.funding_prints // funding) + -(-self.oi_samples // oi)
        )
        return self.symbols * (per + 3)

    def disk_bytes(self) -> int:
        return DISK_FIXED_BYTES + self.candles * DISK_BYTES_PER_CANDLE

    def ram_bytes(self) -> int:
        return RAM_FIXED_BYTES + self.candles * RAM_BYTES_PER_CANDLE


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def make_plan(
    symbols: int, years: float, timeframe: str, exchange: str, end_text: str, tmp: Path
) -> Plan:
    """The run's plan, or :class:`Refused` with one line naming the option and its limit."""
    if not 1 <= symbols <= MAX_SYMBOLS:
        raise Refused(f"--symbols {symbols}: must be between 1 and {MAX_SYMBOLS}")
    if not (math.isfinite(years) and 0 < years <= MAX_YEARS):
        raise Refused(f"--years {years:g}: must be above 0 and at most {MAX_YEARS:g}")
    step = timeframe_seconds(timeframe)
    try:
        end_day = datetime.fromisoformat(end_text).date()
    except ValueError:
        raise Refused(f"--end {end_text!r}: not a date (YYYY-MM-DD)") from None
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=UTC)
    if end > datetime.now(UTC) - timedelta(hours=1):
        raise Refused(f"--end {end_text}: must be in the past (the quality suites refuse later)")
    days = round(years * YEAR_DAYS)
    since = end - timedelta(days=days)
    if since < EARLIEST:
        raise Refused(
            f"--years {years:g}: the data would start {since:%Y-%m-%d}, before "
            f"{EARLIEST:%Y-%m-%d} (the raw.ohlcv suite refuses older candles); "
            f"at most {(end - EARLIEST).days / YEAR_DAYS:.1f} years before --end"
        )
    plan = Plan(symbols, years, timeframe, exchange, days, step, since, end)
    fold = (plan.bars - FEATURE_WARMUP_BARS - LABEL_HORIZON) // FOLDS
    if fold < MIN_FOLD_BARS:
        need = (MIN_FOLD_BARS * FOLDS + FEATURE_WARMUP_BARS + LABEL_HORIZON) * step / DAY_S
        raise Refused(
            f"--years {years:g}: {plan.bars} {timeframe} bars give daily-retrain test folds "
            f"of {fold} bars (at least {MIN_FOLD_BARS}); at least {math.ceil(need)} days "
            f"({need / YEAR_DAYS:.3f} years)"
        )
    if plan.candles > MAX_CANDLES:
        raise Refused(
            f"--symbols {symbols} x --years {years:g} of {timeframe}: {plan.candles:,} candles, "
            f"more than {MAX_CANDLES:,}"
        )
    free = shutil.disk_usage(tmp).free
    if plan.disk_bytes() > SAFETY * free:
        raise Refused(
            f"--symbols {symbols} x --years {years:g}: needs about {gib(plan.disk_bytes())} "
            f"of disk, more than {SAFETY:.0%} of the {gib(free)} free in {tmp}"
        )
    ram = mem_available()
    if ram is not None and plan.ram_bytes() > SAFETY * ram:
        raise Refused(
            f"--symbols {symbols} x --years {years:g}: needs about {gib(plan.ram_bytes())} "
            f"of memory, more than {SAFETY:.0%} of the {gib(ram)} available"
        )
    return plan


# ------------------------------------------------------------------ memory sampling


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _part(cmdline: str, comm: str) -> str:
    if "brain_lib.market.replay" in cmdline:
        return "replay"
    if comm.startswith("postgres") or "/postgres" in cmdline.split(" ", 1)[0]:
        return "postgres"
    if "uvicorn" in cmdline or "prefect" in cmdline:
        return "prefect server"
    if "dbt" in cmdline:
        return "dbt"
    return "other"


@dataclass
class Peaks:
    """Peaks of one phase: bytes, and CPU-seconds per part."""

    rss: int = 0
    pss: int = 0
    product_rss: int = 0  # without the replay exchange (test equipment)
    product_pss: int = 0
    parts_rss: dict[str, int] = field(default_factory=dict)
    parts_pss: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    processes: int = 0
    samples: int = 0


class TreeSampler:
    """Samples RSS and PSS of this process's tree (plus extra roots) from /proc."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.roots: set[int] = {os.getpid()}
        self.phase = "setup"
        self.phases: dict[str, Peaks] = {}
        # CPU-seconds per process: the last value seen, and where the phase started
        self._cpu_last: dict[int, tuple[str, float]] = {}
        self._cpu_base: dict[int, float] = {}
        self._phase_pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-mem-sampler", daemon=True)
        self._parts: dict[int, str] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def set_phase(self, name: str) -> None:
        self.sample()
        with self._lock:
            self.phase = name
            # a process seen before the phase has spent CPU before it; one started
            # during the phase counts from 0
            self._cpu_base = {pid: cpu for pid, (_, cpu) in self._cpu_last.items()}
            self._phase_pids = set()
        self.sample()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = defaultdict(list)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = _read(f"/proc/{entry}/stat")
            if stat is None:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            children[int(fields[1])].append(int(entry))
        out: list[int] = []
        todo = [r for r in self.roots if os.path.exists(f"/proc/{r}")]
        seen: set[int] = set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def _classify(self, pid: int) -> str:
        part = self._parts.get(pid)
        if part is None:
            if pid == os.getpid():
                part = "flows process"
            else:
                raw = _read(f"/proc/{pid}/cmdline") or ""
                comm = (_read(f"/proc/{pid}/comm") or "").strip()
                part = _part(raw.replace("\0", " "), comm)
            self._parts[pid] = part
        return part

    def sample(self) -> None:
        rss_parts: dict[str, int] = defaultdict(int)
        pss_parts: dict[str, int] = defaultdict(int)
        cpu_now: dict[int, tuple[str, float]] = {}
        pids = self._tree()
        for pid in pids:
            part = self._classify(pid)
            statm = _read(f"/proc/{pid}/statm")
            stat = _read(f"/proc/{pid}/stat")
            if statm is None or stat is None:
                continue
            rss_parts[part] += int(statm.split()[1]) * PAGE
            rollup = _read(f"/proc/{pid}/smaps_rollup") or ""
            for line in rollup.splitlines():
                if line.startswith("Pss:"):
                    pss_parts[part] += int(line.split()[1]) * 1024
                    break
            fields = stat.rsplit(")", 1)[-1].split()
            cpu_now[pid] = (part, (int(fields[11]) + int(fields[12])) / TICK)
        with self._lock:
            peaks = self.phases.setdefault(self.phase, Peaks())
            peaks.samples += 1
            peaks.processes = max(peaks.processes, len(pids))
            rss, pss = sum(rss_parts.values()), sum(pss_parts.values())
            peaks.rss = max(peaks.rss, rss)
            peaks.pss = max(peaks.pss, pss)
            peaks.product_rss = max(peaks.product_rss, rss - rss_parts.get("replay", 0))
            peaks.product_pss = max(peaks.product_pss, pss - pss_parts.get("replay", 0))
            for part, value in rss_parts.items():
                peaks.parts_rss[part] = max(peaks.parts_rss.get(part, 0), value)
            for part, value in pss_parts.items():
                peaks.parts_pss[part] = max(peaks.parts_pss.get(part, 0), value)
            for pid, seen in cpu_now.items():
                self._cpu_last[pid] = seen
                self._phase_pids.add(pid)
            cpu_parts: dict[str, float] = defaultdict(float)
            for pid in self._phase_pids:
                part, cpu = self._cpu_last[pid]
                cpu_parts[part] += cpu - self._cpu_base.get(pid, 0.0)
            peaks.cpu = dict(cpu_parts)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # a sampler must never take the run down
                print(f"memory sampler: {type(exc).__name__}: {exc}", file=sys.stderr)

    def peaks(self, phase: str) -> Peaks:
        with self._lock:
            return self.phases.get(phase, Peaks())


def maxrss() -> dict[str, int]:
    """``ru_maxrss`` (bytes) of this process and of its largest waited-for child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"self": own, "children": kids}


# ------------------------------------------------------------------ warehouse figures


def warehouse_figures(dsn: str) -> dict[str, Any]:
    """Database size and the exact row count of every table in raw and marts."""
    from brain_lib.warehouse import connect

    with connect(dsn) as conn:
        size = conn.execute("select pg_database_size(current_database())").fetchone()
        tables = conn.execute(
            """
            select n.nspname, c.relname
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p', 'm') and (n.nspname = 'raw' or n.nspname like '%marts')
            order by 1, 2
            """
        ).fetchall()
        counts: dict[str, int] = {}
        for schema, name in tables:
            row = conn.execute(f'select count(*) from "{schema}"."{name}"').fetchone()
            counts[f"{schema}.{name}"] = int(row[0]) if row else 0
    return {"bytes": int(size[0]) if size else 0, "rows": counts}


# ------------------------------------------------------------------ Prefect


def prefect_env(dsn: str, home: Path, verbose: bool) -> None:
    """Point Brain and Prefect at the temporary folder; must run before Prefect's import."""
    if "prefect" in sys.modules:
        raise RuntimeError("Prefect was imported before its environment was set")
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        os.environ.pop(name, None)
    os.environ["BRAIN_DATABASE_URL"] = dsn
    os.environ["BRAIN_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if not verbose:  # the console only; the API log handler records everything as usual
        for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
            os.environ[f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL"] = "WARNING"


def task_run_times(flow_run_id: Any) -> dict[str, dict[str, float]]:
    """Per task (by its function): count, summed run seconds, the longest, and the wall
    seconds during which at least one of them ran, as Prefect's server recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> list[Any]:
        out: list[Any] = []
        async with get_client() as client:
            while True:  # the API answers at most 200 per call
                page = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    limit=200,
                    offset=len(out),
                )
                out.extend(page)
                if len(page) < 200:
                    return out

    runs = run_coro_as_sync(read()) or []
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        if run.start_time is None or run.end_time is None:
            continue
        name = run.task_key.rsplit("-", 1)[0] if "-" in run.task_key else run.name
        spans[name].append((run.start_time.timestamp(), run.end_time.timestamp()))
    out: dict[str, dict[str, float]] = {}
    for name, items in spans.items():
        items.sort()
        covered, cur_lo, cur_hi = 0.0, items[0][0], items[0][1]
        for lo, hi in items[1:]:
            if lo > cur_hi:
                covered += cur_hi - cur_lo
                cur_lo, cur_hi = lo, hi
            else:
                cur_hi = max(cur_hi, hi)
        covered += cur_hi - cur_lo
        durations = [hi - lo for lo, hi in items]
        out[name] = {
            "count": len(items),
            "sum_s": sum(durations),
            "max_s": max(durations),
            "wall_s": covered,
            "first_start_s": items[0][0],
        }
    return out


# ------------------------------------------------------------------ one run


@dataclass
class FlowResult:
    name: str
    state: str = "not run"
    message: str = ""
    wall_s: float = 0.0
    own_cpu_s: float = 0.0
    machine_cpu_s: float | None = None
    peaks: dict[str, Any] = field(default_factory=dict)
    maxrss: dict[str, int] = field(default_factory=dict)
    warehouse_bytes: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    promoted: dict[str, int] = field(default_factory=dict)
    busy_before: float | None = None
    load_before: str = ""


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def start_replay(plan: Plan, root: Path) -> tuple[subprocess.Popen[str], str]:
    """The replay exchange in its own process (its work off this process's GIL)."""
    log = open(root / "replay.log", "w")  # noqa: SIM115 (the replay's, for its life)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brain_lib.market.replay",
            "--port",
            "0",
            "--seed",
            str(SEED),
            "--trend",
            str(TREND),
            "--data-start",
            plan.since.isoformat(),
            "--now",
            plan.now.isoformat(),
            "--bases",
            ",".join(plan.bases),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the replay exchange did not start (said {url!r}; see {root}/replay.log)")
    return proc, url


def run_one(args: argparse.Namespace, plan: Plan) -> int:
    from brain_lib.dbt import ensure_raw_schema
    from brain_lib.warehouse import EmbeddedWarehouse

    print(
        f"load run: {plan.symbols} {plan.exchange} perpetuals x {plan.days} days of "
        f"{plan.timeframe} ({plan.since:%Y-%m-%d} .. {plan.end:%Y-%m-%d}): "
        f"{plan.candles:,} candles, {plan.symbols * plan.funding_prints:,} funding prints, "
        f"{plan.symbols * plan.oi_samples:,} open-interest samples, about "
        f"{plan.requests:,} requests; estimated peak {gib(plan.ram_bytes())} of memory, "
        f"{gib(plan.disk_bytes())} of disk"
    )
    print(f"before start: {load_note()}")
    root = Path(tempfile.mkdtemp(prefix="brain-load-"))
    sampler = TreeSampler(args.sample_s)
    sampler.start()
    warehouse = EmbeddedWarehouse(root)
    replay: subprocess.Popen[str] | None = None
    server: Any = None
    results: list[FlowResult] = []
    setup: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        dsn = warehouse.start()
        pid = warehouse.status().get("pid")
        if pid:
            sampler.roots.add(int(pid))
        ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=root / "dbt")
        setup["warehouse_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        replay, url = start_replay(plan, root)
        setup["replay_s"] = time.perf_counter() - t0
        print(f"warehouse in {root}; replay exchange at {url} (own process)")

        prefect_env(dsn, root, args.verbose)
        t0 = time.perf_counter()
        from flows.collect_market_data import collect_market_data
        from flows.daily_retrain import daily_retrain
        from flows.nightly_feature_analysis import nightly_feature_analysis
        from flows.runner import run_flow, start_temporary_server

        setup["import_s"] = time.perf_counter() - t0
        from prefect.server.api.server import SubprocessASGIServer

        t0 = time.perf_counter()
        start_temporary_server()
        server = SubprocessASGIServer()
        setup["prefect_server_s"] = time.perf_counter() - t0
        print(
            "set-up: "
            + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in setup.items())
            + " (not in the flows' figures)"
        )

        def run(name: str, flow: Any, **params: Any) -> tuple[FlowResult, Any]:
            result = FlowResult(name)
            results.append(result)
            result.busy_before = wait_for_quiet(args.quiet_wait)
            result.load_before = load_note()
            sampler.set_phase(name)
            busy0, own0 = busy_cpu_seconds(), own_cpu()
            start = time.perf_counter()
            state = run_flow(flow, **params)
            result.wall_s = time.perf_counter() - start
            busy1, own1 = busy_cpu_seconds(), own_cpu()
            sampler.set_phase(f"after {name}")
            result.own_cpu_s = own1 - own0
            if busy0 is not None and busy1 is not None:
                result.machine_cpu_s = busy1 - busy0
            result.state = str(state.name)
            result.message = str(state.message or "")
            peaks = sampler.peaks(name)
            result.peaks = {
                "tree_rss": peaks.rss,
                "tree_pss": peaks.pss,
                "product_rss": peaks.product_rss,
                "product_pss": peaks.product_pss,
                "parts_rss": dict(peaks.parts_rss),
                "parts_pss": dict(peaks.parts_pss),
                "cpu_s": {k: round(v, 2) for k, v in peaks.cpu.items()},
                "processes": peaks.processes,
                "samples": peaks.samples,
            }
            result.maxrss = maxrss()
            figures = warehouse_figures(dsn)
            result.warehouse_bytes = figures["bytes"]
            result.rows = figures["rows"]
            flow_run_id = state.state_details.flow_run_id
            if flow_run_id is not None:
                result.tasks = task_run_times(flow_run_id)
            if not state.is_completed() or state.name != "Completed":
                result.problems.append(f"{name} ended {state.name}: {state.message}")
            report_flow(result, plan, results[:-1])
            return result, state

        collected, state = run(
            "collect-market-data",
            collect_market_data,
            exchanges=[plan.exchange],
            symbols=plan.names,
            datasets=["ohlcv", "funding", "oi"],
            since=plan.since,
            timeframe=plan.timeframe,
            oi_period="1h",
            replay=url,
        )
        check_collection(collected, plan, state)
        replay.terminate()
        replay.wait(timeout=30)
        replay = None
        if not args.skip_retrain:
            trained, state = run(
                "daily-retrain",
                daily_retrain,
                symbols=plan.names,
                exchange=plan.exchange,
                timeframe=plan.timeframe,
                model_types=["lightgbm"],
                lookback_days=plan.lookback_days,
                build_marts=True,
            )
            check_retrain(trained, plan, state)
            if not args.skip_analysis and not args.no_promote:
                promote_the_rest(dsn, state, trained)
            if not args.skip_analysis:
                analysed, state = run(
                    "nightly-feature-analysis",
                    nightly_feature_analysis,
                    symbols=plan.names,
                    exchange=plan.exchange,
                    timeframe=plan.timeframe,
                )
                check_analysis(analysed, state, plan, not args.no_promote)
        for result in results:
            report_problems(result)
    finally:
        try:
            if replay is not None:
                replay.terminate()
                replay.wait(timeout=30)
            if server is not None:
                server.stop()
        finally:
            warehouse.stop()
            sampler.stop()
            if args.keep:
                print(f"kept: {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    print_summary(results, plan)
    if args.json is not None:
        write_json(args.json, plan, setup, results)
    return 1 if any(r.problems for r in results) else 0


def check_collection(result: FlowResult, plan: Plan, state: Any) -> None:
    rows = result.rows
    want = {
        "raw.ohlcv": plan.candles,
        "raw.funding_rates": plan.symbols * plan.funding_prints,
        "raw.open_interest": plan.symbols * plan.oi_samples,
    }
    for table, count in want.items():
        if rows.get(table) != count:
            result.problems.append(f"{table}: {rows.get(table)} rows, expected {count}")
    data = state.result(raise_on_failure=False)
    if isinstance(data, list):
        bad = [r for r in data if r.get("status") != "ok" or r.get("gaps")]
        for r in bad[:5]:
            result.problems.append(
                f"stream {r.get('symbol')} {r.get('dataset')}: {r.get('status')} "
                f"{r.get('message', '')[:120]}"
            )
        if len(bad) > 5:
            result.problems.append(f"... {len(bad) - 5} more streams not ok")


def check_retrain(result: FlowResult, plan: Plan, state: Any) -> None:
    data = state.result(raise_on_failure=False)
    rows = data if isinstance(data, list) else []
    bad = [r for r in rows if r.get("status") != "ok"]
    for r in bad[:5]:
        result.problems.append(f"{r.get('symbol')}: {r.get('status')} {r.get('error', '')[:160]}")
    if len(bad) > 5:
        result.problems.append(f"... {len(bad) - 5} more symbols not ok")
    versions = result.rows.get("raw.model_versions", 0)
    if versions != plan.symbols:
        result.problems.append(f"raw.model_versions: {versions} rows, expected {plan.symbols}")
    for table in ("raw.model_metrics", "raw.feature_importance"):
        if not result.rows.get(table):
            result.problems.append(f"{table}: no rows")


def promote_the_rest(dsn: str, state: Any, trained: FlowResult) -> None:
    """Make each symbol's new version its champion where daily-retrain did not (no
    evidence, or a rollback), as ``brain models promote`` does: nightly-feature-analysis
    analyses champions only, and the load run wants one per symbol. Not timed."""
    from brain_lib.registry import champion_of, get_version, promote
    from brain_lib.warehouse import connect

    data = state.result(raise_on_failure=False)
    rows = data if isinstance(data, list) else []
    by_flow = by_hand = 0
    with connect(dsn) as conn:
        for row in rows:
            version = row.get("version_id")
            if row.get("status") != "ok" or not version:
                continue
            info = get_version(conn, version)
            current = champion_of(conn, info.exchange, info.symbol, info.timeframe, info.model_type)
            if current and current[0] == version:
                by_flow += 1
                continue
            promote(conn, version, reason="load.py: every symbol gets a champion to analyse")
            by_hand += 1
    trained.promoted = {"by_flow": by_flow, "by_load_py": by_hand}
    print(
        f"\nchampions: {by_flow} promoted by daily-retrain, {by_hand} promoted by hand "
        "(brain_lib.registry.promote) so that nightly-feature-analysis has every symbol"
    )


def check_analysis(result: FlowResult, state: Any, plan: Plan, promoted: bool) -> None:
    champions = result.rows.get("raw.model_champions", 0)
    if promoted and champions != plan.symbols:
        result.problems.append(f"raw.model_champions: {champions} rows, expected {plan.symbols}")
    data = state.result(raise_on_failure=False)
    analysed = len(data.get("analysed", [])) if isinstance(data, dict) else 0
    if analysed != champions:
        result.problems.append(f"{analysed} champions analysed, {champions} champions stored")
    if champions == 0:
        result.message += " (no champion to analyse: the figures mean nothing)"


# ------------------------------------------------------------------ output


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def report_flow(result: FlowResult, plan: Plan, earlier: list[FlowResult]) -> None:
    before = earlier[-1] if earlier else None
    p = result.peaks
    print(f"\n== {result.name}: {result.state} ({result.message[:200]})")
    print(f"   {result.load_before}; busy share before: {result.busy_before}")
    print(
        f"   wall {result.wall_s:.1f} s, {1000 * result.wall_s / plan.symbols:,.0f} ms per "
        f"symbol, {1e6 * result.wall_s / plan.candles:,.1f} µs per candle"
    )
    tree = sum(p["cpu_s"].values())
    outside = "?" if result.machine_cpu_s is None else f"{max(result.machine_cpu_s - tree, 0):.1f}"
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(p["cpu_s"].items(), key=lambda kv: -kv[1]))
    print(
        f"   CPU-s: this run's processes {tree:.1f} ({cpu}); other processes on the "
        f"machine {outside} (of {result.wall_s * (os.cpu_count() or 1):.0f} core-s)"
    )
    print(
        f"   peak memory of the process tree: RSS {mib(p['tree_rss'])}, PSS {mib(p['tree_pss'])}"
        f"; without the replay exchange: RSS {mib(p['product_rss'])}, "
        f"PSS {mib(p['product_pss'])} ({p['processes']} processes at most, "
        f"{p['samples']} samples)"
    )
    parts = ", ".join(
        f"{k} {mib(v)}/{mib(p['parts_pss'].get(k, 0))}"
        for k, v in sorted(p["parts_rss"].items(), key=lambda kv: -kv[1])
    )
    print(f"   each part's own peak, RSS/PSS: {parts}")
    print(
        f"   ru_maxrss: this process {mib(result.maxrss['self'])} (its life so far), "
        f"largest waited-for child {mib(result.maxrss['children'])} (a forked child "
        "counts this process's pages until its exec)"
    )
    grown = result.warehouse_bytes - (before.warehouse_bytes if before else 0)
    print(f"   warehouse: {mib(result.warehouse_bytes)} ({'+' if grown >= 0 else ''}{mib(grown)})")
    shown = []
    for table, count in result.rows.items():
        old = before.rows.get(table, 0) if before else 0
        if count or old:
            delta = f" (+{count - old:,})" if before and count != old else ""
            shown.append(f"{table} {count:,}{delta}")
    print("   rows: " + ", ".join(shown))
    if result.tasks:
        head = f"{'runs':>5} {'sum s':>8} {'max s':>7} {'wall s':>7}"
        print(f"   {'task (Prefect run times)':<34} {head}")
        ordered = sorted(result.tasks.items(), key=lambda kv: kv[1]["first_start_s"])
        for name, t in ordered:
            print(
                f"   {name:<34} {int(t['count']):5d} {t['sum_s']:8.1f} {t['max_s']:7.2f} "
                f"{t['wall_s']:7.1f}"
            )


def report_problems(result: FlowResult) -> None:
    for problem in result.problems:
        print(f"CHECK FAILED: {problem}", file=sys.stderr)


def print_summary(results: list[FlowResult], plan: Plan) -> None:
    if not results:
        return
    print(f"\n== summary: {plan.symbols} symbols x {plan.days} days of {plan.timeframe}")
    print(
        f"{'flow':<26} {'state':<10} {'wall s':>8} {'ms/symbol':>10} {'peak RSS':>10} "
        f"{'peak PSS':>10} {'warehouse':>10}"
    )
    for r in results:
        print(
            f"{r.name:<26} {r.state:<10} {r.wall_s:8.1f} {1000 * r.wall_s / plan.symbols:10,.0f} "
            f"{mib(r.peaks.get('product_rss', 0)):>10} {mib(r.peaks.get('product_pss', 0)):>10} "
            f"{mib(r.warehouse_bytes):>10}"
        )
    print("(peaks without the replay exchange; each flow's own)")


def git_describe() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip()

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if line[:2] != "??"]
    return {"commit": git("rev-parse", "HEAD"), "modified": dirty}


def write_json(path: Path, plan: Plan, setup: dict[str, float], results: list[FlowResult]) -> None:
    payload = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_describe(),
        "machine": {
            "cores": os.cpu_count(),
            "mem_available": mem_available(),
            "load_note": load_note(),
        },
        "plan": {
            "symbols": plan.symbols,
            "years": plan.years,
            "days": plan.days,
            "timeframe": plan.timeframe,
            "exchange": plan.exchange,
            "since": plan.since.isoformat(),
            "end": plan.end.isoformat(),
            "bars_per_symbol": plan.bars,
            "candles": plan.candles,
        },
        "setup_s": setup,
        "flows": [r.__dict__ for r in results],
    }
    path.write_text(json.dumps(payload, indent=1, default=str))
    print(f"figures written to {path}")


# ------------------------------------------------------------------ the matrix


def number_list(text: str, kind: type, option: str) -> list[Any]:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise Refused(f"{option} {text!r}: not a comma-separated list of numbers") from None
    if not values:
        raise Refused(f"{option}: empty")
    return sorted(set(values))


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x)."""
    if len(set(xs)) < 2:
        return None
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / den


def joint_fit(points: list[tuple[float, float, float]]) -> tuple[float, float, float] | None:
    """log t = c + a log symbols + b log rows-per-symbol (least squares): (a, b, c)."""
    import numpy as np

    if len({p[0] for p in points}) < 2 or len({p[1] for p in points}) < 2:
        return None
    design = np.array([[1.0, math.log(s), math.log(r)] for s, r, _ in points])
    target = np.array([math.log(t) for _, _, t in points])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(coef[1]), float(coef[2]), float(coef[0])


def run_matrix(args: argparse.Namespace) -> int:
    symbols = number_list(args.symbols_list, int, "--symbols-list")
    years = number_list(args.years_list, float, "--years-list")
    tmp = Path(tempfile.gettempdir())
    plans = [
        make_plan(n, y, args.timeframe, args.exchange, args.end, tmp)
        for n in symbols
        for y in years
    ]
    print(f"matrix: {len(plans)} runs, symbols {symbols} x years {years}")
    out_dir = Path(tempfile.mkdtemp(prefix="brain-load-matrix-"))
    runs: list[dict[str, Any]] = []
    status = 0
    for plan in plans:
        target = out_dir / f"load-{plan.symbols}x{plan.years:g}.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--symbols",
            str(plan.symbols),
            "--years",
            str(plan.years),
            "--timeframe",
            plan.timeframe,
            "--exchange",
            plan.exchange,
            "--end",
            args.end,
            "--quiet-wait",
            str(args.quiet_wait),
            "--sample-s",
            str(args.sample_s),
            "--json",
            str(target),
        ]
        if args.skip_analysis:
            cmd.append("--skip-analysis")
        if args.skip_retrain:
            cmd.append("--skip-retrain")
        print(f"\n#### {plan.symbols} symbols x {plan.years:g} years", flush=True)
        code = subprocess.call(cmd, cwd=REPO)
        status = max(status, code)
        if target.exists():
            runs.append(json.loads(target.read_text()))
    print_matrix(runs)
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs}, indent=1, default=str))
        print(f"figures written to {args.json}")
    shutil.rmtree(out_dir, ignore_errors=True)
    return status


def print_matrix(runs: list[dict[str, Any]]) -> None:
    print("\n== matrix: wall seconds per flow (peak RSS without the replay)")
    print(f"{'symbols':>7} {'years':>5} {'bars/sym':>8} " + " ".join(f"{f:>26}" for f in FLOWS))
    by_flow: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for run in runs:
        plan = run["plan"]
        cells = []
        for name in FLOWS:
            flow = next((f for f in run["flows"] if f["name"] == name), None)
            if flow is None or flow["state"] == "not run":
                cells.append(f"{'-':>26}")
                continue
            peak = flow["peaks"].get("product_rss", 0)
            cells.append(f"{flow['wall_s']:9.1f} s {mib(peak):>10} {flow['state'][:4]:>4}")
            if flow["wall_s"] > 0:
                by_flow[name].append((plan["symbols"], plan["bars_per_symbol"], flow["wall_s"]))
        print(
            f"{plan['symbols']:7d} {plan['years']:5g} {plan['bars_per_symbol']:8d} "
            + " ".join(cells)
        )
    print("\n== how the time grows (log-log least squares; 1 = linear)")
    for name, points in by_flow.items():
        parts = []
        for fixed_rows in sorted({p[1] for p in points}):
            sub = [p for p in points if p[1] == fixed_rows]
            a = slope([p[0] for p in sub], [p[2] for p in sub])
            if a is not None:
                parts.append(f"symbols^{a:.2f} at {fixed_rows} bars")
        for fixed_syms in sorted({p[0] for p in points}):
            sub = [p for p in points if p[0] == fixed_syms]
            b = slope([p[1] for p in sub], [p[2] for p in sub])
            if b is not None:
                parts.append(f"rows^{b:.2f} at {fixed_syms:g} symbols")
        joint = joint_fit(points)
        head = (
            f"time ~ symbols^{joint[0]:.2f} x rows-per-symbol^{joint[1]:.2f}"
            if joint
            else "too few points for a joint fit"
        )
        print(f"{name}: {head}")
        for part in parts:
            print(f"    {part}")


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.sample_s <= 0 or args.sample_s > 10:
            raise Refused(f"--sample-s {args.sample_s:g}: must be above 0 and at most 10")
        if args.matrix:
            return run_matrix(args)
        plan = make_plan(
            args.symbols,
            args.years,
            args.timeframe,
            args.exchange,
            args.end,
            Path(tempfile.gettempdir()),
        )
    except Refused as exc:
        print(f"load.py: {exc}", file=sys.stderr)
        return 2
    return run_one(args, plan)


if __name__ == "__main__":
    sys.exit(main())
