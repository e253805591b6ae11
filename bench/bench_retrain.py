"""Benchmark: daily-retrain compute on the demo data vs the bare LightGBM fits it performs.

Target: everything around the fits costs at most 30% on top of them, i.e.
``T_flow_compute / T_fits - 1 <= 0.30``; Prefect's server start-up and dbt are reported
apart.

Set-up (not timed): a throwaway embedded PostgreSQL in a temporary folder, the raw schema
from dbt, and the demo data of ``brain demo``: BTC/USDT, ETH/USDT, SOL/USDT, 400 days of
hourly candles from ``SyntheticMarket(seed=7, autocorr=-0.1)`` loaded with ``copy_ohlcv``
(exchange ``synthetic``, timeframe ``1h``). ``BRAIN_DATABASE_URL``, ``BRAIN_HOME``,
``PREFECT_HOME`` (inside the temporary folder) and ``PREFECT_SERVER_ANALYTICS_ENABLED``
are set before Prefect is imported, and ``PREFECT_API_URL`` is removed, so Prefect runs
its temporary local server with a fresh database. Everything is removed at the end.

Measured (wall-clock seconds, ``time.perf_counter``), ``--repeats`` times, interleaved:

* ``T_fits``: per symbol, the training set is built once (not timed) from the same
  365-day window the flow loads; then exactly the LightGBM fits the pipeline performs
  are timed, one after the other: one per purged walk-forward fold
  (``TrainingConfig().splitter()``), the final fit on all rows, and the extra fit of
  ``training.version_importance`` (the last fold's training rows, for permutation
  importance). Each is ``lightgbm.train`` on numpy arrays laid out as the adapter makes
  them, with ``brain_lib.models._lightgbm.DEFAULT_PARAMS`` (``num_boost_round``
  popped). Summed over the symbols.
* ``T_fits_concurrent``: the same fits scheduled as the flow's thread pool runs them
  (per symbol the walk-forward folds and the final fit side by side, all symbols at
  once, then the importance fits): what the flow's concurrency does to the fits.
* ``T_pipeline``: the plain-Python pipeline, no Prefect: the warehouse check of
  ``prepare_warehouse``, then per symbol the body of the ``load_candles`` task,
  ``train_symbol``, ``training.version_importance`` (SHAP, permutation, correlation)
  and ``registry.register_version`` (artifact, judgement against the champion, rows).
* stages: the same pipeline once more, each stage timed on its own.
* ``T_flow_compute``: ``flows.runner.run_flow(daily_retrain, ..., lookback_days=365,
  build_marts=False)``: the whole flow, including Prefect's task orchestration and the
  wait until Prefect has recorded every task run, without dbt.
* ``T_flow_serial``: the same flow with ``ThreadPoolTaskRunner(max_workers=1)``, one
  task at a time: what it takes above ``T_pipeline`` is Prefect's own cost.

Measured once: ``T_import`` (importing Prefect and the flow modules), ``T_startup``
(the first run of a trivial flow: starts the temporary Prefect server), ``T_noop`` (a
later run of the same trivial flow via ``run_flow``: Prefect's fixed cost per flow run)
and ``T_dbt`` (one ``dbt build`` of the marts after the runs).

Noise: a two-thread LightGBM fit gets several times slower when another process takes
a core, and when LightGBM's OpenMP runtime has thread teams alive in more than one
thread (see ``in_fresh_thread``). So every measurement that fits runs in a short-lived
thread, and before each one the benchmark waits (``--quiet-wait`` seconds at most) for
an idle machine; per repeat it prints the CPU-seconds other processes used meanwhile
(``others``, from ``/proc/stat``; for the flow this includes Prefect's server and
PostgreSQL, which work for the flow).

Reading the output: per-repeat lines, then a table with the median and the minimum of
each measure. ``overhead`` = T_flow_compute / T_fits - 1 (medians) is the figure the
target is about. ``pipeline overhead`` = T_pipeline / T_fits - 1 is what Brain's own code
around the fits costs (features, predictions, backtest, metrics, importance, registry);
``Prefect overhead`` = (T_flow_compute - T_pipeline) / T_fits is what the flow adds, of
which ``concurrency`` = T_fits_concurrent / T_fits - 1 is what running the fits side by
side in threads costs (or saves) on this machine. The stage table and the per-task
times Prefect recorded (summed over concurrent tasks, so they can exceed the flow's
wall time) say where the time goes.

Run from the repository root::

    .venv/bin/python bench/bench_retrain.py              # 3 repeats
    .venv/bin/python bench/bench_retrain.py --repeats 1  # quicker
    .venv/bin/python bench/bench_retrain.py --quick      # 1 symbol, 1 repeat, no dbt

``--json PATH`` also writes the medians and two ratios (``bench/_report.py``):
T_flow_compute / T_fits against the ``<= 1.3`` target, and the importance stage of the
plain pipeline / T_fits against the ``<= 0.1`` target (importance at most 10% of the fit
time). ``--quick`` is one symbol (BTC/USDT), 200 days with a 180-day window, one repeat,
no dbt build and at most 10 s of waiting for an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from _machine import busy_cpu_seconds, load_note, wait_for_quiet  # bench/ is on sys.path
from _report import add_report_args, ratio, write_report
from _report import measure as report_measure

from brain_lib.dbt import ensure_raw_schema, run_dbt
from brain_lib.market import SyntheticMarket
from brain_lib.training import TrainingConfig, build_dataset
from brain_lib.warehouse import EmbeddedWarehouse, connect, copy_ohlcv

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
EXCHANGE = "synthetic"
TIMEFRAME = "1h"
DEMO_SEED = 7
DEMO_AUTOCORR = -0.1
TARGET_OVERHEAD = 0.30
TARGET_IMPORTANCE_SHARE = 0.10  # importance at most 10% of the fit time
STAGES = (
    "load",
    "features",
    "walk-forward",
    "backtest+metrics",
    "final fit",
    "importance",
    "manifest",
    "artifact",
    "judge+land",
)

T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every measurement")
    parser.add_argument("--days", type=int, default=400, help="days of hourly demo candles")
    parser.add_argument(
        "--lookback-days", type=int, default=365, help="training window of the flow, in days"
    )
    parser.add_argument(
        "--symbols", type=int, default=3, choices=range(1, 4), help="how many demo symbols"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait at most for an idle machine before each measurement (0: never)",
    )
    parser.add_argument("--no-dbt", action="store_true", help="skip the dbt build timing")
    add_report_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.symbols, args.days, args.lookback_days = 1, 1, 200, 180
        args.no_dbt = True
        args.quiet_wait = min(args.quiet_wait, 10.0)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.lookback_days >= args.days:
        parser.error("--lookback-days must be smaller than --days")
    return args


# ------------------------------------------------------------------ CPU gauge


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Timing:
    """Wall seconds of one measurement and the CPU-seconds other processes used meanwhile."""

    seconds: float
    others: float | None


def measure(fn: Callable[[], T]) -> tuple[Timing, T]:
    """Call ``fn``; its wall time, the CPU others used meanwhile, and its result."""
    busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    busy1, own1 = busy_cpu_seconds(), own_cpu_seconds()
    others = None
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0) - (own1 - own0))
    return Timing(seconds, others), out


def in_fresh_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that ends with it.

    LightGBM's OpenMP runtime (libgomp) keeps a thread team per calling thread while that
    thread lives; with more live team threads than cores it stops spinning between
    parallel regions and every fit gets several times slower. Running each measurement
    in a short-lived thread, as Prefect runs tasks, leaves no team behind in the main
    thread to slow the measurements after it.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def live_threads() -> int:
    """Threads of this process (OpenMP team threads included), where Linux says."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


# ------------------------------------------------------------------- bare fits


@dataclass
class FitJob:
    """The arrays of one LightGBM fit the pipeline performs (sliced before timing)."""

    symbol: str
    kind: str  # "fold", "final" or "importance"
    X: np.ndarray
    y: np.ndarray


def fit_jobs(candles: dict[str, pd.DataFrame], config: TrainingConfig) -> list[FitJob]:
    """Every fit of the pipeline: one per walk-forward fold (the calibration fold
    included) and the final fit. Importance reuses the fold models (no extra fit).

    The arrays are made as ``LightGBMModel.fit`` makes them (``iloc`` then
    ``to_numpy(dtype=float)``), so LightGBM sees the same memory layout.
    """
    jobs: list[FitJob] = []
    for symbol, frame in candles.items():
        X, y = build_dataset(frame, config.label_horizon, config.timeframe)
        folds = [
            (X.iloc[train_idx].to_numpy(dtype=float), y.iloc[train_idx].to_numpy(dtype=float))
            for train_idx, _ in config.splitter().split(X)
        ]
        jobs.extend(FitJob(symbol, "fold", Xf, yf) for Xf, yf in folds)
        jobs.append(FitJob(symbol, "final", X.to_numpy(dtype=float), y.to_numpy(dtype=float)))
    return jobs


def time_bare_fits(jobs: list[FitJob]) -> dict[str, float]:
    """Seconds of the bare ``lightgbm.train`` calls: total, folds only, final only."""
    import lightgbm as lgb

    from brain_lib.models._lightgbm import DEFAULT_PARAMS

    params = dict(DEFAULT_PARAMS)
    rounds = int(params.pop("num_boost_round"))
    out = {"fold": 0.0, "final": 0.0, "importance": 0.0}
    for job in jobs:
        start = time.perf_counter()
        data = lgb.Dataset(job.X, label=job.y, free_raw_data=True)
        lgb.train(params, data, num_boost_round=rounds)
        out[job.kind] += time.perf_counter() - start
    out["total"] = out["fold"] + out["final"] + out["importance"]
    return out


def time_bare_fits_as_flow(jobs: list[FitJob]) -> float:
    """Seconds of the same fits scheduled as the flow's thread pool runs them.

    Prefect's ThreadPoolTaskRunner starts every task whose inputs are ready: per symbol
    the walk-forward (its folds one after the other) and the final fit run side by
    side, and all symbols at once, each fit with LightGBM's own ``num_threads``; the
    importance fits need both, so they run afterwards, side by side (an approximation:
    in the flow one symbol's importance may overlap another's walk-forward).
    """
    from concurrent.futures import ThreadPoolExecutor

    chains: dict[tuple[str, str], list[FitJob]] = defaultdict(list)
    for job in jobs:
        chains[(job.symbol, job.kind)].append(job)

    def run_chain(chain: list[FitJob]) -> float:
        return time_bare_fits(chain)["total"]

    first = [c for (_, kind), c in chains.items() if kind != "importance"]
    then = [c for (_, kind), c in chains.items() if kind == "importance"]
    start = time.perf_counter()
    for phase in (first, then):
        if phase:
            with ThreadPoolExecutor(max_workers=len(phase)) as pool:
                list(pool.map(run_chain, phase))
    return time.perf_counter() - start


# ------------------------------------------------------------ plain pipeline


@dataclass
class Context:
    """What every measurement needs once the environment is set."""

    dsn: str
    home: Path
    config: TrainingConfig
    artifact_root: str
    threshold: float
    symbols: list[str]
    lookback_days: int
    load: Callable[..., pd.DataFrame] = field(repr=False)


def load_window(ctx: Context, symbol: str) -> pd.DataFrame:
    """The flow's ``load_candles`` task body, called as a plain function."""
    return ctx.load(ctx.dsn, EXCHANGE, symbol, TIMEFRAME, ctx.lookback_days, None, ctx.config)


def prepare(ctx: Context) -> None:
    """What ``prepare_warehouse`` does once the URL is known."""
    from brain_lib.warehouse import ensure_reachable

    ensure_reachable(ctx.dsn)
    ensure_raw_schema(ctx.dsn, project_dir=REPO / "dbt_brain", state_dir=ctx.home / "dbt")


def run_pipeline(ctx: Context) -> None:
    """load + ``train_symbol`` + ``version_importance`` + ``register_version`` for every
    symbol, no Prefect. ``train_symbol`` does not hand back the training set, so it is
    built once more for the importance (about 15 ms per symbol)."""
    from brain_lib.registry import JudgementRules, register_version
    from brain_lib.training import train_symbol, version_importance

    cfg = ctx.config
    prepare(ctx)
    for symbol in ctx.symbols:
        candles = load_window(ctx, symbol)
        result = train_symbol(candles, exchange=EXCHANGE, symbol=symbol, config=cfg)
        assert result.walk_forward is not None and result.evaluation is not None
        X, y = build_dataset(candles, cfg.label_horizon, cfg.timeframe)
        importance = version_importance(result.walk_forward, result.evaluation, X, y, candles, cfg)
        with connect(ctx.dsn) as conn:
            register_version(
                conn,
                result,
                artifact_root=ctx.artifact_root,
                candles=candles,
                config=cfg,
                rules=JudgementRules(threshold=ctx.threshold),
                importance=importance,
            )


class Stopwatch:
    """Seconds summed per stage name: ``with watch("features"): ...``."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.seconds = dict.fromkeys(names, 0.0)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def run_stages(ctx: Context) -> dict[str, float]:
    """The pipeline once more, each stage of ``train_symbol`` and the registry timed."""
    from brain_lib import registry
    from brain_lib import training as tr

    cfg = ctx.config
    watch = Stopwatch(STAGES)
    with watch("load"):
        prepare(ctx)
    for symbol in ctx.symbols:
        with watch("load"):
            candles = load_window(ctx, symbol)
        with watch("features"):
            X, y = tr.build_dataset(candles, cfg.label_horizon, cfg.timeframe)
        with watch("walk-forward"):
            wf = tr.walk_forward_predictions(X, y, cfg)
        with watch("backtest+metrics"):
            evaluation = tr.evaluate_walk_forward(wf, X, y, candles, cfg)
        with watch("final fit"):
            model = tr.fit_final(X, y, cfg)
        with watch("importance"):
            importance = tr.version_importance(wf, evaluation, X, y, candles, cfg)
        with watch("manifest"):
            result = tr.assemble_result(
                candles=candles,
                exchange=EXCHANGE,
                symbol=symbol,
                config=cfg,
                X=X,
                walk_forward=wf,
                evaluation=evaluation,
                model=model,
            )
        with watch("artifact"):
            version_id = registry.new_version_id(symbol, cfg.model_type)
            stored = registry.save_artifact(result, ctx.artifact_root, version_id)
            record = registry.record_from_result(result, stored, None, importance)
        with watch("judge+land"), connect(ctx.dsn) as conn:
            registry.judge_and_record(
                conn,
                record,
                candles=candles,
                config=cfg,
                rules=registry.JudgementRules(threshold=ctx.threshold),
            )
    out = dict(watch.seconds)
    out["total"] = sum(out[s] for s in STAGES)
    return out


# ---------------------------------------------------------------------- Prefect


def config_of(settings: Any) -> TrainingConfig:
    """The training config the flow builds from ``Settings`` (daily_retrain's own)."""
    from flows.daily_retrain import _config

    return _config(settings, "lightgbm", {})


def prefect_env(dsn: str, home: Path) -> None:
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


def noop_flow() -> Any:
    from prefect import flow

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    return noop


def flow_run_times(flow_run_id: Any) -> tuple[float, dict[str, float]]:
    """Run time of a flow run and the summed run times of its tasks, by task name,
    as Prefect's server recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> tuple[Any, list[Any]]:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return run, tasks

    result = run_coro_as_sync(read())
    assert result is not None
    run, tasks = result

    def seconds(obj: Any) -> float:
        if obj.start_time is not None and obj.end_time is not None:
            return float((obj.end_time - obj.start_time).total_seconds())
        return float(obj.total_run_time.total_seconds())

    by_task: dict[str, float] = defaultdict(float)
    for task_run in tasks:
        by_task[task_run.name.rsplit("-", 1)[0]] += seconds(task_run)
    return seconds(run), dict(by_task)


def flow_problem(state: Any) -> str | None:
    """Why a daily-retrain run does not count (not completed, or a symbol not landed)."""
    rows = state.result(raise_on_failure=False)
    bad = [r for r in rows if r.get("status") != "ok"] if isinstance(rows, list) else rows
    if state.is_completed() and not bad:
        return None
    return f"daily-retrain ended {state.name}: {state.message} {bad}"


# ----------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values)


def runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def others(timing: Timing) -> str:
    return "?" if timing.others is None else f"{timing.others:.1f}"


def load_demo_data(dsn: str, days: int, symbols: list[str]) -> None:
    market = SyntheticMarket(seed=DEMO_SEED, autocorr=DEMO_AUTOCORR)
    with connect(dsn) as conn:
        for symbol in symbols:
            copy_ohlcv(
                conn,
                market.candles(symbol, days * 24),
                exchange=EXCHANGE,
                symbol=symbol,
                timeframe=TIMEFRAME,
            )


def print_report(
    args: argparse.Namespace,
    fits: list[dict[str, float]],
    concurrent: list[float],
    pipeline: list[float],
    flow: list[float],
    flow_recorded: list[float],
    flow_serial: list[float],
    once: dict[str, float],
) -> None:
    totals = [f["total"] for f in fits]
    t_fits, t_pipe, t_flow = med(totals), med(pipeline), med(flow)
    overhead = t_flow / t_fits - 1
    best = min(flow) / min(totals) - 1
    verdict = "met" if overhead <= TARGET_OVERHEAD else "MISSED"
    title = f"measure (seconds; {args.repeats} repeats)"
    print(f"{title:<48} {'median':>8} {'min':>8}  runs")
    rows: list[tuple[str, list[float]]] = [
        ("T_fits (bare lightgbm.train, all fits)", totals),
        ("  of which walk-forward folds", [f["fold"] for f in fits]),
        ("  of which final fits", [f["final"] for f in fits]),
        ("  of which importance fits", [f["importance"] for f in fits]),
        ("T_fits_concurrent (same fits, flow's threading)", concurrent),
        ("T_pipeline (load+train_symbol+register)", pipeline),
        ("T_flow_compute (run_flow, no dbt)", flow),
        ("  flow run time recorded by Prefect", flow_recorded),
        ("T_flow_serial (same flow, one task thread)", flow_serial),
    ]
    for label, values in rows:
        print(f"{label:<48} {med(values):8.2f} {min(values):8.2f}  {runs(values)}")
    ratios: list[tuple[str, float, float, str]] = [
        (
            "overhead = T_flow_compute/T_fits - 1",
            overhead,
            best,
            f"target <= {TARGET_OVERHEAD:.2f}: {verdict}",
        ),
        (
            "pipeline overhead = T_pipeline/T_fits - 1",
            t_pipe / t_fits - 1,
            min(pipeline) / min(totals) - 1,
            "",
        ),
        (
            "  concurrency = T_fits_concurrent/T_fits - 1",
            med(concurrent) / t_fits - 1,
            min(concurrent) / min(totals) - 1,
            "",
        ),
        (
            "Prefect overhead = (T_flow - T_pipeline)/T_fits",
            (t_flow - t_pipe) / t_fits,
            (min(flow) - min(pipeline)) / min(totals),
            "",
        ),
    ]
    ratios.append(
        (
            "serial flow overhead = T_flow_serial/T_fits - 1",
            med(flow_serial) / t_fits - 1,
            min(flow_serial) / min(totals) - 1,
            "",
        )
    )
    for label, value, value_min, note in ratios:
        print(f"{label:<48} {value:8.2f} {value_min:8.2f}  {note}")
    for label, value in once.items():
        print(f"{label:<48} {value:8.2f} {'':>8}  once")


def write_json(
    path: str,
    n_symbols: int,
    fits: list[dict[str, float]],
    concurrent: list[float],
    pipeline: list[float],
    flow: list[float],
    stages: list[dict[str, float]],
    once: dict[str, float],
) -> None:
    """The medians and the two target ratios as a ``bench/_report.py`` report."""
    t_fits = med([f["total"] for f in fits])
    t_flow = med(flow)
    t_importance = med([s["importance"] for s in stages])
    measures: list[dict[str, Any]] = [
        report_measure("symbols", value=n_symbols, unit="symbols"),
        report_measure("T_fits (bare lightgbm.train, all fits)", seconds=t_fits),
        report_measure("T_fits_concurrent", seconds=med(concurrent)),
        report_measure("T_pipeline (no Prefect)", seconds=med(pipeline)),
        report_measure("T_flow_compute (run_flow, no dbt)", seconds=t_flow),
        *(
            report_measure(f"stage {name}", seconds=med([s[name] for s in stages]))
            for name in (*STAGES, "total")
        ),
        *(report_measure(name, seconds=seconds) for name, seconds in once.items()),
    ]
    size = f"{n_symbols} symbol{'s' if n_symbols != 1 else ''}"
    ratios = [
        ratio(
            f"daily-retrain, {size}: flow compute / bare fits",
            brain=t_flow,
            other=t_fits,
            other_name="bare lightgbm.train fits",
            ratio=t_flow / t_fits,
            target=f"<= {1 + TARGET_OVERHEAD:g}",
        ),
        ratio(
            f"daily-retrain, {size}: importance / bare fits",
            brain=t_importance,
            other=t_fits,
            other_name="bare lightgbm.train fits",
            ratio=t_importance / t_fits,
            target=f"<= {TARGET_IMPORTANCE_SHARE:g}",
        ),
    ]
    write_report(path, "retrain", measures, ratios)


def run(args: argparse.Namespace) -> int:
    print(f"before start: {load_note()}")
    symbols = SYMBOLS[: args.symbols]
    tmp = Path(tempfile.mkdtemp(prefix="brain-bench-retrain-"))
    warehouse = EmbeddedWarehouse(tmp)
    server: Any = None
    try:
        dsn = warehouse.start()
        ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=tmp / "dbt")
        load_demo_data(dsn, args.days, symbols)
        print(f"embedded PostgreSQL in {tmp}; {len(symbols)} symbols x {args.days} days loaded")

        prefect_env(dsn, tmp)
        t_import, _ = measure(lambda: __import__("flows.daily_retrain"))
        from prefect.server.api.server import SubprocessASGIServer

        from brain_lib.config import Settings
        from flows.daily_retrain import daily_retrain
        from flows.runner import run_flow
        from flows.tasks import load_candles

        settings = Settings()
        config = config_of(settings)
        if config != TrainingConfig() or settings.model_types != ["lightgbm"]:
            print(
                "BRAIN_* settings (environment or .env) change the training config: "
                f"{config} / {settings.model_types}; unset them to benchmark the defaults",
                file=sys.stderr,
            )
            return 2
        ctx = Context(
            dsn=dsn,
            home=tmp,
            config=config,
            artifact_root=settings.artifact_location,
            threshold=settings.degradation_threshold,
            symbols=symbols,
            lookback_days=args.lookback_days,
            load=load_candles.fn,
        )

        noop = noop_flow()
        server = SubprocessASGIServer()
        wait_for_quiet(args.quiet_wait)
        t_startup, _ = measure(lambda: run_flow(noop))
        wait_for_quiet(args.quiet_wait)
        t_noop, _ = measure(lambda: run_flow(noop))

        windows = {s: load_window(ctx, s) for s in symbols}
        jobs = fit_jobs(windows, config)
        n_rows = {s: len(f) for s, f in windows.items()}
        print(
            f"windows: {n_rows} candles; {len(jobs)} LightGBM fits "
            f"({config.n_splits} folds + final + importance fit per symbol)"
        )

        from prefect.task_runners import ThreadPoolTaskRunner

        one_thread: Any = ThreadPoolTaskRunner(max_workers=1)
        serial_retrain = daily_retrain.with_options(task_runner=one_thread)

        def flow_once(flow_fn: Any = daily_retrain) -> Any:
            return run_flow(
                flow_fn,
                symbols=symbols,
                exchange=EXCHANGE,
                timeframe=TIMEFRAME,
                lookback_days=args.lookback_days,
                build_marts=False,
            )

        fits: list[dict[str, float]] = []
        concurrent: list[float] = []
        pipeline: list[float] = []
        stages: list[dict[str, float]] = []
        flow: list[float] = []
        flow_serial: list[float] = []
        flow_recorded: list[float] = []
        tasks: list[dict[str, float]] = []
        for i in range(args.repeats):
            wait_for_quiet(args.quiet_wait)
            t_fit, fit = measure(lambda: in_fresh_thread(lambda: time_bare_fits(jobs)))
            wait_for_quiet(args.quiet_wait)
            t_conc, _ = measure(lambda: time_bare_fits_as_flow(jobs))
            wait_for_quiet(args.quiet_wait)
            t_pipe, _ = measure(lambda: in_fresh_thread(lambda: run_pipeline(ctx)))
            wait_for_quiet(args.quiet_wait)
            t_stages, stage = measure(lambda: in_fresh_thread(lambda: run_stages(ctx)))
            wait_for_quiet(args.quiet_wait)
            t_flow, state = measure(flow_once)
            wait_for_quiet(args.quiet_wait)
            t_serial, serial_state = measure(lambda: flow_once(serial_retrain))
            for finished in (state, serial_state):
                problem = flow_problem(finished)
                if problem:
                    print(problem, file=sys.stderr)
                    return 1
            fits.append(fit)
            concurrent.append(t_conc.seconds)
            pipeline.append(t_pipe.seconds)
            stages.append(stage)
            flow.append(t_flow.seconds)
            flow_serial.append(t_serial.seconds)
            recorded, by_task = flow_run_times(state.state_details.flow_run_id)
            flow_recorded.append(recorded)
            tasks.append(by_task)
            print(
                f"repeat {i + 1}: fits {fit['total']:.2f} s (others {others(t_fit)} CPU-s), "
                f"fits as the flow runs them {t_conc.seconds:.2f} s (others {others(t_conc)}), "
                f"pipeline {t_pipe.seconds:.2f} s (others {others(t_pipe)}), "
                f"staged {t_stages.seconds:.2f} s (others {others(t_stages)}), "
                f"flow {t_flow.seconds:.2f} s (others incl. servers {others(t_flow)}), "
                f"flow with one task thread {t_serial.seconds:.2f} s (others {others(t_serial)}); "
                f"{live_threads()} threads alive"
            )

        t_dbt = float("nan")
        if not args.no_dbt:
            wait_for_quiet(args.quiet_wait)
            timing, _ = measure(
                lambda: run_dbt(
                    ["build"], dsn=dsn, project_dir=REPO / "dbt_brain", state_dir=tmp / "dbt"
                )
            )
            t_dbt = timing.seconds

        print()
        print_report(
            args,
            fits,
            concurrent,
            pipeline,
            flow,
            flow_recorded,
            flow_serial,
            {
                "T_import (prefect + flow modules)": t_import.seconds,
                "T_startup (temporary server + first noop flow)": t_startup.seconds,
                "T_noop (a later noop flow via run_flow)": t_noop.seconds,
                "T_dbt (dbt build)" + (" skipped" if args.no_dbt else ""): t_dbt,
            },
        )

        print()
        print(f"{'stage of the plain pipeline (all symbols)':<48} {'median':>8} {'min':>8}  runs")
        for stage_name in (*STAGES, "total"):
            values = [s[stage_name] for s in stages]
            print(f"{stage_name:<48} {med(values):8.2f} {min(values):8.2f}  {runs(values)}")
        wf_extra = med([s["walk-forward"] for s in stages]) - med([f["fold"] for f in fits])
        final_extra = med([s["final fit"] for s in stages]) - med([f["final"] for f in fits])
        print(f"{'walk-forward minus its bare fits (medians)':<48} {wf_extra:8.2f}")
        print(f"{'final fit minus its bare fit (medians)':<48} {final_extra:8.2f}")
        imp_extra = med([s["importance"] for s in stages]) - med([f["importance"] for f in fits])
        print(f"{'importance minus its bare fit (medians)':<48} {imp_extra:8.2f}")
        imp_share = med([s["importance"] for s in stages]) / med([f["total"] for f in fits])
        verdict = "met" if imp_share <= TARGET_IMPORTANCE_SHARE else "MISSED"
        print(
            f"{'importance / T_fits (medians)':<48} {imp_share:8.2f}  "
            f"target <= {TARGET_IMPORTANCE_SHARE:.2f}: {verdict}"
        )

        print()
        print(f"{'Prefect task runs, summed (as recorded)':<48} {'median':>8} {'min':>8}  runs")
        for name in sorted({name for t in tasks for name in t}):
            values = [t.get(name, 0.0) for t in tasks]
            print(f"{name:<48} {med(values):8.2f} {min(values):8.2f}  {runs(values)}")

        if args.json:
            once = {
                "T_import": t_import.seconds,
                "T_startup": t_startup.seconds,
                "T_noop": t_noop.seconds,
                "T_dbt": t_dbt,
            }
            write_json(args.json, len(symbols), fits, concurrent, pipeline, flow, stages, once)
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            try:
                warehouse.stop()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
