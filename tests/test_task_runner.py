"""The task runner of the training flows is a setting (brain_lib.runners): a thread pool
bounded to the cores by default, or a Dask cluster; a bad choice is one line."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cli_env import one_line_error
from test_cli import brain
from test_cli import env as env  # the fixture, reused
from test_faults import _api, _task_runs

from brain_lib.config import Settings, check_retrain_setup
from brain_lib.errors import ConfigError
from brain_lib.warehouse import connect

pytestmark = pytest.mark.slow

# tasks that fit a model (match by prefix: a coarser train_version task passes too)
FITTING = ("walk_forward", "fit_final_model", "compute_importance", "train_")
LOOKBACK = 120  # days of the 200 that retrain_env (conftest.py) stores: the fewest that trade
CORES = os.cpu_count() or 1


def _clone_warehouse(pg_server: str, raw_template: str) -> str:
    """A second fresh warehouse, as conftest's ``fresh_warehouse`` makes one."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{raw_template}"')
    return pg_server.replace("/postgres?", f"/{name}?")


def _stored(dsn: str) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Per symbol: every metric row and every importance row of its versions."""
    out: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    with connect(dsn) as conn:
        versions = conn.execute("select version_id, symbol from raw.model_versions").fetchall()
        for version_id, symbol in versions:
            metrics = conn.execute(
                "select scope, metric, value from raw.model_metrics where version_id = %s "
                "order by scope, metric",
                (version_id,),
            ).fetchall()
            importance = conn.execute(
                "select kind, method, feature, importance, normalised, rank, skipped_reason, "
                "n_rows from raw.feature_importance where version_id = %s "
                "order by kind, method, feature",
                (version_id,),
            ).fetchall()
            out[symbol] = {"metrics": metrics, "importance": importance}
    return out


def _fitting_runs(flow_run_id: Any) -> list[tuple[str, datetime, datetime]]:
    """The fitting task runs Prefect recorded for a flow run: name, start, end."""
    runs = [t for t in _task_runs(flow_run_id) if t.name.startswith(FITTING)]
    assert runs, "no fitting task run recorded"
    assert all(t.start_time and t.end_time for t in runs), [(t.name, t.state) for t in runs]
    return [(t.name, t.start_time, t.end_time) for t in runs]


def _most_at_once(runs: list[tuple[str, datetime, datetime]]) -> int:
    """The most runs that were running at the same instant (an end before a start at
    the same instant: the thread was handed on)."""
    events = sorted([(start, 1) for _, start, _ in runs] + [(end, -1) for _, _, end in runs])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def _flow_run_logs(flow_run_id: Any) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = _api(
        lambda c: c.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    )
    return "\n".join(log.message for log in logs)


def _retrain(symbols: list[str]) -> Any:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    state = run_flow(daily_retrain, symbols=symbols, lookback_days=LOOKBACK, build_marts=False)
    assert state.is_completed(), state.message
    return state


def test_a_local_dask_cluster_trains_the_same_versions_as_threads(
    prefect_harness: None,
    retrain_env: tuple[str, Path],
    pg_server: str,
    raw_template: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from markets import seed_planted

    dsn, _ = retrain_env
    threads = _retrain(["BTC/USDT"])
    run_id = threads.state_details.flow_run_id
    # the default on this machine: no more fits at once than cores / LightGBM's 2 threads
    assert _most_at_once(_fitting_runs(run_id)) <= max(1, CORES // 2)
    assert f"tasks run on a pool of {max(1, CORES // 2)} threads" in _flow_run_logs(run_id)

    # the same candles in a second warehouse, trained on two Dask worker processes
    other = _clone_warehouse(pg_server, raw_template)
    seed_planted(other, ["BTC/USDT"])
    monkeypatch.setenv("BRAIN_DATABASE_URL", other)
    monkeypatch.setenv("BRAIN_HOME", str(tmp_path / "dask-home"))
    monkeypatch.setenv("BRAIN_TASK_RUNNER", "dask")
    monkeypatch.setenv("BRAIN_DASK_WORKERS", "2")
    dask = _retrain(["BTC/USDT"])
    dask_id = dask.state_details.flow_run_id
    assert "tasks run on a local Dask cluster of 2 processes" in _flow_run_logs(dask_id)
    assert len(_fitting_runs(dask_id)) == len(_fitting_runs(run_id))

    (by_threads,), (by_dask,) = threads.result(), dask.result()
    assert by_threads["version_id"] != by_dask["version_id"]
    for key in ("status", "decision", "composite", "sharpe", "dsr", "round_trips"):
        assert by_dask[key] == by_threads[key], key
    assert by_threads["round_trips"] > 0  # a version that traded: the comparison means something
    stored_threads, stored_dask = _stored(dsn), _stored(other)
    assert list(stored_threads) == list(stored_dask) == ["BTC/USDT"]
    assert stored_dask["BTC/USDT"]["metrics"] == stored_threads["BTC/USDT"]["metrics"]
    assert stored_dask["BTC/USDT"]["importance"] == stored_threads["BTC/USDT"]["importance"]
    assert len(stored_threads["BTC/USDT"]["importance"]) >= 3 * 15


def test_one_task_at_a_time_never_overlaps_two_fits(
    prefect_harness: None, retrain_env: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAIN_TASK_CONCURRENCY", "1")
    state = _retrain(["BTC/USDT", "ETH/USDT"])
    run_id = state.state_details.flow_run_id
    runs = _fitting_runs(run_id)
    assert len(runs) >= 2 * 2  # at least two fitting tasks per symbol
    assert _most_at_once(runs) == 1, sorted(runs, key=lambda r: r[1])
    assert "tasks run on a pool of 1 threads" in _flow_run_logs(run_id)


# --------------------------------------------------------------- refused before anything


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BAD = [
    ({"BRAIN_TASK_CONCURRENCY": "0"}, f"BRAIN_TASK_CONCURRENCY=0: between 1 and {4 * CORES}"),
    ({"BRAIN_TASK_CONCURRENCY": "1000"}, f"BRAIN_TASK_CONCURRENCY=1000: between 1 and {4 * CORES}"),
    (
        {"BRAIN_TASK_RUNNER": "dask", "BRAIN_DASK_ADDRESS": "tcp://127.0.0.1:{closed}"},
        "cannot reach the Dask scheduler at BRAIN_DASK_ADDRESS=tcp://127.0.0.1:{closed}",
    ),
    (
        {"BRAIN_TASK_RUNNER": "dask", "BRAIN_DASK_ADDRESS": "tcp//scheduler:8786"},
        "invalid setting BRAIN_DASK_ADDRESS='tcp//scheduler:8786': not a Dask scheduler",
    ),
    (
        {"BRAIN_TASK_RUNNER": "dask", "BRAIN_DASK_ADDRESS": "tcp://scheduler"},
        "invalid setting BRAIN_DASK_ADDRESS='tcp://scheduler': not a Dask scheduler",
    ),
]


def _filled(variables: dict[str, str], needle: str) -> tuple[dict[str, str], str]:
    closed = str(_closed_port())
    return {k: v.format(closed=closed) for k, v in variables.items()}, needle.format(closed=closed)


@pytest.mark.parametrize(("variables", "needle"), BAD)
def test_a_bad_task_runner_is_refused_by_the_setup_check(
    variables: dict[str, str], needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables, needle = _filled(variables, needle)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        check_retrain_setup(Settings(lookback_days=30))
    message = str(caught.value)
    assert "\n" not in message and needle in message, message
    if "CONCURRENCY" in needle:
        assert f"{CORES} cores" in message


@pytest.mark.parametrize(("variables", "needle"), [BAD[0], BAD[2]])
def test_brain_train_refuses_a_bad_task_runner_in_one_line(
    env: dict[str, str], variables: dict[str, str], needle: str
) -> None:
    variables, needle = _filled(variables, needle)
    env.update(variables)
    proc = brain("train", "--symbols", "BTC/USDT", "--lookback-days", "30", env=env)
    one_line_error(proc, needle)
    assert proc.returncode == 2
    assert not Path(env["BRAIN_HOME"]).exists()  # nothing started, nothing written


def test_dask_without_prefect_dask_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from brain_lib.runners import check_task_runner

    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # import fails
    with pytest.raises(ConfigError, match="BRAIN_TASK_RUNNER=dask: prefect-dask cannot be"):
        check_task_runner(Settings(task_runner="dask"))


def test_the_runner_follows_the_environment_when_a_flow_run_starts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from brain_lib.models._lightgbm import DEFAULT_PARAMS
    from brain_lib.runners import LIGHTGBM_THREADS, SettingsTaskRunner, task_runner_for
    from flows.daily_retrain import daily_retrain

    assert DEFAULT_PARAMS["num_threads"] == LIGHTGBM_THREADS
    template = daily_retrain.task_runner
    assert isinstance(template, SettingsTaskRunner)
    monkeypatch.setenv("BRAIN_TASK_CONCURRENCY", "3")
    with template.duplicate() as started:  # what Prefect does per flow run
        assert isinstance(started.runner, ThreadPoolTaskRunner)
        assert started.runner._max_workers == 3
    monkeypatch.delenv("BRAIN_TASK_CONCURRENCY")
    with template.duplicate() as started:
        assert started.runner._max_workers == max(1, CORES // 2)

    # a scheduler that answers: its address is used as given
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"tcp://127.0.0.1:{listening.getsockname()[1]}"
        runner = task_runner_for(Settings(task_runner="dask", dask_address=address))
    assert isinstance(runner, DaskTaskRunner) and runner.address == address
    local = task_runner_for(Settings(task_runner="dask", dask_workers=3))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True}
