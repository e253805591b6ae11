"""Prefect tasks shared by Brain's flows: thin wrappers around brain_lib.

I/O tasks retry transient failures; pure computation never retries. No task caches or
persists its result (``NO_CACHE``, ``persist_result=False``): DataFrames and fitted
models are never pickled into Prefect's result store, a warehouse URL with a password
never lands in a file, and model artifacts go only through ``brain_lib.registry``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from brain_lib import registry, spool, training, warehouse
from brain_lib.config import Settings
from brain_lib.dbt import ensure_raw_schema, run_dbt
from brain_lib.errors import DataError, WarehouseUnavailableError
from brain_lib.models import Model

IO_RETRY_DELAYS: list[float] = [2, 5, 15]
LAND_RETRIES = 3


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may pass by itself: an unreachable warehouse, a dropped connection."""
    try:
        state.result()
    except (WarehouseUnavailableError, ConnectionError, TimeoutError):
        return True
    except Exception:
        return False
    return False


IO_TASK: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "retries": 3,
    "retry_delay_seconds": IO_RETRY_DELAYS,
    "retry_condition_fn": retry_transient,
}
"""Options of every task that does I/O: never cached or persisted, retried on what may
pass by itself (an unreachable warehouse, a dropped connection)."""


@task(**IO_TASK)
def prepare_warehouse(settings: Settings) -> str:
    """Start the embedded warehouse if needed and make sure the raw schema exists."""
    dsn = warehouse.resolve_dsn(settings)
    warehouse.ensure_reachable(dsn)
    ensure_raw_schema(dsn, project_dir=settings.dbt_dir, state_dir=settings.home / "dbt")
    return dsn


def training_window(
    conn: Any, exchange: str, symbol: str, timeframe: str, lookback_days: int, end: datetime | None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``[start, end)`` of a symbol's training window: ``lookback_days`` up to ``end``, or
    up to and including its newest stored candle; (None, None) when it has none."""
    if end is None:
        row = conn.execute(
            "select max(ts) from raw.ohlcv where exchange = %s and symbol = %s and timeframe = %s",
            (exchange, symbol, timeframe),
        ).fetchone()
        last = row[0] if row else None
        end_ts = pd.Timestamp(last) + pd.Timedelta(microseconds=1) if last is not None else None
    else:
        end_ts = pd.Timestamp(end)
    start_ts = end_ts - pd.Timedelta(days=lookback_days) if end_ts is not None else None
    return start_ts, end_ts


@task(**IO_TASK)
def quality_gate(
    dsn: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    lookback_days: int,
    end: datetime | None,
    run_id: str | None,
    docs_dir: Path,
) -> dict[str, Any]:
    """Great Expectations on the symbol's training window before anything trains on it.

    Records every result in ``raw.data_quality_results`` and quarantines failing rows
    (:func:`brain_lib.quality.gate_training_window`). ``ok`` False: a blocking rule
    failed, do not train the symbol in this run. A symbol with no candles passes here:
    loading it fails later with the clearer "unknown symbol" error. The result is kept
    for the Data Docs site, which :func:`render_quality_docs` renders once for all the
    run's gates.
    """
    from brain_lib.quality import gate_training_window

    with warehouse.connect(dsn) as conn:
        start_ts, end_ts = training_window(conn, exchange, symbol, timeframe, lookback_days, end)
    if end_ts is None:
        return {"symbol": symbol, "ok": True, "reasons": [], "quarantined": 0, "docs_keys": []}
    decision = gate_training_window(
        dsn,
        exchange,
        symbol,
        timeframe,
        start_ts,
        end_ts,
        run_id=run_id,
        docs_dir=docs_dir,
        render_docs=False,
    )
    return {
        "symbol": symbol,
        "ok": decision.ok,
        "reasons": list(decision.reasons),
        "quarantined": decision.quarantined,
        "summary": decision.report.describe(),
        "suite": decision.report.suite,
        "docs_keys": [list(key) for key in decision.report.docs_keys],
    }


@task(**IO_TASK)
def render_quality_docs(docs_dir: Path, gates: list[dict[str, Any]]) -> str | None:
    """One Data Docs build for the validations of all the gates (``quality_gate``);
    the index page, or None when nothing was kept."""
    from brain_lib.quality import render_data_docs

    index = render_data_docs(
        docs_dir,
        [key for g in gates for key in g["docs_keys"]],
        [g["suite"] for g in gates if g["docs_keys"]],
    )
    return str(index) if index is not None else None


@task(**IO_TASK)
def check_model_metrics(
    dsn: str, exchange: str, timeframe: str, since: datetime, run_id: str | None, docs_dir: Path
) -> str:
    """The model-metrics suite (finite, within their definitions, plausible) on the
    metrics written since ``since``; results recorded like every other validation."""
    from brain_lib.quality import run_quality_checks

    (report,) = run_quality_checks(
        dsn,
        tables=["model_metrics"],
        exchange=exchange,
        timeframe=timeframe,
        start=since,
        run_id=run_id,
        docs_dir=docs_dir,
    )
    return report.describe()


@task(**IO_TASK)
def load_candles(
    dsn: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    lookback_days: int,
    end: datetime | None,
    config: training.TrainingConfig,
) -> pd.DataFrame:
    """Load the training window of one symbol (ending at ``end`` or its newest candle),
    with its derivatives features when it has any (:func:`training.load_training_candles`)."""
    with warehouse.connect(dsn) as conn:
        start_ts, end_ts = training_window(conn, exchange, symbol, timeframe, lookback_days, end)
        candles = training.load_training_candles(
            conn, exchange=exchange, symbol=symbol, timeframe=timeframe, start=start_ts, end=end_ts
        )
    training.check_enough_rows(candles, exchange, symbol, config)
    return candles


@task(cache_policy=NO_CACHE, persist_result=False)
def build_training_set(
    candles: pd.DataFrame, config: training.TrainingConfig
) -> tuple[pd.DataFrame, pd.Series]:
    """Features and labels on the bar grid, warm-up and unlabeled rows removed."""
    return training.build_dataset(candles, config.label_horizon, config.timeframe)


@task(cache_policy=NO_CACHE, persist_result=False)
def walk_forward(
    dataset: tuple[pd.DataFrame, pd.Series], config: training.TrainingConfig
) -> training.WalkForward:
    """Purged, embargoed walk-forward: out-of-sample predictions per test fold."""
    X, y = dataset
    return training.walk_forward_predictions(X, y, config)


@task(cache_policy=NO_CACHE, persist_result=False)
def backtest_and_score(
    wf: training.WalkForward,
    dataset: tuple[pd.DataFrame, pd.Series],
    candles: pd.DataFrame,
    config: training.TrainingConfig,
) -> training.Evaluation:
    """Fit each fold's policy in sample, trade the scored folds with costs; metrics."""
    X, y = dataset
    return training.evaluate_walk_forward(wf, X, y, candles, config)


@task(cache_policy=NO_CACHE, persist_result=False)
def fit_final_model(
    dataset: tuple[pd.DataFrame, pd.Series], config: training.TrainingConfig
) -> Model:
    """Refit on the whole window: the model the version stores."""
    X, y = dataset
    return training.fit_final(X, y, config)


@task(cache_policy=NO_CACHE, persist_result=False)
def compute_importance(
    wf: training.WalkForward,
    evaluation: training.Evaluation,
    dataset: tuple[pd.DataFrame, pd.Series],
    candles: pd.DataFrame,
    config: training.TrainingConfig,
) -> list[dict[str, Any]]:
    """SHAP, permutation and correlation importance of the new version, out of sample."""
    X, y = dataset
    return training.version_importance(wf, evaluation, X, y, candles, config)


@task(cache_policy=NO_CACHE, persist_result=False)
def save_version_artifact(
    artifact_root: str,
    run_id: str | None,
    exchange: str,
    symbol: str,
    config: training.TrainingConfig,
    candles: pd.DataFrame,
    dataset: tuple[pd.DataFrame, pd.Series],
    wf: training.WalkForward,
    evaluation: training.Evaluation,
    model: Model,
    importance: list[dict[str, Any]],
) -> registry.ChallengerRecord:
    """Write the artifact and its manifest (native format, sha256) under a new version id."""
    result = training.assemble_result(
        candles=candles,
        exchange=exchange,
        symbol=symbol,
        config=config,
        X=dataset[0],
        walk_forward=wf,
        evaluation=evaluation,
        model=model,
    )
    version_id = registry.new_version_id(symbol, config.model_type)
    stored = registry.save_artifact(result, artifact_root, version_id)
    return registry.record_from_result(result, stored, run_id, importance)


@task(
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=LAND_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_transient,
)
def land_version(
    dsn: str,
    record: registry.ChallengerRecord,
    candles: pd.DataFrame,
    config: training.TrainingConfig,
    rules: registry.JudgementRules,
    spool_dir: Path,
) -> dict[str, Any]:
    """Judge against the champion and land version, metrics and event in one transaction.

    When the warehouse stays unreachable through every retry, the record set goes to
    the local spool instead (replayed by the next run or ``brain spool replay``).
    """
    import psycopg
    from prefect.runtime import task_run

    try:
        with warehouse.connect(dsn) as conn:
            decision = registry.judge_and_record(
                conn, record, candles=candles, config=config, rules=rules
            )
    except (WarehouseUnavailableError, psycopg.OperationalError) as exc:
        if task_run.run_count <= LAND_RETRIES:
            raise WarehouseUnavailableError(str(exc).splitlines()[0]) from None
        path = spool.spool_record(
            spool_dir,
            record,
            config=config,
            rules=rules,
            candles_start=candles.index[0],
            candles_end=candles.index[-1],
            fingerprint=training.dataset_fingerprint(candles),
        )
        return {
            "version_id": record.version_id,
            "status": "spooled",
            "spool_file": str(path),
            "decision": "",
            "champion": "",
            "reason": "warehouse unreachable",
            **record.metrics,
        }
    return {
        "version_id": record.version_id,
        "status": "ok",
        "decision": decision.action,
        "champion": decision.serving_version_id or "",
        "reason": decision.reason,
        "degradation": decision.degradation,
        "composite": decision.challenger_score,
        **record.metrics,
    }


@task(**IO_TASK)
def replay_spool(dsn: str, spool_dir: Path) -> spool.ReplayReport:
    """Land the record sets an earlier run could not write."""
    return spool.replay(dsn, spool_dir)


@task(cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=5)
def dbt_build(
    dsn: str,
    project_dir: Path,
    state_dir: Path,
    select: str | None = None,
    indirect_selection: str | None = None,
    dbt_vars: dict[str, Any] | None = None,
) -> str:
    """``dbt build`` of the warehouse (marts and their tests), or of ``select`` only.

    ``indirect_selection="cautious"`` runs only the tests whose every parent is
    selected (a partial build must not run a test that reads an unselected mart).
    ``dbt_vars`` overrides vars of dbt_project.yml for this build only.
    """
    args = ["build"] + (["--select", select] if select else [])
    if indirect_selection:
        args += ["--indirect-selection", indirect_selection]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    result = run_dbt(args, dsn=dsn, project_dir=project_dir, state_dir=state_dir)
    summary = [line for line in result.output.splitlines() if "Done. PASS=" in line]
    return summary[-1].strip() if summary else "dbt build finished"


@task(**IO_TASK)
def pending_retrains(dsn: str, exchange: str, timeframe: str) -> list[dict[str, Any]]:
    """Symbols that nightly-feature-analysis marked for retraining, not served yet."""
    from brain_lib.analysis import pending_retrain_requests

    with warehouse.connect(dsn) as conn:
        return pending_retrain_requests(conn, exchange=exchange, timeframe=timeframe)


@task(**IO_TASK)
def consume_retrains(
    dsn: str, exchange: str, timeframe: str, symbols: list[str], run_id: str | None
) -> int:
    """Mark the retrain requests of ``symbols`` as served by this run."""
    from brain_lib.analysis import consume_retrain_requests

    with warehouse.connect(dsn) as conn:
        return consume_retrain_requests(
            conn, exchange=exchange, timeframe=timeframe, symbols=symbols, run_id=run_id
        )


def raise_for_empty(symbols: list[str]) -> None:
    if not symbols:
        raise DataError("no symbols to train: pass --symbols or set BRAIN_SYMBOLS")
