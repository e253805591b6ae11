"""Flow ``listen-liquidations``: listen to one exchange's liquidation streams for a
bounded window, then end, so that Prefect schedules, shows, retries and alerts on it.

The deployment (``prefect.yaml``) starts it every hour for 55 minutes; a run that dies
is retried (its task, with the same run id: rows are keyed, so a retry never writes a
row twice) and a second run while one still listens is refused by the listener's
lock. The library does the work (:mod:`brain_lib.market.listen`); the flow only starts
the replay exchange when asked, runs the listener and publishes its summary.

``replay``: False listens to the real exchange; True starts the replay exchange on
127.0.0.1 for the run (live clock); a URL uses a replay exchange already running.
"""

from __future__ import annotations

from typing import Any

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.states import Completed, Failed

from brain_lib.config import Settings
from brain_lib.market.listen import ListenReport, listen_liquidations
from flows.tasks import prepare_warehouse, retry_transient

ARTIFACT_KEY = "listen-liquidations"


@task(
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=retry_transient,
    task_run_name="listen {exchange} liquidations",
)
def listen_window(
    dsn: str,
    exchange: str,
    symbols: list[str],
    minutes: float,
    replay_url: str | None,
    run_id: str | None,
    docs_dir: Any,
) -> ListenReport:
    """Listen for ``minutes``; the report of the window."""
    return listen_liquidations(
        dsn,
        exchange,
        symbols,
        duration_s=minutes * 60,
        replay_url=replay_url,
        run_id=run_id,
        docs_dir=docs_dir,
    )


@flow(name="listen-liquidations", log_prints=True)
def listen_liquidations_flow(
    exchange: str = "binance",
    symbols: list[str] | None = None,
    minutes: float = 55.0,
    replay: bool | str = False,
) -> State:
    """Listen to the liquidations of ``symbols`` (default: the perpetuals of
    ``BRAIN_SYMBOLS``) on ``exchange`` for ``minutes``."""
    from brain_lib.quality import data_docs_dir

    logger = get_run_logger()
    settings = Settings()
    chosen = symbols or [f"{s}:{s.split('/', 1)[1]}" for s in settings.symbols if ":" not in s]
    flow_run = getattr(get_run_context(), "flow_run", None)
    run_id = str(flow_run.id) if flow_run is not None else None
    dsn = prepare_warehouse(settings)
    server = None
    replay_url = replay if isinstance(replay, str) and replay else None
    if replay is True:
        from brain_lib.market.replay import ReplayServer

        server = ReplayServer().start()
        replay_url = server.url
        logger.info("replay exchange on %s (websocket %s)", server.url, server.ws_url)
    try:
        report = listen_window(
            dsn,
            exchange,
            chosen,
            minutes,
            replay_url,
            run_id,
            data_docs_dir(home=settings.home),
        )
    finally:
        if server is not None:
            server.stop()
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=report.markdown(),
        description=f"listen-liquidations: {exchange}, {len(report.streams)} streams",
    )
    rows = report.as_rows()
    logger.info(report.describe())
    if report.status != "ok":
        return Failed(message=report.describe(), data=rows)
    return Completed(message=report.describe(), data=rows)


if __name__ == "__main__":
    listen_liquidations_flow()
