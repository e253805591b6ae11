"""Shared fixtures: a real PostgreSQL (the embedded wheel) in a throwaway folder.

One server for the session; each test module that asks for ``pg_dsn`` gets a fresh
database in it, so modules never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """A base temp folder of the run's own, outside ``/tmp/pytest-of-<user>``.

    The embedded PostgreSQL runs as another user when the tests run as root, and opens
    the folders above its data folder to it; pytest makes ``pytest-of-<user>`` private
    again whenever a process starts its temp folders, which under pytest-xdist happens
    while the other worker's servers run (their ``pg_ctl stop`` then fails). Workers get
    ``<basetemp>/<worker id>`` from the controller; the folder is removed at the end.
    """
    if hasattr(config, "workerinput") or config.option.basetemp:
        return
    config.option.basetemp = tempfile.mkdtemp(prefix="brain-pytest-")
    config._brain_basetemp = config.option.basetemp  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    made = getattr(config, "_brain_basetemp", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server for the whole session; yields the URL of its ``postgres`` db."""
    from brain_lib.warehouse import EmbeddedWarehouse

    root = Path(tempfile.mkdtemp(prefix="brain-test-pg-"))
    warehouse = EmbeddedWarehouse(root)
    warehouse.start()
    try:
        yield warehouse.url("postgres")
    finally:
        warehouse.stop()
        shutil.rmtree(root, ignore_errors=True)


def _fresh_database(server_url: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return server_url.replace("/postgres?", f"/{name}?")


@pytest.fixture(scope="module")
def pg_dsn(pg_server: str) -> str:
    """URL of a fresh, empty database for one test module."""
    return _fresh_database(pg_server)


@pytest.fixture
def fresh_dsn(pg_server: str) -> str:
    """URL of a fresh, empty database for one test."""
    return _fresh_database(pg_server)


@pytest.fixture(scope="module")
def warehouse_dsn(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh database with the raw schema created by dbt (``create_raw_tables``)."""
    from brain_lib.dbt import run_dbt

    run_dbt(
        ["run-operation", "create_raw_tables"],
        dsn=pg_dsn,
        project_dir=REPO / "dbt_brain",
        state_dir=tmp_path_factory.mktemp("dbt"),
    )
    return pg_dsn


@pytest.fixture(scope="session")
def raw_template(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Name of a database with the raw schema, made once by dbt, cloned by
    :func:`fresh_warehouse` (``create database ... template``: milliseconds instead of a
    dbt run per test). Nothing ever connects to it after it is made."""
    from brain_lib.dbt import run_dbt

    name = f"tpl_{uuid.uuid4().hex[:12]}"
    url = _fresh_database(pg_server)
    run_dbt(
        ["run-operation", "create_raw_tables"],
        dsn=url,
        project_dir=REPO / "dbt_brain",
        state_dir=tmp_path_factory.mktemp("dbt-template"),
    )
    import psycopg

    source = url.split("?")[0].rsplit("/", 1)[-1]
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'alter database "{source}" rename to "{name}"')
    return name


@pytest.fixture
def fresh_warehouse(pg_server: str, raw_template: str) -> str:
    """URL of a new database with the raw schema, for one test only: the state a test
    needs is the state it makes."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{raw_template}"')
    return pg_server.replace("/postgres?", f"/{name}?")


@pytest.fixture
def retrain_env(
    fresh_warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path]:
    """A fresh warehouse with 200 days of two planted-trend symbols (BTC/USDT, ETH/USDT)
    and ``BRAIN_*`` pointing at it and at a fresh home: what a flow test needs to train
    champions, made for that test alone."""
    from markets import seed_planted

    home = tmp_path / "brain-home"
    seed_planted(fresh_warehouse, ["BTC/USDT", "ETH/USDT"])
    monkeypatch.setenv("BRAIN_DATABASE_URL", fresh_warehouse)
    monkeypatch.setenv("BRAIN_HOME", str(home))
    return fresh_warehouse, home


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (and database) for every flow run of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
