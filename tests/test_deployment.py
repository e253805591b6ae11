"""`prefect deployment run 'daily-retrain/daily-retrain'` against a local Prefect server.

Starts a real server on a free loopback port, creates the process work pool, deploys
prefect.yaml, triggers a run and lets a worker execute it once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from brain_lib.dbt import ensure_raw_schema
from brain_lib.market import SyntheticMarket
from brain_lib.warehouse import connect, copy_ohlcv

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_env(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("deploy")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAIN_", "PREFECT_"))}
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        BRAIN_HOME=str(home / "brain"),
        BRAIN_DATABASE_URL=pg_dsn,
        BRAIN_N_SPLITS="3",
        PWD=str(REPO),  # prefect.yaml's pull step records the folder deployed from
    )
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(
                        f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(1)
        yield env
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def _prefect(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [PREFECT, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_deployment_run_executes_daily_retrain(server_env: dict[str, str], pg_dsn: str) -> None:
    ensure_raw_schema(
        pg_dsn, project_dir=REPO / "dbt_brain", state_dir=Path(server_env["BRAIN_HOME"]) / "dbt"
    )
    with connect(pg_dsn) as conn:
        copy_ohlcv(
            conn,
            SyntheticMarket(seed=5).candles("BTC/USDT", 60 * 24),
            exchange="synthetic",
            symbol="BTC/USDT",
            timeframe="1h",
        )

    _prefect("work-pool", "create", "brain-local", "--type", "process", env=server_env)
    _prefect("--no-prompt", "deploy", "--all", env=server_env)
    run = _prefect(
        "deployment",
        "run",
        "daily-retrain/daily-retrain",
        "--param",
        'symbols=["BTC/USDT"]',
        "--param",
        "lookback_days=50",
        env=server_env,
    )
    assert "daily-retrain" in run.stdout
    _prefect("worker", "start", "--pool", "brain-local", "--run-once", env=server_env, timeout=400)

    flow_runs = _prefect("api", "POST", "/flow_runs/filter", "--data", "{}", env=server_env)
    runs = json.loads(flow_runs.stdout)
    assert len(runs) == 1
    assert runs[0]["state"]["type"] == "COMPLETED", runs[0]["state"]
    assert runs[0]["parameters"]["symbols"] == ["BTC/USDT"]
    with connect(pg_dsn) as conn:
        row = conn.execute("select symbol, run_id from raw.model_versions").fetchone()
    assert row == ("BTC/USDT", runs[0]["id"])
