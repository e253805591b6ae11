"""Run a flow from a short-lived process (the ``brain`` command) and let Prefect settle.

Without a Prefect server, a flow run uses a temporary local server that stops when
the process exits; task-run states travel as events that server records
asynchronously. Exiting right after the flow can leave task runs PENDING/RUNNING in
Prefect's database. ``run_flow`` drains Prefect's event and log workers and waits
until every task run of the flow run has a final state.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from prefect import State
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.utilities.asyncutils import run_coro_as_sync


async def _drain() -> None:
    for drain in (lambda: APILogWorker.instance().drain(), EventsWorker.drain_all):
        try:
            result = drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # the worker never started
            continue


def _unsettled(state: Any) -> bool:
    """Not final yet. ``NotReady`` (a PENDING state whose upstream failed) never moves
    on, so it counts as settled."""
    return state is None or (not state.is_final() and state.name != "NotReady")


def unsettled_task_runs(flow_run_id: Any) -> int:
    """How many task runs of a flow run have not reached a state they will keep."""

    async def count() -> int:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return sum(1 for run in runs if _unsettled(run.state))

    return run_coro_as_sync(count()) or 0


def run_flow(flow: Any, settle_timeout_s: float = 30.0, **parameters: Any) -> State:
    """Call ``flow(**parameters)``, return its final state once Prefect has recorded it."""
    state: State = flow(**parameters, return_state=True)
    run_coro_as_sync(_drain())
    flow_run_id = state.state_details.flow_run_id
    if flow_run_id is not None:
        deadline = time.monotonic() + settle_timeout_s
        while unsettled_task_runs(flow_run_id) and time.monotonic() < deadline:
            time.sleep(0.5)
    return state
