"""Flow ``collect-market-data`` (hourly): exchange x symbol x dataset into the raw tables.

One mapped task per stream (:func:`brain_lib.market.collect.collect_stream`): OHLCV,
funding rate history, open interest history and liquidations from binance (spot and
USD-M perpetuals), bybit (linear perpetuals) and okx (swaps) through ccxt, each stream
resuming from its newest stored stamp. Streams of one exchange share one ccxt object
(its rate limiter) and take turns; exchanges run side by side. A stream that fails
(unknown symbol, exchange down past its retries) does not stop the others; the task is
retried when the warehouse was unreachable. The run publishes a markdown artifact
(new and unchanged rows, lag and gaps per stream) and ends Failed when a stream failed.

``replay``: False talks to the real exchanges; True starts the replay exchange
(``brain_lib.market.replay``, synthetic data up to the wall clock) on 127.0.0.1 for the
run; a URL uses a replay exchange that is already running.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from prefect import State, flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from brain_lib.config import Settings
from brain_lib.errors import ConfigError
from brain_lib.market.collect import (
    DATASETS,
    ExchangePool,
    StreamReport,
    StreamSpec,
    collect_stream,
    stream_specs,
    summary_markdown,
)
from brain_lib.market.exchanges import EXCHANGES
from flows.tasks import IO_TASK, dbt_build, prepare_warehouse

ARTIFACT_KEY = "collect-market-data"


def default_symbols(exchanges: list[str], settings: Settings) -> dict[str, list[str]]:
    """From ``BRAIN_SYMBOLS`` (spot symbols ``B/Q``): binance gets the spot market and
    the linear perpetual ``B/Q:Q``; bybit and okx, which Brain reads for derivatives,
    the perpetual only."""
    spot = [s for s in settings.symbols if ":" not in s]
    perps = [f"{s}:{s.split('/', 1)[1]}" for s in spot if "/" in s]
    return {ex: (spot + perps if ex == "binance" else perps) for ex in exchanges}


@task(
    **IO_TASK,
    task_run_name="collect {spec.exchange} {spec.symbol} {spec.dataset}",
)
def collect_stream_task(
    dsn: str,
    spec: StreamSpec,
    pool: ExchangePool,
    since: datetime | None,
    until: datetime | None,
    run_id: str | None,
) -> StreamReport:
    """Collect one stream; a warehouse that cannot be reached retries the task."""
    return collect_stream(dsn, spec, pool=pool, since=since, until=until, run_id=run_id)


QUALITY_TABLES = {
    "ohlcv": "ohlcv",
    "funding": "funding_rates",
    "oi": "open_interest",
    "liquidations": "liquidations",
}
FRESHNESS_SOURCES = {
    "ohlcv": "source:raw.ohlcv",
    "funding": "source:market.funding_rates",
    "oi": "source:market.open_interest",
    "liquidations": "source:market.liquidations",
}


@task(**IO_TASK)
def validate_batches(
    dsn: str, reports: list[StreamReport], run_id: str | None, docs_dir: Path
) -> list[dict[str, Any]]:
    """Great Expectations on every batch that landed new rows: results recorded in
    ``raw.data_quality_results``, failing rows copied to ``raw.quarantine_<table>``.

    A batch is the stream's new rows plus one bar before them, so the gap and move
    checks also see the seam with what was stored before.
    """
    from datetime import timedelta

    import ccxt

    from brain_lib.quality import render_data_docs, run_quality_checks

    out: list[dict[str, Any]] = []
    kept: list[Any] = []
    for r in reports:
        if r.status != "ok" or not r.new_rows or r.first_ts is None or r.last_ts is None:
            continue
        bar = ccxt.Exchange.parse_timeframe(r.series) if r.dataset == "ohlcv" else 0
        step = timedelta(seconds=bar)
        (report,) = run_quality_checks(
            dsn,
            tables=[QUALITY_TABLES[r.dataset]],
            exchange=r.exchange,
            symbol=r.symbol,
            timeframe=r.series if r.dataset in ("ohlcv", "oi") else None,
            start=r.first_ts - step,
            end=r.last_ts + timedelta(microseconds=1),
            run_id=run_id,
            docs_dir=docs_dir,
            render_docs=False,
        )
        kept.append(report)
        out.append(
            {
                "stream": r.label,
                "ok": report.ok,
                "success": report.success,
                "summary": report.describe(),
            }
        )
    # one Data Docs build for every batch (GX recompiles its page templates per build)
    index = render_data_docs(
        docs_dir, [k for r in kept for k in r.docs_keys], [r.suite for r in kept]
    )
    for item in out:
        item["docs"] = str(index) if index is not None else None
    return out


@task(cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=5)
def check_freshness(
    dsn: str, project_dir: Path, state_dir: Path, datasets: list[str]
) -> list[dict[str, Any]]:
    """dbt source freshness of the raw tables the run collected into."""
    from brain_lib.dbt import source_freshness

    select = sorted({FRESHNESS_SOURCES[d] for d in datasets})
    if not select:
        return []
    found = source_freshness(dsn, project_dir=project_dir, state_dir=state_dir, select=select)
    return [
        {
            "source": f.source,
            "status": f.status,
            "stale": f.stale,
            "max_loaded_at": f.max_loaded_at,
            "age_seconds": f.age_seconds,
        }
        for f in found
    ]


def quality_markdown(checks: list[dict[str, Any]], freshness: list[dict[str, Any]]) -> str:
    """The data-quality and freshness part of the run's artifact."""
    lines = ["", "## Data quality of the new batches", ""]
    lines += [
        f"- {'✅' if c['success'] else ('⚠️' if c['ok'] else '❌')} {c['summary']}" for c in checks
    ] or ["No new rows to check."]
    docs = next((c["docs"] for c in checks if c["docs"]), None)
    if docs:
        lines += ["", f"Great Expectations Data Docs: `{docs}`"]
    lines += ["", "## Source freshness (dbt)", ""]
    lines += [
        f"- {f['source']}: **{f['status']}**"
        + (f", newest row loaded {f['age_seconds'] / 3600:.1f} h ago" if f["age_seconds"] else "")
        + (" — STALE" if f["stale"] else "")
        for f in freshness
    ] or ["Not checked."]
    return "\n".join(lines) + "\n"


def _failed_report(spec: StreamSpec, state: State) -> StreamReport:
    try:
        state.result(raise_on_failure=True)
        message = state.message or "did not complete"
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
    return StreamReport(
        exchange=spec.exchange,
        symbol=spec.symbol,
        dataset=spec.dataset,
        series=spec.series,
        status="failed",
        message=f"{spec.label}: {message}",
    )


# streams collected at once: each holds a warehouse connection while it lands, and
# Prefect's default thread pool is unbounded, so 100 symbols x 3 datasets would ask
# the warehouse for 300 connections at once (PostgreSQL's default allows 100)
STREAMS_AT_ONCE = 16
# (TaskRunner is invariant in its future type, the flow decorator wants the base one)
_STREAMS = cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=STREAMS_AT_ONCE))


@flow(
    name="collect-market-data",
    log_prints=True,
    task_runner=_STREAMS,
)
def collect_market_data(
    exchanges: list[str] | None = None,
    symbols: list[str] | dict[str, list[str]] | None = None,
    datasets: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    timeframe: str = "1h",
    oi_period: str = "1h",
    replay: bool | str = False,
    build_marts: bool = True,
) -> State:
    """Collect every exchange x symbol x dataset once.

    ``symbols``: one list for every exchange or a list per exchange (default from
    ``BRAIN_SYMBOLS``, see :func:`default_symbols`); ``datasets``: any of ohlcv, funding,
    oi, liquidations (default all); ``since``: where a stream with nothing stored
    starts (default a year back); ``until``: collect nothing after it;
    ``build_marts``: rebuild ``marts.fct_features_hourly`` (the derivatives features
    daily-retrain reads) when new rows landed.
    """
    logger = get_run_logger()
    settings = Settings()
    chosen = list(exchanges or EXCHANGES)
    wanted: list[str] | Mapping[str, list[str]] = (
        symbols if symbols is not None else default_symbols(chosen, settings)
    )
    specs = stream_specs(
        chosen, wanted, datasets or DATASETS, timeframe=timeframe, oi_period=oi_period
    )
    if not specs:
        raise ConfigError("nothing to collect: no exchange x symbol x dataset given")
    flow_run = getattr(get_run_context(), "flow_run", None)
    run_id = str(flow_run.id) if flow_run is not None else None
    dsn = prepare_warehouse(settings)

    server = None
    replay_url: str | None = None
    if replay is True:
        from brain_lib.market.replay import ReplayServer

        server = ReplayServer().start()
        replay_url = server.url
        logger.info("replay exchange on %s", replay_url)
    elif isinstance(replay, str) and replay:
        replay_url = replay
    try:
        pool = ExchangePool(replay_url)
        futures = collect_stream_task.map(
            unmapped(dsn),
            specs,
            unmapped(pool),
            unmapped(since),
            unmapped(until),
            unmapped(run_id),
        )
        futures.wait()
    finally:
        if server is not None:
            server.stop()

    reports: list[StreamReport] = []
    for spec, future in zip(specs, futures, strict=True):
        state = future.state
        reports.append(future.result() if state.is_completed() else _failed_report(spec, state))
    new = sum(r.new_rows for r in reports)
    from brain_lib.quality import data_docs_dir

    checks = validate_batches(dsn, reports, run_id, data_docs_dir(home=settings.home))
    for c in checks:
        (logger.info if c["success"] else logger.warning)("data quality: %s", c["summary"])
    if build_marts and new:
        logger.info(
            dbt_build(
                dsn,
                settings.dbt_dir,
                settings.home / "dbt",
                select="+fct_features_hourly",
                indirect_selection="cautious",
            )
        )
    collected = sorted({r.dataset for r in reports if r.status == "ok"})
    freshness = check_freshness(dsn, settings.dbt_dir, settings.home / "dbt", collected)
    stale = [f["source"] for f in freshness if f["stale"]]
    if stale:
        logger.warning("stale sources: %s", ", ".join(stale))
    markdown = summary_markdown(reports) + quality_markdown(checks, freshness)
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=markdown,
        description=f"collect-market-data: {len(reports)} streams",
    )
    rows: list[dict[str, Any]] = [r.as_row() for r in reports]
    for r in reports:
        level = logger.error if r.status == "failed" else logger.info
        level(
            "%s: %s, %d new, %d unchanged, %d gap(s)%s",
            r.label,
            r.status,
            r.new_rows,
            r.unchanged_rows,
            len(r.gaps),
            f" ({r.message})" if r.message else "",
        )
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        names = ", ".join(r.label for r in failed)
        return Failed(message=f"{len(failed)} of {len(reports)} streams failed: {names}", data=rows)
    bad = [c["stream"] for c in checks if not c["ok"]]
    message = f"{len(reports)} streams collected, {new} new rows"
    if bad:
        message += f"; blocking data-quality failures (rows quarantined): {', '.join(bad)}"
    if stale:
        message += f"; stale: {', '.join(stale)}"
    return Completed(message=message, data=rows)


if __name__ == "__main__":
    collect_market_data()
