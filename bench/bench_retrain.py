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
  are timed: one per purged walk-forward fold (``TrainingConfig().splitter()``) and the
  final fit on all rows, each ``lightgbm.train`` on numpy arrays with
  ``brain_lib.models._lightgbm.DEFAULT_PARAMS`` (``num_boost_round`` popped). Summed over
  the symbols.
* ``T_pipeline``: the plain-Python pipeline, no Prefect: the warehouse check of
  ``prepare_warehouse``, then per symbol the load of ``load_candles``, ``train_symbol``
  and ``register_version`` (artifact + rows), i.e. what the flow does without
  orchestration.
* stages: the same pipeline once more with each stage timed on its own (load, features,
  walk-forward, backtest + metrics, final fit, manifest, registry write).
* ``T_flow_compute``: ``flows.runner.run_flow(daily_retrain, ..., lookback_days=365,
  build_marts=False)``: the whole flow, including Prefect's task orchestration and the
  wait until Prefect has recorded every task run, without dbt.

Measured once: ``T_import`` (importing Prefect and the flow modules), ``T_startup``
(the first run of a trivial flow: starts the temporary Prefect server), ``T_noop`` (a
later run of the same trivial flow: Prefect's fixed cost per flow run) and ``T_dbt``
(one ``dbt build`` of the marts after the runs).

Reading the output: per-repeat lines, then a table of medians. ``overhead`` =
T_flow_compute / T_fits - 1 is the figure the target is about; ``pipeline overhead`` =
T_pipeline / T_fits - 1 is the part of it Brain's own code (features, backtest,
metrics, registry, predictions) costs, and ``Prefect overhead`` =
(T_flow_compute - T_pipeline) / T_fits the part orchestration costs. The stage table and
the per-task times Prefect recorded (tasks of different symbols run concurrently in
threads, so those sums can exceed the flow's wall time) say where the time goes.

Run from the repository root::

    .venv/bin/python bench/bench_retrain.py              # 3 repeats
    .venv/bin/python bench/bench_retrain.py --repeats 1  # quicker
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
STAGES = (
    "load",
    "features",
    "walk-forward",
    "backtest+metrics",
    "final fit",
    "manifest",
    "registry write",
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
    parser.add_argument("--no-dbt", action="store_true", help="skip the dbt build timing")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.lookback_days >= args.days:
        parser.error("--lookback-days must be smaller than --days")
    return args


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# ------------------------------------------------------------------- bare fits


@dataclass
class FitJob:
    """The arrays of one LightGBM fit the pipeline performs (sliced before timing)."""

    symbol: str
    kind: str  # "fold" or "final"
    X: np.ndarray
    y: np.ndarray


def fit_jobs(candles: dict[str, pd.DataFrame], config: TrainingConfig) -> list[FitJob]:
    """Every fit of the pipeline: one per walk-forward fold, then the final fit."""
    jobs: list[FitJob] = []
    for symbol, frame in candles.items():
        X, y = build_dataset(frame, config.label_horizon)
        Xn = X.to_numpy(dtype=float)
        yn = y.to_numpy(dtype=float)
        for train_idx, _ in config.splitter().split(Xn):
            jobs.append(FitJob(symbol, "fold", Xn[train_idx], yn[train_idx]))
        jobs.append(FitJob(symbol, "final", Xn, yn))
    return jobs


def time_bare_fits(jobs: list[FitJob]) -> dict[str, float]:
    """Seconds of the bare ``lightgbm.train`` calls: total, folds only, final only."""
    import lightgbm as lgb

    from brain_lib.models._lightgbm import DEFAULT_PARAMS

    params = dict(DEFAULT_PARAMS)
    rounds = int(params.pop("num_boost_round"))
    out = {"fold": 0.0, "final": 0.0}
    for job in jobs:
        start = time.perf_counter()
        data = lgb.Dataset(job.X, label=job.y, free_raw_data=True)
        lgb.train(params, data, num_boost_round=rounds)
        out[job.kind] += time.perf_counter() - start
    out["total"] = out["fold"] + out["final"]
    return out


# ------------------------------------------------------------ plain pipeline


@dataclass
class Context:
    """What every measurement needs once the environment is set."""

    dsn: str
    home: Path
    config: TrainingConfig
    artifact_root: str
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


def time_pipeline(ctx: Context) -> float:
    """Seconds of load + ``train_symbol`` + ``register_version`` for every symbol."""
    from brain_lib.registry import register_version
    from brain_lib.training import train_symbol

    start = time.perf_counter()
    prepare(ctx)
    for symbol in ctx.symbols:
        candles = load_window(ctx, symbol)
        result = train_symbol(candles, exchange=EXCHANGE, symbol=symbol, config=ctx.config)
        with connect(ctx.dsn) as conn:
            register_version(conn, result, artifact_root=ctx.artifact_root)
    return time.perf_counter() - start


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


def time_stages(ctx: Context) -> dict[str, float]:
    """The pipeline once more, each stage of ``train_symbol`` timed on its own."""
    from brain_lib import training as tr
    from brain_lib.registry import register_version

    cfg = ctx.config
    watch = Stopwatch(STAGES)
    with watch("load"):
        prepare(ctx)
    for symbol in ctx.symbols:
        with watch("load"):
            candles = load_window(ctx, symbol)
        with watch("features"):
            X, y = tr.build_dataset(candles, cfg.label_horizon)
        with watch("walk-forward"):
            oos, folds = tr.walk_forward_predictions(X, y, cfg)
        with watch("backtest+metrics"):
            bt, metrics = tr.evaluate_predictions(oos, candles, cfg)
        with watch("final fit"):
            model = tr.fit_final(X, y, cfg)
        with watch("manifest"):
            result = tr.assemble_result(
                candles=candles,
                exchange=EXCHANGE,
                symbol=symbol,
                config=cfg,
                X=X,
                oos=oos,
                folds=folds,
                backtest=bt,
                metrics=metrics,
                model=model,
            )
        with watch("registry write"), connect(ctx.dsn) as conn:
            register_version(conn, result, artifact_root=ctx.artifact_root)
    out = dict(watch.seconds)
    out["total"] = sum(out[s] for s in STAGES)
    return out


# ---------------------------------------------------------------------- Prefect


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


# ----------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values)


def runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


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


def run(args: argparse.Namespace) -> int:
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
        t_import, _ = timed(lambda: __import__("flows.daily_retrain"))
        from prefect.server.api.server import SubprocessASGIServer

        from brain_lib.config import Settings
        from flows.daily_retrain import _config, daily_retrain
        from flows.runner import run_flow
        from flows.tasks import load_candles

        settings = Settings()
        config = _config(settings, "lightgbm")
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
            symbols=symbols,
            lookback_days=args.lookback_days,
            load=load_candles.fn,
        )

        noop = noop_flow()
        server = SubprocessASGIServer()
        t_startup, _ = timed(lambda: run_flow(noop))
        t_noop, _ = timed(lambda: run_flow(noop))

        windows = {s: load_window(ctx, s) for s in symbols}
        jobs = fit_jobs(windows, config)
        n_rows = {s: len(f) for s, f in windows.items()}
        print(
            f"windows: {n_rows} candles; {len(jobs)} LightGBM fits "
            f"({config.n_splits} folds + 1 final per symbol)"
        )

        fits: list[dict[str, float]] = []
        pipeline: list[float] = []
        stages: list[dict[str, float]] = []
        flow: list[float] = []
        flow_recorded: list[float] = []
        tasks: list[dict[str, float]] = []
        for i in range(args.repeats):
            fits.append(time_bare_fits(jobs))
            pipeline.append(time_pipeline(ctx))
            stages.append(time_stages(ctx))
            seconds, state = timed(
                lambda: run_flow(
                    daily_retrain,
                    symbols=symbols,
                    exchange=EXCHANGE,
                    timeframe=TIMEFRAME,
                    lookback_days=args.lookback_days,
                    build_marts=False,
                )
            )
            if not state.is_completed():
                print(f"daily-retrain ended {state.name}: {state.message}", file=sys.stderr)
                return 1
            flow.append(seconds)
            recorded, by_task = flow_run_times(state.state_details.flow_run_id)
            flow_recorded.append(recorded)
            tasks.append(by_task)
            print(
                f"repeat {i + 1}: fits {fits[-1]['total']:.2f} s, pipeline {pipeline[-1]:.2f} s,"
                f" staged pipeline {stages[-1]['total']:.2f} s, flow {flow[-1]:.2f} s"
                f" (flow run recorded by Prefect: {recorded:.2f} s)"
            )

        t_dbt = float("nan")
        if not args.no_dbt:
            t_dbt, _ = timed(
                lambda: run_dbt(
                    ["build"], dsn=dsn, project_dir=REPO / "dbt_brain", state_dir=tmp / "dbt"
                )
            )

        t_fits = med([f["total"] for f in fits])
        t_pipe = med(pipeline)
        t_flow = med(flow)
        overhead = t_flow / t_fits - 1
        verdict = "met" if overhead <= TARGET_OVERHEAD else "MISSED"
        print()
        print(f"{'measure (seconds; median of ' + str(args.repeats) + ')':<48} {'value':>8}  runs")
        fold_fits = [f["fold"] for f in fits]
        final_fits = [f["final"] for f in fits]
        target = f"target <= {TARGET_OVERHEAD:.2f}: {verdict}"
        rows: list[tuple[str, float, str]] = [
            ("T_fits (bare lightgbm.train, all fits)", t_fits, runs([f["total"] for f in fits])),
            ("  of which walk-forward folds", med(fold_fits), runs(fold_fits)),
            ("  of which final fits", med(final_fits), runs(final_fits)),
            ("T_pipeline (load+train_symbol+register)", t_pipe, runs(pipeline)),
            ("T_flow_compute (run_flow, no dbt)", t_flow, runs(flow)),
            ("  flow run time recorded by Prefect", med(flow_recorded), runs(flow_recorded)),
            ("overhead = T_flow_compute/T_fits - 1", overhead, target),
            ("pipeline overhead = T_pipeline/T_fits - 1", t_pipe / t_fits - 1, ""),
            ("Prefect overhead = (T_flow - T_pipeline)/T_fits", (t_flow - t_pipe) / t_fits, ""),
            ("T_import (prefect + flow modules)", t_import, "once"),
            ("T_startup (temporary server + first noop flow)", t_startup, "once"),
            ("T_noop (a later noop flow via run_flow)", t_noop, "once"),
            ("T_dbt (dbt build)", t_dbt, "skipped" if args.no_dbt else "once"),
        ]
        for label, value, extra in rows:
            print(f"{label:<48} {value:8.2f}  {extra}")

        print()
        print(f"{'stage of the plain pipeline (all symbols)':<48} {'median':>8}  runs")
        for stage in (*STAGES, "total"):
            values = [s[stage] for s in stages]
            print(f"{stage:<48} {med(values):8.2f}  {runs(values)}")
        wf_extra = med([s["walk-forward"] for s in stages]) - med([f["fold"] for f in fits])
        final_extra = med([s["final fit"] for s in stages]) - med([f["final"] for f in fits])
        print(f"{'walk-forward minus its bare fits':<48} {wf_extra:8.2f}")
        print(f"{'final fit minus its bare fits':<48} {final_extra:8.2f}")

        print()
        print(f"{'Prefect task runs, summed (recorded)':<48} {'median':>8}  runs")
        names = sorted({name for t in tasks for name in t})
        for name in names:
            values = [t.get(name, 0.0) for t in tasks]
            print(f"{name:<48} {med(values):8.2f}  {runs(values)}")
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
