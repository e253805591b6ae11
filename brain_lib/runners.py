"""Which Prefect task runner the training flows use, chosen by settings at run time.

Prefect's default ``ThreadPoolTaskRunner`` is unbounded: on 2 cores daily-retrain ran
6 LightGBM fits at once, each with its own OpenMP team of ``num_threads`` = 2
(``brain_lib.models._lightgbm.DEFAULT_PARAMS``), and every fit was 1.6x slower. So:

* ``BRAIN_TASK_RUNNER=threads`` (the default): a thread pool of
  ``BRAIN_TASK_CONCURRENCY`` threads, by default the cores divided by LightGBM's 2
  threads (at least 1), so the fitting threads never outnumber the cores.
* ``BRAIN_TASK_RUNNER=dask``: ``prefect_dask.DaskTaskRunner`` on the scheduler at
  ``BRAIN_DASK_ADDRESS``, or on a local cluster of ``BRAIN_DASK_WORKERS`` processes with
  ``BRAIN_DASK_THREADS_PER_WORKER`` threads each, started for the flow run.

The flows are decorated with :class:`SettingsTaskRunner`, which reads :class:`Settings`
when Prefect starts it for a flow run (not when the flow module is imported), so a
deployment run by a worker and ``brain train`` both follow the ``BRAIN_*`` environment
of the process that runs the flow. :func:`check_task_runner` refuses a bad choice with
one line before anything starts (``check_retrain_setup`` calls it, and so does the
runner when a flow run starts it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from brain_lib.config import Settings
from brain_lib.errors import ConfigError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import RunInput
    from prefect.futures import PrefectFuture, PrefectFutureList
    from prefect.tasks import Task

__all__ = [
    "LIGHTGBM_THREADS",
    "SettingsTaskRunner",
    "check_task_runner",
    "dask_host_port",
    "default_task_concurrency",
    "task_concurrency",
    "task_runner_for",
]

# num_threads of brain_lib.models._lightgbm.DEFAULT_PARAMS (a test keeps them equal;
# importing the model module here would pull pandas into every settings check)
LIGHTGBM_THREADS = 2
# the most threads a user may ask for, per core: beyond it the fits only slow each other
MAX_TASKS_PER_CORE = 4
# how long a Dask scheduler may take to accept a TCP connection before it is refused
DASK_CONNECT_TIMEOUT_S = 3.0
DASK_INSTALL = "pip install prefect-dask==0.3.7 distributed==2026.8.0"


def _cores() -> int:
    return os.cpu_count() or 1


def default_task_concurrency(cores: int | None = None) -> int:
    """Tasks at once when ``BRAIN_TASK_CONCURRENCY`` is unset: the cores divided by
    LightGBM's threads, at least 1."""
    return max(1, (cores or _cores()) // LIGHTGBM_THREADS)


def task_concurrency(settings: Settings) -> int:
    """How many tasks the threads runner runs at once under ``settings`` (checked)."""
    cores = _cores()
    value = settings.task_concurrency
    if value is None:
        return default_task_concurrency(cores)
    if not 1 <= value <= MAX_TASKS_PER_CORE * cores:
        raise ConfigError(
            f"invalid setting BRAIN_TASK_CONCURRENCY={value}: between 1 and "
            f"{MAX_TASKS_PER_CORE * cores} tasks at once on this machine's {cores} cores "
            f"(unset: {default_task_concurrency(cores)}, the cores divided by LightGBM's "
            f"{LIGHTGBM_THREADS} threads)"
        )
    return value


def dask_host_port(address: str) -> tuple[str, int]:
    """Host and port of a Dask scheduler address (``tcp://HOST:PORT``, ``tls://`` or a
    bare ``HOST:PORT``); :class:`ConfigError` names a malformed one."""
    text = address.strip()
    url = text if "://" in text else f"tcp://{text}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if (
        parts is None
        or parts.scheme not in ("tcp", "tls")
        or not parts.hostname
        or not port
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(
            f"invalid setting BRAIN_DASK_ADDRESS={address!r}: not a Dask scheduler address; "
            "write tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
        )
    return parts.hostname, port


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _check_dask_address(address: str) -> None:
    host, port = dask_host_port(address)
    try:
        with socket.create_connection((host, port), timeout=DASK_CONNECT_TIMEOUT_S):
            pass
    except TimeoutError:
        why = f"no answer in {DASK_CONNECT_TIMEOUT_S:g} s"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    else:
        why = ""
    if why:
        raise ConfigError(
            f"cannot reach the Dask scheduler at BRAIN_DASK_ADDRESS={address}: {why}; "
            "start it (dask scheduler) or unset BRAIN_DASK_ADDRESS for a local cluster"
        )
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value() and not _loopback(host):
        raise ConfigError(
            f"the Dask workers at BRAIN_DASK_ADDRESS={address} cannot reach this "
            "process's temporary Prefect server; set PREFECT_API_URL to a Prefect server "
            "they can reach"
        )


def check_task_runner(settings: Settings) -> None:
    """Refuse a task-runner setup that cannot work, with one line, before anything
    starts: a concurrency out of range, Dask chosen but ``prefect-dask`` missing, a
    malformed or unreachable ``BRAIN_DASK_ADDRESS``."""
    task_concurrency(settings)
    if settings.task_runner != "dask":
        return
    try:
        import prefect_dask  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"invalid setting BRAIN_TASK_RUNNER=dask: prefect-dask cannot be imported "
            f"({exc}); install it ({DASK_INSTALL}) or use BRAIN_TASK_RUNNER=threads"
        ) from None
    if settings.dask_address:
        _check_dask_address(settings.dask_address)


def task_runner_for(settings: Settings) -> TaskRunner[Any]:
    """The Prefect task runner ``settings`` choose (checked by :func:`check_task_runner`
    first)."""
    check_task_runner(settings)
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=task_concurrency(settings))
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address.strip())
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": settings.dask_threads_per_worker,
            "processes": True,
        }
    )


def _settings_now() -> Settings:
    """``Settings()`` of the environment now; a bad value is one :class:`ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]).upper() if first["loc"] else "SETTINGS"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting BRAIN_{where}: {message}") from None


def _prefect_api_for_workers(stack: ExitStack) -> None:
    """Without ``PREFECT_API_URL`` the flow talks to Prefect's temporary server of this
    process; Dask workers, in other processes, would each start one of their own. Name
    the running one in the settings the task runs carry to the workers."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        return
    server = SubprocessASGIServer()
    if not server.running:
        return
    stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))


class SettingsTaskRunner(TaskRunner["PrefectFuture[Any]"]):
    """A task runner that becomes the one :class:`Settings` choose when Prefect starts
    it for a flow run (``BRAIN_TASK_RUNNER``, ``BRAIN_TASK_CONCURRENCY``,
    ``BRAIN_DASK_*``), and hands every submission to it.

    Prefect keeps the decorator's instance as a template and, per flow run, enters a
    :meth:`duplicate` of it; only that duplicate holds a started runner.
    """

    def __init__(self) -> None:
        super().__init__()
        self._runner: TaskRunner[Any] | None = None
        self._stack: ExitStack | None = None
        self._described = ""  # said in the flow run's log at its first task

    @property
    def name(self) -> str:
        return "settings"

    @property
    def runner(self) -> TaskRunner[Any]:
        """The runner this flow run uses (only while started)."""
        if self._runner is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        return self._runner

    def duplicate(self) -> SettingsTaskRunner:
        return type(self)()

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[RunInput]] | None = None,
    ) -> PrefectFuture[Any]:
        runner = self.runner
        if self._described:
            self._announce()
        return runner.submit(task, parameters, wait_for, dependencies)

    def map(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
    ) -> PrefectFutureList[PrefectFuture[Any]]:
        runner = self.runner
        if self._described:
            self._announce()
        return runner.map(task, parameters, wait_for)

    def _announce(self) -> None:
        """Say in the flow run's log where its tasks run (the runner is entered before
        the flow run's context exists, so this waits for the first submission)."""
        from prefect.context import FlowRunContext
        from prefect.logging import get_run_logger

        described, self._described = self._described, ""
        context = FlowRunContext.get()
        if context is not None:
            get_run_logger(context).info("tasks run on %s", described)

    def cancel_all(self) -> None:
        cancel = getattr(self._runner, "cancel_all", None)
        if cancel is not None:
            cancel()

    def __enter__(self) -> SettingsTaskRunner:
        settings = _settings_now()
        runner = task_runner_for(settings)
        with ExitStack() as stack:
            if settings.task_runner == "dask":
                _prefect_api_for_workers(stack)
            stack.enter_context(runner)
            self._stack = stack.pop_all()
        self._described = describe(settings)
        self._runner = runner
        super().__enter__()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        stack, self._stack, self._runner, self._described = self._stack, None, None, ""
        try:
            if stack is not None:
                stack.__exit__(exc_type, exc_value, traceback)
        finally:
            super().__exit__(exc_type, exc_value, traceback)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __getstate__(self) -> dict[str, Any]:
        # the flow (and its template runner) travels to Dask workers with each task
        # run's context; a started runner and its exit stack stay here
        state = self.__dict__.copy()
        state.update(_runner=None, _stack=None, _described="")
        return state


def describe(settings: Settings) -> str:
    """The task runner ``settings`` choose, in words (for logs)."""
    if settings.task_runner == "threads":
        return f"a pool of {task_concurrency(settings)} threads ({_cores()} cores)"
    if settings.dask_address:
        return f"the Dask scheduler at {settings.dask_address.strip()}"
    return (
        f"a local Dask cluster of {settings.dask_workers} processes x "
        f"{settings.dask_threads_per_worker} threads"
    )
