"""Flow ``nightly-feature-analysis``: what the champions rely on now, and did it shift?

For every champion (one mapped task each): reload its artifact (hash verified),
recompute SHAP, permutation and correlation importance on the most recent window, and
bin every feature's values in the training and the recent window; write both in one
transaction (:mod:`brain_lib.analysis`). Then ``dbt build`` of the marts
``feature_importance_trends``, ``feature_shifts`` and ``feature_drift``, read the flags
from them (the rules live in SQL, once), mark every flagged symbol for retraining in
``raw.retrain_requests`` (the next ``daily-retrain`` reads it), and publish a markdown
artifact with the flagged symbols and features. A champion that fails is reported and
does not stop the others; the run then ends Failed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import State, flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.states import Completed, Failed

from brain_lib import analysis, warehouse
from brain_lib.config import Settings
from brain_lib.runners import SettingsTaskRunner
from flows.progress import wait_logging_progress
from flows.tasks import IO_TASK, dbt_build, prepare_warehouse

MARTS = "+feature_importance_trends +feature_shifts +feature_drift"


@task(**IO_TASK)
def find_champions(
    dsn: str, symbols: list[str] | None, exchange: str | None, timeframe: str | None
) -> list[analysis.Champion]:
    """The current champions to analyse."""
    with warehouse.connect(dsn) as conn:
        return analysis.list_champions(
            conn, symbols=symbols, exchange=exchange, timeframe=timeframe
        )


@task(cache_policy=NO_CACHE, persist_result=False)
def analyze_and_record(
    dsn: str,
    champion: analysis.Champion,
    end: datetime | None,
    window_days: int,
    max_rows: int,
    n_repeats: int,
    seed: int,
) -> dict[str, Any]:
    """Recompute one champion's importance and feature distributions, and store them."""
    with warehouse.connect(dsn) as conn:
        result = analysis.analyze_champion(
            conn,
            champion,
            end=end,
            window_days=window_days,
            max_rows=max_rows,
            n_repeats=n_repeats,
            seed=seed,
        )
        analysis.record_nightly(conn, result)
    return result.summary()


@task(**IO_TASK)
def read_flags(dsn: str, version_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The latest shift comparisons and the drifting features of ``version_ids``."""
    with warehouse.connect(dsn) as conn:
        return analysis.latest_flags(conn, version_ids)


@task(**IO_TASK)
def mark_for_retraining(
    dsn: str, shifts: list[dict[str, Any]], run_id: str | None
) -> list[dict[str, Any]]:
    """One pending retrain request per flagged symbol; returns the symbols marked."""
    marked: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    with warehouse.connect(dsn) as conn:
        for row in shifts:
            key = (row["exchange"], row["symbol"], row["timeframe"])
            if not row["symbol_shift_flag"] or not row["shift_flag"] or key in seen:
                continue
            seen.add(key)
            reason = (
                f"feature shift ({row['importance_method']}, {row['model_type']} "
                f"{row['version_id']}): {row['shift_reason']}"
            )
            new = analysis.request_retrain(
                conn,
                exchange=row["exchange"],
                symbol=row["symbol"],
                timeframe=row["timeframe"],
                reason=reason,
                version_id=row["version_id"],
                run_id=run_id,
            )
            marked.append({"symbol": row["symbol"], "reason": reason, "new_request": new})
    return marked


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def report_markdown(
    summaries: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    flags: dict[str, list[dict[str, Any]]],
    marked: list[dict[str, Any]],
    window_days: int,
) -> str:
    """The run's markdown artifact: flagged symbols and features first."""
    shifts = [r for r in flags.get("shifts", []) if r["shift_flag"]]
    drift = flags.get("drift", [])
    lines = [f"# Nightly feature analysis (last {window_days} days)", ""]
    lines.append(
        f"{len(summaries)} champions analysed, {len(failures)} failed, "
        f"{len({r['symbol'] for r in shifts})} symbols with a shifted ranking, "
        f"{len(drift)} drifting features, {len(marked)} symbols marked for retraining."
    )
    lines += ["", "## Marked for retraining", ""]
    lines += [f"- **{m['symbol']}**: {m['reason']}" for m in marked] or ["None."]
    lines += ["", "## Shifted rankings", ""]
    if shifts:
        lines += [
            "| symbol | model | method | rank corr | top-k overlap | moved features | why |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {_fmt(r['symbol'])} | {_fmt(r['model_type'])} | {_fmt(r['importance_method'])} "
            f"| {_fmt(r['rank_correlation'])} | {_fmt(r['top_k_jaccard'])} "
            f"| {_fmt(r['moved_features'])} | {_fmt(r['shift_reason'])} |"
            for r in shifts
        ]
    else:
        lines.append("None.")
    lines += ["", "## Drifting features (PSI, training vs recent window)", ""]
    if drift:
        lines += ["| symbol | model | feature | PSI | level |", "|---|---|---|---|---|"]
        lines += [
            f"| {_fmt(r['symbol'])} | {_fmt(r['model_type'])} | {_fmt(r['feature_name'])} "
            f"| {_fmt(r['psi'])} | {_fmt(r['drift_level'])} |"
            for r in drift
        ]
    else:
        lines.append("None.")
    if failures:
        lines += ["", "## Failed", ""]
        lines += [
            f"- {f['symbol']} {f['model_type']} {f['version_id']}: {f['error']}" for f in failures
        ]
    return "\n".join(lines) + "\n"


@flow(name="nightly-feature-analysis", log_prints=True, task_runner=SettingsTaskRunner())
def nightly_feature_analysis(
    symbols: list[str] | None = None,
    exchange: str | None = None,
    timeframe: str | None = None,
    window_days: int = analysis.DEFAULT_WINDOW_DAYS,
    end: datetime | None = None,
    max_rows: int = 2000,
    n_repeats: int = 3,
    build_marts: bool = True,
    mark_retrain: bool = True,
    dbt_vars: dict[str, Any] | None = None,
) -> State:
    """Analyse every champion (of ``symbols``, when given) on its last ``window_days``.

    ``dbt_vars`` overrides the shift and drift thresholds of dbt_project.yml for this
    run (e.g. ``{"feature_shift_min_rank_corr": 0.3}``).
    """
    logger = get_run_logger()
    settings = Settings()
    flow_run = getattr(get_run_context(), "flow_run", None)
    run_id = str(flow_run.id) if flow_run is not None else None

    dsn = prepare_warehouse(settings)
    champions = find_champions(dsn, symbols, exchange, timeframe)
    if not champions:
        logger.warning("no champions to analyse (symbols=%s)", symbols)
        return Completed(message="no champions to analyse", data=[])
    futures = analyze_and_record.map(
        unmapped(dsn),
        champions,
        unmapped(end),
        unmapped(window_days),
        unmapped(max_rows),
        unmapped(n_repeats),
        unmapped(settings.seed),
    )
    wait_logging_progress(
        futures,
        [f"{c.symbol} {c.model_type}" for c in champions],
        logger,
        "champions analysed",
        lambda s: f"{s['recent_rows']} recent rows, {s['methods']}",
    )
    summaries: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for champion, fut in zip(champions, futures, strict=True):
        if fut.state.is_completed():
            summaries.append(fut.result())
            continue
        try:
            fut.result(raise_on_failure=True)
            error = fut.state.message or "did not complete"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        failures.append(
            {
                "symbol": champion.symbol,
                "model_type": champion.model_type,
                "version_id": champion.version_id,
                "error": error,
            }
        )
        logger.error("%s %s: analysis failed: %s", champion.symbol, champion.model_type, error)

    flags: dict[str, list[dict[str, Any]]] = {"shifts": [], "drift": []}
    marked: list[dict[str, Any]] = []
    if build_marts and summaries:
        logger.info(
            dbt_build(
                dsn,
                settings.dbt_dir,
                settings.home / "dbt",
                select=MARTS,
                indirect_selection="cautious",
                dbt_vars=dbt_vars,
            )
        )
        flags = read_flags(dsn, [s["version_id"] for s in summaries])
        if mark_retrain:
            marked = mark_for_retraining(dsn, flags["shifts"], run_id)
    markdown = report_markdown(summaries, failures, flags, marked, window_days)
    create_markdown_artifact(
        key="nightly-feature-analysis",
        markdown=markdown,
        description=f"{len(marked)} symbols marked for retraining",
    )
    for m in marked:
        logger.warning("%s marked for retraining: %s", m["symbol"], m["reason"])
    data = {"analysed": summaries, "failed": failures, "marked": marked, **flags}
    if failures:
        names = ", ".join(f"{f['symbol']}/{f['model_type']}" for f in failures)
        return Failed(message=f"{len(failures)} of {len(champions)} failed: {names}", data=data)
    return Completed(
        message=f"{len(summaries)} champions analysed, {len(marked)} symbols marked",
        data=data,
    )


if __name__ == "__main__":
    nightly_feature_analysis()
