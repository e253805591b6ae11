"""Run a flow from a short-lived process (the ``brain`` command) and let Prefect settle.

Without a Prefect server, a flow run uses a temporary local server that stops when
the process exits; task-run states travel as events that server records
asynchronously. Exiting right after the flow can leave task runs PENDING/RUNNING in
Prefect's database. ``run_flow`` drains Prefect's event and log workers and waits
until every task run of the flow run has a final state.

Ctrl-C: a terminal sends SIGINT to its whole foreground process group. Prefect starts
its temporary server in that group, so the server died at once while the run, still
alive, spent minutes retrying its states and events against it (httpx ``ConnectError``
tracebacks, ~140 s). ``run_flow`` starts that server itself, in its own session, so
only the ``brain`` process is interrupted: Prefect records the run as crashed, the
tasks already running finish, the ones not started are cancelled, and the process
exits in seconds. Prefect's console lines stop at the interrupt, so the caller's one
line is what a person reads.
"""

from __future__ import annotations

import functools
import inspect
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from prefect import State
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker, PrefectConsoleHandler
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_ENABLED
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


def start_temporary_server() -> None:
    """Without ``PREFECT_API_URL``, start Prefect's temporary server now, in its own
    session (out of reach of the terminal's Ctrl-C), with its output in
    ``$PREFECT_HOME/temporary-server.log``. Prefect's clients find it as theirs."""
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    server = SubprocessASGIServer()
    if server.running:
        return
    home = PREFECT_HOME.value()
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "temporary-server.log", "ab")  # noqa: SIM115 (the server's, for its life)
    popen = subprocess.Popen
    detached = functools.partial(popen, start_new_session=True, stdout=log, stderr=log)
    # Prefect spawns the server with subprocess.Popen and no way to pass options
    subprocess.Popen = detached  # type: ignore[misc,assignment]
    try:
        server.start()
    finally:
        subprocess.Popen = popen  # type: ignore[misc]


def _mute_console() -> None:
    """Stop Prefect's lines on the terminal (its API log handler keeps recording)."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL + 1)


@contextmanager
def _quiet_interrupt() -> Iterator[None]:
    """On SIGINT: mute Prefect's console, then raise KeyboardInterrupt as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: FrameType | None) -> None:
        _mute_console()
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_flow(flow: Any, settle_timeout_s: float = 30.0, **parameters: Any) -> State:
    """Call ``flow(**parameters)``, return its final state once Prefect has recorded it.

    A Ctrl-C raises ``KeyboardInterrupt`` once the tasks already running have finished
    (the ones not started are cancelled); Prefect's console is silent from then on.
    """
    start_temporary_server()
    with _quiet_interrupt():
        state: State = flow(**parameters, return_state=True)
    run_coro_as_sync(_drain())
    flow_run_id = state.state_details.flow_run_id
    if flow_run_id is not None:
        deadline = time.monotonic() + settle_timeout_s
        while unsettled_task_runs(flow_run_id) and time.monotonic() < deadline:
            time.sleep(0.5)
    return state
