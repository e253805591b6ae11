"""Flow ``daily-retrain``: one model per symbol × model type, judged out of sample.

First, each symbol's window passes the Great Expectations gate: a blocking failure
keeps that symbol out of the run (its champion stays; the reasons are in the summary
and in ``raw.data_quality_results``), and quarantined candles are never trained on.
Then per symbol and model type, as mapped tasks: load candles → features and labels →
purged walk-forward → backtest and metrics → final fit → feature importance →
artifact → judged against the champion → version, metrics, importance, event and
champion pointer (one transaction). Symbols marked for retraining by
nightly-feature-analysis (``raw.retrain_requests``) join the run; their requests are
marked served once every model type of the symbol has landed. Then ``dbt build`` of
the marts that read what the run wrote (:data:`MARTS`: scores, champions, importance,
quality; not the market features, which only collect-market-data changes) and a table
artifact of the run's metrics. A symbol that fails does not sink
the others; the run ends Failed, with a per-symbol summary, when any did, and
Completed named Blocked when data quality kept a symbol out.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import product
from typing import Any

from prefect import State, flow, get_run_logger, unmapped
from prefect.artifacts import create_table_artifact
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed

from brain_lib.config import Settings, check_retrain_setup
from brain_lib.runners import SettingsTaskRunner
from brain_lib.training import TrainingConfig
from flows.tasks import (
    backtest_and_score,
    build_training_set,
    check_model_metrics,
    compute_importance,
    consume_retrains,
    dbt_build,
    fit_final_model,
    land_version,
    load_candles,
    pending_retrains,
    prepare_warehouse,
    quality_gate,
    raise_for_empty,
    render_quality_docs,
    replay_spool,
    save_version_artifact,
    walk_forward,
)

# The marts downstream of the tables a run writes (versions, metrics, importance,
# events, champions, quality results) with their parents, and the selector's daily mart
# (raw.model_selections is small and no other flow rebuilds it). Not
# fct_features_hourly, which only collect-market-data's data changes: at 100 symbols x
# 2 years its build alone takes 67 s (bench/load.py), and the full build 74 s.
MARTS = (
    "+model_composite_scores +best_model_per_symbol +model_champion_history "
    "+feature_importance_trends +feature_shifts +feature_drift +data_quality_daily "
    "+model_selection_daily"
)

SUMMARY_METRICS = (
    "sharpe",
    "sortino",
    "hit_ratio",
    "profit_factor",
    "max_drawdown",
    "calmar",
    "dsr",
    "buy_hold_sharpe",
    "excess_sharpe",
    "exposure",
    "turnover_per_bar",
    "round_trips",
    "avg_holding_bars",
)


def _first_failure(futures: list[PrefectFuture[Any]]) -> str:
    """The message of the earliest stage of one symbol that did not complete."""
    for fut in futures:
        state = fut.state
        if state.is_failed() or state.is_crashed():
            try:
                state.result(raise_on_failure=True)
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
            return state.message or state.name or "failed"
    return "did not complete"


def _rounded(value: Any) -> float | None:
    """A metric for the summary table: 4 decimals; undefined (None, NaN) is None."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 4)


def _config(settings: Settings, model_type: str, params: dict[str, Any]) -> TrainingConfig:
    return settings.training_config(model_type, params)


@flow(name="daily-retrain", log_prints=True, task_runner=SettingsTaskRunner())
def daily_retrain(
    symbols: list[str] | None = None,
    exchange: str | None = None,
    timeframe: str | None = None,
    model_types: list[str] | None = None,
    lookback_days: int | None = None,
    end: datetime | None = None,
    fee_bps: float | None = None,
    degradation_threshold: float | None = None,
    model_params: dict[str, dict[str, Any]] | None = None,
    build_marts: bool = True,
) -> State:
    """Retrain every symbol × model type once; unset parameters come from ``BRAIN_*`` settings.

    ``model_params`` maps a model type to hyperparameters over its defaults;
    ``degradation_threshold`` is how much worse than the champion a challenger may be.
    """
    logger = get_run_logger()
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "symbols": symbols,
            "exchange": exchange,
            "timeframe": timeframe,
            "model_types": model_types,
            "lookback_days": lookback_days,
            "fee_bps": fee_bps,
            "degradation_threshold": degradation_threshold,
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    raise_for_empty(settings.symbols)
    # splits against the window, model types, artifact root: refused before anything runs
    check_retrain_setup(settings)
    flow_run = getattr(get_run_context(), "flow_run", None)
    run_id = str(flow_run.id) if flow_run is not None else None

    started = datetime.now(UTC)
    dsn = prepare_warehouse(settings)
    spool_dir = settings.home / "spool"
    replayed = replay_spool(dsn, spool_dir)
    if replayed.landed or replayed.failed:
        logger.info(
            "spool: %d landed, %d failed %s",
            len(replayed.landed),
            len(replayed.failed),
            replayed.failed or "",
        )
    # symbols that nightly-feature-analysis marked (a shifted feature ranking) are
    # trained in this run even when they are not in its list
    requests = pending_retrains(dsn, settings.exchange, settings.timeframe)
    run_symbols = list(settings.symbols)
    for req in requests:
        logger.info("retraining %s as requested: %s", req["symbol"], req["reason"])
        if req["symbol"] not in run_symbols:
            run_symbols.append(req["symbol"])
    # Great Expectations on every symbol's window first: a blocking failure keeps the
    # symbol (and its champion) out of this run; the others train
    from brain_lib.quality import data_docs_dir

    docs_dir = data_docs_dir(home=settings.home)
    gates = quality_gate.map(
        unmapped(dsn),
        unmapped(settings.exchange),
        run_symbols,
        unmapped(settings.timeframe),
        unmapped(settings.lookback_days),
        unmapped(end),
        unmapped(run_id),
        unmapped(docs_dir),
    )
    gates.wait()
    blocked: dict[str, str] = {}
    verdicts: list[dict[str, Any]] = []
    for symbol, gate in zip(run_symbols, gates, strict=True):
        if not gate.state.is_completed():
            # nothing learns from data nobody could check
            blocked[symbol] = f"data-quality check did not run: {_first_failure([gate])}"
            continue
        verdict = gate.result()
        verdicts.append(verdict)
        if not verdict["ok"]:
            blocked[symbol] = "blocked by data quality: " + "; ".join(verdict["reasons"])
    for symbol, why in blocked.items():
        logger.error("%s not trained, its champion stays: %s", symbol, why)
    # one Data Docs build for all the gates (GX recompiles its templates per build)
    docs_index = render_quality_docs(docs_dir, verdicts)
    if docs_index:
        logger.info("data-quality Data Docs: %s", docs_index)
    pairs = [(s, mt) for s, mt in product(run_symbols, settings.model_types) if s not in blocked]
    syms = [s for s, _ in pairs]
    params = model_params or {}
    configs = [_config(settings, mt, dict(params.get(mt, {}))) for _, mt in pairs]

    candles = load_candles.map(
        unmapped(dsn),
        unmapped(settings.exchange),
        syms,
        unmapped(settings.timeframe),
        unmapped(settings.lookback_days),
        unmapped(end),
        configs,
    )
    dataset = build_training_set.map(candles, configs)
    oos = walk_forward.map(dataset, configs)
    scored = backtest_and_score.map(oos, dataset, candles, configs)
    model = fit_final_model.map(dataset, configs)
    importance = compute_importance.map(oos, scored, dataset, candles, configs)
    records = save_version_artifact.map(
        unmapped(settings.artifact_location),
        unmapped(run_id),
        unmapped(settings.exchange),
        syms,
        configs,
        candles,
        dataset,
        oos,
        scored,
        model,
        importance,
    )
    registered = land_version.map(
        unmapped(dsn),
        records,
        candles,
        configs,
        unmapped(settings.judgement_rules()),
        unmapped(spool_dir),
    )
    registered.wait()

    rows: list[dict[str, Any]] = []
    for i, (symbol, model_type) in enumerate(pairs):
        fut = registered[i]
        row: dict[str, Any] = {"symbol": symbol, "model_type": model_type}
        if fut.state.is_completed():
            out = fut.result()
            row.update(
                {k: out[k] for k in ("status", "version_id", "decision", "champion", "reason")}
            )
            row["error"] = ""
            row["composite"] = _rounded(out.get("composite"))
            row.update({k: _rounded(out.get(k)) for k in SUMMARY_METRICS})
        else:
            stages = [candles[i], dataset[i], oos[i], scored[i], model[i], importance[i]]
            stages += [records[i], fut]
            row.update(status="failed", version_id="", decision="", champion="", reason="")
            row["error"] = _first_failure(stages)
            row["composite"] = None
            row.update({k: None for k in SUMMARY_METRICS})
        rows.append(row)

    for symbol, why in blocked.items():
        for model_type in settings.model_types:
            row = {"symbol": symbol, "model_type": model_type, "status": "blocked"}
            row.update(version_id="", decision="", champion="", reason="", error=why)
            row["composite"] = None
            row.update({k: None for k in SUMMARY_METRICS})
            rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    requested = {req["symbol"] for req in requests}
    served = sorted(
        sym for sym in requested if all(r["status"] == "ok" for r in rows if r["symbol"] == sym)
    )
    if served:
        consume_retrains(dsn, settings.exchange, settings.timeframe, served, run_id)
    spooled = [r for r in rows if r["status"] == "spooled"]
    failed = [r for r in rows if r["status"] == "failed"]
    blocked_rows = [r for r in rows if r["status"] == "blocked"]
    if ok:
        summary = check_model_metrics(
            dsn, settings.exchange, settings.timeframe, started, run_id, docs_dir
        )
        (logger.info if "passed" in summary else logger.warning)("data quality: %s", summary)
    if build_marts and ok and not spooled:
        logger.info(
            dbt_build(
                dsn,
                settings.dbt_dir,
                settings.home / "dbt",
                select=MARTS,
                indirect_selection="cautious",
            )
        )
    create_table_artifact(
        key="daily-retrain-metrics",
        table=rows,
        description=f"daily-retrain on {settings.exchange} {settings.timeframe}: "
        f"{len(ok)} landed, {len(spooled)} spooled, {len(failed)} failed, "
        f"{len(blocked_rows)} blocked by data quality"
        + (f" (Data Docs: {docs_index})" if docs_index else ""),
    )
    for r in rows:
        if r["status"] not in ("failed", "blocked"):
            logger.info(
                "%s %s: version %s %s (%s) sharpe=%s dsr=%s exposure=%s buy_hold_sharpe=%s",
                r["symbol"],
                r["model_type"],
                r["version_id"],
                r["decision"] or r["status"],
                r["reason"],
                r["sharpe"],
                r["dsr"],
                r["exposure"],
                r["buy_hold_sharpe"],
            )
        else:
            logger.error("%s %s %s: %s", r["symbol"], r["model_type"], r["status"], r["error"])
    if failed:
        names = ", ".join(f"{r['symbol']}/{r['model_type']}" for r in failed)
        return Failed(message=f"{len(failed)} of {len(rows)} failed: {names}", data=rows)
    if blocked_rows:
        names = ", ".join(sorted(blocked))
        return Completed(
            name="Blocked",
            message=f"{len(ok)} model versions trained; blocked by data quality: {names}",
            data=rows,
        )
    if spooled:
        return Completed(
            name="Spooled",
            message=f"{len(spooled)} record sets spooled (warehouse unreachable); "
            "the next run or `brain spool replay` lands them",
            data=rows,
        )
    return Completed(message=f"{len(ok)} model versions trained", data=rows)


if __name__ == "__main__":
    daily_retrain()
