"""Faults against the real stack, as one suite (docs/reliability.md, "Faults of the
running system"): an embedded PostgreSQL killed with SIGKILL in the middle of
daily-retrain, collect-market-data and a dbt build; overlapping runs; a full artifact
disk; a worker's flow-run process killed mid-task and the run retried from the API.
Each fault test compares what the warehouse holds afterwards with an uninterrupted run
of the same job: no row lost, none written twice, one champion per symbol × model type,
no half-written artifact folder.

The server here is this module's own (killing the session's server would take every
other test with it). Its URLs carry a password the server never asks for (trust
auth), so the secrets test can look for it in everything a run leaves behind.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import psycopg
import pytest
from fsspec.implementations.local import LocalFileSystem
from markets import seed_planted

from brain_lib.dbt import ensure_raw_schema
from brain_lib.market.replay import ReplayConfig, ReplayServer
from brain_lib.warehouse import EmbeddedWarehouse, connect

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "fault-suite-Secret-7f3a"
LOOKBACK = 120  # days of the 200 seeded: the smallest window that still trades the trend
SYMBOL = "BTC/USDT"
NOW = "2025-02-01T00:30:00Z"
SINCE = datetime(2025, 1, 25, 0, 0, tzinfo=UTC)
STREAMS = {"binance": ["BTC/USDT:USDT"], "okx": ["ETH/USDT:USDT"]}

pytestmark = pytest.mark.slow


class Server:
    """The module's PostgreSQL, which a test may kill (SIGKILL to the postmaster and
    every backend: a crash, not a shutdown) and start again (crash recovery)."""

    def __init__(self, home: Path) -> None:
        self.warehouse = EmbeddedWarehouse(home)
        self.template = f"tpl_{uuid.uuid4().hex[:8]}"

    def url(self, database: str) -> str:
        base = self.warehouse.url(database)
        return base.replace("postgres:@", f"postgres:{PASSWORD}@", 1)

    def kill(self) -> None:
        pid = int((self.warehouse.data_dir / "postmaster.pid").read_text().split()[0])
        children = _children(pid)
        for victim in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (self.warehouse.is_running() or _children(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def start(self) -> None:
        self.warehouse.start()

    def database(self) -> str:
        """A new database with the raw schema (cloned from the module's template)."""
        name = f"f_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.warehouse.url("postgres"), autocommit=True) as conn:
            conn.execute(f'create database "{name}" template "{self.template}"')
        return self.url(name)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # a folder of its own under /tmp, as conftest's pg_server: pytest's per-worker
    # basetemp is 0700, and the server runs as another user when the tests run as root
    root = Path(tempfile.mkdtemp(prefix="brain-fault-pg-"))
    srv = Server(root)
    srv.start()
    with psycopg.connect(srv.warehouse.url("postgres"), autocommit=True) as conn:
        conn.execute(f'create database "{srv.template}"')
    ensure_raw_schema(
        srv.url(srv.template),
        project_dir=REPO / "dbt_brain",
        state_dir=tmp_path_factory.mktemp("fault-dbt"),
    )
    try:
        yield srv
    finally:
        srv.warehouse.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def alive(server: Server) -> Server:
    """The module's server, running (a test before may have killed it)."""
    server.start()
    return server


class Killer(threading.Thread):
    """Kill the server the first time ``when()`` holds, start it again ``down_s`` later."""

    def __init__(self, server: Server, when: Callable[[], bool], down_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.server, self.when, self.down_s = server, when, down_s
        self.killed_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                fire = self.when()
            except Exception:
                fire = False
            if fire:
                self.server.kill()
                self.killed_at = time.monotonic()
                time.sleep(self.down_s)
                self.server.start()
                return
            time.sleep(0.02)

    def __enter__(self) -> Killer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=60)


def _count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn, connect_timeout=2) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


# ------------------------------------------------------------------ daily-retrain


def _registry_state(dsn: str) -> dict[str, Any]:
    """What a retrain leaves in the registry, without the ids that differ between runs."""
    with connect(dsn) as conn:
        return {
            "metrics": conn.execute(
                "select v.symbol, m.scope, m.metric, m.value from raw.model_metrics m "
                "join raw.model_versions v using (version_id) order by 1, 2, 3"
            ).fetchall(),
            "events": conn.execute(
                "select symbol, model_type, event_type, reason from raw.model_events "
                "order by event_id"
            ).fetchall(),
            "importance": conn.execute(
                "select method, feature, importance from raw.feature_importance order by 1, 2"
            ).fetchall(),
            "champions": conn.execute(
                "select c.symbol, c.model_type, count(*) over (partition by c.symbol, "
                "c.model_type), v.symbol is not null from raw.model_champions c "
                "left join raw.model_versions v using (version_id) order by 1, 2"
            ).fetchall(),
            "versions": conn.execute("select count(*) from raw.model_versions").fetchone(),
            "quality_runs": conn.execute(
                "select count(distinct run_id) from raw.data_quality_results"
            ).fetchone(),
        }


def _artifact_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _retrain(dsn: str, home: Path, mp: pytest.MonkeyPatch) -> Any:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    mp.setenv("BRAIN_DATABASE_URL", dsn)
    mp.setenv("BRAIN_HOME", str(home))
    return run_flow(daily_retrain, symbols=[SYMBOL], lookback_days=LOOKBACK, build_marts=False)


def _flow_run_records(flow_run_id: Any) -> str:
    """Everything Prefect stored about one flow run, as text: the run, its task runs,
    its logs and its artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(flow_run_id)
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        parts = [run.model_dump_json()]
        parts += [t.model_dump_json() for t in tasks]
        parts += [log.model_dump_json() for log in logs]
        parts += [a.model_dump_json() for a in artifacts]
        return "\n".join(parts)

    return run_coro_as_sync(read()) or ""


def _warehouse_text(dsn: str) -> str:
    """Every row of every table and view in raw and marts, as text."""
    with connect(dsn) as conn:
        relations = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'marts', 'staging')"
        ).fetchall()
        parts = []
        for schema, name in relations:
            rows = conn.execute(
                psycopg.sql.SQL("select t::text from {}.{} t").format(
                    psycopg.sql.Identifier(schema), psycopg.sql.Identifier(name)
                )
            ).fetchall()
            parts += [r[0] for r in rows]
    return "\n".join(parts)


def _seeded_pair(alive: Server, symbols: list[str], **seed: Any) -> tuple[str, str]:
    """Two databases of ``alive`` with the same planted candles: the reference run's
    and the faulted run's."""
    pair = alive.database(), alive.database()
    for dsn in pair:
        seed_planted(dsn, symbols, **seed)
    return pair


def _files_holding(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    ]


def test_warehouse_killed_mid_retrain_rides_through_like_an_uninterrupted_run(
    prefect_harness: None, alive: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_dsn, dsn = _seeded_pair(alive, [SYMBOL], seed=41)
    reference = _retrain(reference_dsn, tmp_path / "reference", monkeypatch)
    assert reference.is_completed(), reference.message

    # SIGKILL the moment the trained model's artifact is in place, before it lands
    home = tmp_path / "brain"
    artifacts = home / "artifacts"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    for name in ("", "prefect", "brain_lib", "flows"):
        logging.getLogger(name).addHandler(handler)
    try:
        with Killer(
            alive, lambda: any(not n.startswith(".") for n in _artifact_folders(artifacts))
        ) as killer:
            state = _retrain(dsn, home, monkeypatch)
    finally:
        for name in ("", "prefect", "brain_lib", "flows"):
            logging.getLogger(name).removeHandler(handler)
    assert killer.killed_at is not None, "the server was never killed"
    assert state.is_completed(), state.message
    (row,) = state.result()
    assert row["status"] == "ok" and row["decision"] in ("promotion", "exists"), row

    # the same registry as the uninterrupted run: nothing lost, nothing twice
    assert _registry_state(dsn) == _registry_state(reference_dsn)
    assert _registry_state(dsn)["champions"] == [(SYMBOL, "lightgbm", 1, True)]
    assert _artifact_folders(artifacts) == [row["version_id"]]
    # what a person reads: the landing task saw the connection go and retried
    flow_run_id = state.state_details.flow_run_id
    prefect_text = _flow_run_records(flow_run_id)
    assert "connection" in prefect_text and "Retry" in prefect_text

    # the password is in BRAIN_DATABASE_URL; nothing the run wrote holds it
    assert PASSWORD in dsn
    assert PASSWORD not in prefect_text
    assert _files_holding(home, PASSWORD) == []
    assert PASSWORD not in _warehouse_text(dsn)
    logged = [r.getMessage() + str(r.exc_info or "") for r in records]
    assert logged and not [line for line in logged if PASSWORD in line]


class FullDisk(LocalFileSystem):
    """A local folder that holds ``budget`` bytes: the write that goes past it fails
    with ENOSPC, as on a full disk (fsspec ``fulldisk://``)."""

    protocol = ("fulldisk",)
    budget = 0
    written = 0

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(str(path).removeprefix("fulldisk://"))

    def _spend(self, n: int) -> None:
        if FullDisk.written + n > FullDisk.budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        FullDisk.written += n

    def put_file(self, lpath: Any, rpath: Any, **kwargs: Any) -> None:
        with open(lpath, "rb") as source, self.open(rpath, "wb") as target:
            for block in iter(lambda: source.read(1 << 16), b""):
                self._spend(len(block))
                target.write(block)

    def _open(self, path: Any, mode: str = "rb", **kwargs: Any) -> Any:
        handle = super()._open(path, mode, **kwargs)
        if "w" in mode or "a" in mode:
            write = handle.write

            def spending(data: Any) -> Any:
                self._spend(len(data))
                return write(data)

            handle.write = spending
        return handle


def test_a_full_artifact_disk_fails_the_version_and_leaves_no_partial_folder(
    prefect_harness: None, alive: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsspec.register_implementation("fulldisk", FullDisk, clobber=True)
    dsn = alive.database()
    seed_planted(dsn, [SYMBOL], seed=41)
    root = tmp_path / "small-disk"
    # room for the start-up probe, not for a model
    monkeypatch.setattr(FullDisk, "budget", 4096)
    monkeypatch.setattr(FullDisk, "written", 0)
    monkeypatch.setenv("BRAIN_ARTIFACT_ROOT", f"fulldisk://{root}")
    state = _retrain(dsn, tmp_path / "brain", monkeypatch)
    assert state.is_failed()
    (row,) = state.result(raise_on_failure=False)
    assert row["status"] == "failed"
    assert "No space left on device" in row["error"] and "nothing of it was kept" in row["error"]
    assert FullDisk.written > 0  # the model's bytes started to go out before the disk filled
    assert _artifact_folders(root) == []  # no version folder, no partial one
    with connect(dsn) as conn:
        stored = conn.execute(
            "select (select count(*) from raw.model_versions), "
            "(select count(*) from raw.model_champions)"
        ).fetchone()
    assert stored == (0, 0)


# ------------------------------------------------------------ collect-market-data


def _market_rows(dsn: str) -> dict[str, list[Any]]:
    with connect(dsn) as conn:
        return {
            table: conn.execute(
                psycopg.sql.SQL(
                    "select exchange, symbol, count(*), min(ts), max(ts) from {} "
                    "group by 1, 2 order by 1, 2"
                ).format(psycopg.sql.Identifier("raw", table))
            ).fetchall()
            for table in ("ohlcv", "funding_rates", "open_interest", "liquidations")
        }


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    with ReplayServer(ReplayConfig(now=NOW)) as srv:
        yield srv


def _collect(dsn: str, home: Path, replay: ReplayServer, mp: pytest.MonkeyPatch) -> Any:
    mp.setenv("BRAIN_DATABASE_URL", dsn)
    mp.setenv("BRAIN_HOME", str(home))
    return _collect_run(replay)


def _collect_run(replay: ReplayServer) -> Any:
    """One collect-market-data run of STREAMS into the warehouse ``BRAIN_*`` names."""
    from flows.collect_market_data import collect_market_data
    from flows.runner import run_flow

    return run_flow(
        collect_market_data,
        exchanges=list(STREAMS),
        symbols=STREAMS,
        since=SINCE,
        replay=replay.url,
        build_marts=False,
    )


@pytest.fixture(scope="module")
def collected(
    prefect_harness: None,
    server: Server,
    replay: ReplayServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, list[Any]]:
    """The rows an uninterrupted collect-market-data run lands."""
    server.start()
    dsn = server.database()
    mp = pytest.MonkeyPatch()
    try:
        state = _collect(dsn, tmp_path_factory.mktemp("collect-ref"), replay, mp)
    finally:
        mp.undo()
    assert state.is_completed(), state.message
    rows = _market_rows(dsn)
    # no exchange here offers liquidations through ccxt (test_collect.py): that table stays
    # empty, and its stream is recorded as unsupported
    assert all(rows[t] for t in ("ohlcv", "funding_rates", "open_interest"))
    return rows


def test_warehouse_killed_mid_collect_lands_every_row_once(
    prefect_harness: None,
    alive: Server,
    replay: ReplayServer,
    collected: dict[str, list[Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = alive.database()
    # slow pages leave the kill in the middle of the streams; the first stored candle fires it
    replay.faults.add("delay", "", times=None, seconds=0.15)
    try:
        with Killer(alive, lambda: _count(dsn, "select count(*) from raw.ohlcv") > 0) as killer:
            state = _collect(dsn, tmp_path, replay, monkeypatch)
    finally:
        replay.faults.clear()
    assert killer.killed_at is not None
    if not state.is_completed():
        # a stream out of retries says so; the next run (hourly) collects the rest
        assert "warehouse" in (state.message or "") or "connection" in (state.message or "")
        again = _collect(dsn, tmp_path, replay, monkeypatch)
        assert again.is_completed(), again.message
    assert _market_rows(dsn) == collected


def test_two_overlapping_collect_runs_land_each_row_once(
    prefect_harness: None,
    alive: Server,
    replay: ReplayServer,
    collected: dict[str, list[Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = alive.database()
    monkeypatch.setenv("BRAIN_DATABASE_URL", dsn)
    monkeypatch.setenv("BRAIN_HOME", str(tmp_path))
    replay.faults.add("delay", "", times=None, seconds=0.1)
    states: list[Any] = []
    try:
        runs = [
            threading.Thread(target=lambda: states.append(_collect_run(replay))) for _ in range(2)
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=300)
    finally:
        replay.faults.clear()
    assert len(states) == 2 and all(s.is_completed() for s in states), [s.message for s in states]
    assert _market_rows(dsn) == collected
    # between them, the two runs landed each row once
    added = sum(r["new_rows"] for s in states for r in s.result())
    assert added == sum(n for table in collected.values() for _, _, n, _, _ in table)


# -------------------------------------------------------------------- dbt build


def _marts(dsn: str) -> dict[str, int]:
    with connect(dsn) as conn:
        names = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "order by 1"
        ).fetchall()
        return {n: _count_rows(conn, n) for (n,) in names}


def _count_rows(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute(
        psycopg.sql.SQL("select count(*) from {}").format(psycopg.sql.Identifier("marts", name))
    ).fetchone()
    return int(row[0]) if row else 0


def test_warehouse_killed_mid_dbt_build_then_rebuilt_matches_an_uninterrupted_build(
    alive: Server, tmp_path: Path
) -> None:
    from brain_lib.dbt import run_dbt
    from brain_lib.errors import BrainError

    reference_dsn, dsn = _seeded_pair(alive, [SYMBOL, "ETH/USDT"], days=30, seed=43)
    project = REPO / "dbt_brain"
    run_dbt(["build"], dsn=reference_dsn, project_dir=project, state_dir=tmp_path / "ref")
    expected = _marts(reference_dsn)
    assert expected and any(expected.values())

    name = dsn.split("?")[0].rsplit("/", 1)[-1]
    busy = (
        "select count(*) from pg_stat_activity where datname = '" + name + "' "
        "and state = 'active' and query ilike '%create%' and pid <> pg_backend_pid()"
    )
    failure: list[str] = []
    with Killer(alive, lambda: _count(alive.url("postgres"), busy) > 0, down_s=0.5) as killer:
        try:
            run_dbt(["build"], dsn=dsn, project_dir=project, state_dir=tmp_path / "run")
        except BrainError as exc:
            failure.append(str(exc))
    assert killer.killed_at is not None
    assert failure, "dbt build went through a killed server without an error"
    assert "dbt build failed" in failure[0] or "dbt" in failure[0]
    # run again once the server is back: the same marts as an uninterrupted build
    alive.start()
    run_dbt(["build"], dsn=dsn, project_dir=project, state_dir=tmp_path / "run")
    assert _marts(dsn) == expected


# ------------------------------------------------------------- Ctrl-C: brain train

BRAIN = str(Path(__import__("sys").executable).with_name("brain"))
_PREFECT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| +[A-Z]+ +\| ")


def _registry_holds_together(dsn: str) -> list[tuple[str, str, str]]:
    """Check the registry's invariants; return its (symbol, model type, version) champions.
    Every champion points to a version of its own symbol × model type, one per pair;
    every version has its metrics; no importance row twice."""
    with connect(dsn) as conn:
        champions = conn.execute(
            "select c.symbol, c.model_type, c.version_id, v.symbol, v.model_type "
            "from raw.model_champions c left join raw.model_versions v using (version_id) "
            "order by 1, 2"
        ).fetchall()
        bare = conn.execute(
            "select count(*) from raw.model_versions v where not exists "
            "(select 1 from raw.model_metrics m where m.version_id = v.version_id)"
        ).fetchone()
        twice = conn.execute(
            "select count(*) from (select version_id, kind, method, feature, computed_at "
            "from raw.feature_importance group by 1, 2, 3, 4, 5 having count(*) > 1) d"
        ).fetchone()
    pairs = [(s, m) for s, m, _, _, _ in champions]
    assert len(pairs) == len(set(pairs)), champions
    assert all((s, m) == (vs, vm) for s, m, _, vs, vm in champions), champions
    assert bare == (0,) and twice == (0,)
    return [(s, m, v) for s, m, v, _, _ in champions]


def test_ctrl_c_during_brain_train_ends_in_seconds_with_one_line(
    prefect_harness: None, alive: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    symbols = [SYMBOL, "ETH/USDT"]
    dsn = alive.database()
    seed_planted(dsn, symbols, seed=41)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAIN_", "PREFECT_"))}
    env.update(
        BRAIN_HOME=str(home),
        BRAIN_DATABASE_URL=dsn,
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    args = ["train", "--exchange", "synthetic", "--symbols", ",".join(symbols)]
    args += ["--model-types", "lightgbm", "--lookback-days", str(LOOKBACK)]
    # its own process group, which a terminal's Ctrl-C signals as a whole (Prefect's
    # temporary server included)
    proc = subprocess.Popen(
        [BRAIN, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    said: list[tuple[float, str]] = []  # (when read, line) of stderr
    assert proc.stderr is not None
    reader = threading.Thread(
        target=lambda: said.extend((time.monotonic(), line) for line in proc.stderr or []),
        daemon=True,
    )
    reader.start()
    artifacts = home / "artifacts"
    deadline = time.monotonic() + 240
    while proc.poll() is None and not _artifact_folders(artifacts):
        assert time.monotonic() < deadline, "no model was trained in 240 s"
        time.sleep(0.05)
    assert proc.poll() is None, "brain train ended before a model was being trained"
    interrupted = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    took = time.monotonic() - interrupted
    reader.join(timeout=10)
    stderr = "".join(line for _, line in said)
    assert took < 20, f"brain train took {took:.0f} s to stop after Ctrl-C"
    assert proc.returncode == 130, stderr
    # what a person reads after pressing Ctrl-C: Prefect's log lines of the tasks that
    # were finishing (stamped "HH:MM:SS.fff | LEVEL |"), then one line of Brain's
    after = [line for when, line in said if when >= interrupted and line.strip()]
    lines = [line for line in after if not _PREFECT_LINE.match(line)]
    assert len(lines) == 1, stderr
    late = [line for when, line in said if when > interrupted + 5 and _PREFECT_LINE.match(line)]
    assert not late, stderr  # Prefect goes quiet: no run retrying its states
    line = lines[0].strip()
    assert line.startswith("interrupted: ") and "brain dbt build" in line, line
    assert "Traceback" not in stderr and "ConnectError" not in stderr

    # what the line says landed is what the registry holds, whole
    champions = _registry_holds_together(dsn)
    with connect(dsn) as conn:
        versions = conn.execute("select symbol, version_id from raw.model_versions").fetchall()
    said_landed, _, said_missing = line.partition("not trained:")
    for symbol in symbols:
        if any(s == symbol for s, _ in versions):
            assert f"{symbol} lightgbm (" in said_landed, line
        else:
            assert f"{symbol} lightgbm" in said_missing, line
    assert {v for _, v in versions} <= set(_artifact_folders(artifacts))
    assert not [n for n in _artifact_folders(artifacts) if n.startswith(".")]  # no partial one
    assert len(champions) <= len(symbols)

    # the next run trains the rest: one champion per symbol × model type
    state = _retrain_symbols(dsn, home, monkeypatch, symbols)
    assert state.is_completed(), state.message
    assert [(s, m) for s, m, _ in _registry_holds_together(dsn)] == [
        ("BTC/USDT", "lightgbm"),
        ("ETH/USDT", "lightgbm"),
    ]


def _retrain_symbols(dsn: str, home: Path, mp: pytest.MonkeyPatch, symbols: list[str]) -> Any:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    mp.setenv("BRAIN_DATABASE_URL", dsn)
    mp.setenv("BRAIN_HOME", str(home))
    return run_flow(
        daily_retrain,
        symbols=symbols,
        exchange="synthetic",
        model_types=["lightgbm"],
        lookback_days=LOOKBACK,
        build_marts=False,
    )


# ------------------------------------------------------ overlapping flow runs


def _overlapping(run: Callable[[], Any]) -> list[Any]:
    """Two runs of ``run`` at once (threads: two flow runs in one process)."""
    states: list[Any] = []
    threads = [threading.Thread(target=lambda: states.append(run())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(states) == 2, "an overlapping run never ended"
    return states


def _importance_per_version(dsn: str, kind: str) -> list[Any]:
    with connect(dsn) as conn:
        return conn.execute(
            "select count(*), count(distinct (method, feature)) from raw.feature_importance "
            "where kind = %s group by version_id, computed_at order by 1",
            (kind,),
        ).fetchall()


def test_overlapping_daily_retrain_and_nightly_analysis_runs_keep_one_champion(
    prefect_harness: None, alive: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.nightly_feature_analysis import nightly_feature_analysis
    from flows.runner import run_flow

    reference_dsn, dsn = _seeded_pair(alive, [SYMBOL], seed=41)
    with connect(dsn) as conn:
        row = conn.execute("select max(ts) from raw.ohlcv").fetchone()
    assert row is not None
    end = row[0] - timedelta(days=10)  # nightly looks at the bars after the training window
    retrain: dict[str, Any] = {
        "symbols": [SYMBOL],
        "lookback_days": LOOKBACK,
        "end": end,
        "build_marts": False,
    }
    nightly: dict[str, Any] = {
        "symbols": [SYMBOL],
        "window_days": 10,
        "n_repeats": 1,
        "max_rows": 500,
    }
    nightly["dbt_vars"] = {"feature_shift_min_rank_corr": 1.01}  # flag: mark for retraining

    monkeypatch.setenv("BRAIN_HOME", str(tmp_path / "reference"))
    monkeypatch.setenv("BRAIN_DATABASE_URL", reference_dsn)
    assert run_flow(daily_retrain, **retrain).is_completed()
    one_night = run_flow(nightly_feature_analysis, **nightly)
    assert one_night.is_completed(), one_night.message

    monkeypatch.setenv("BRAIN_HOME", str(tmp_path / "brain"))
    monkeypatch.setenv("BRAIN_DATABASE_URL", dsn)
    states = _overlapping(lambda: run_flow(daily_retrain, **retrain))
    assert all(s.is_completed() for s in states), [s.message for s in states]
    rows = [s.result()[0] for s in states]
    # two runs, two versions; the lock per symbol × model type judged the second
    # against the first: one champion, one event per version, each against its predecessor
    assert _registry_holds_together(dsn) == [(SYMBOL, "lightgbm", c) for c in _champion(dsn)]
    with connect(dsn) as conn:
        events = conn.execute(
            "select event_type, version_id, previous_version_id from raw.model_events "
            "order by event_id"
        ).fetchall()
    assert sorted(r["version_id"] for r in rows) == sorted(v for _, v, _ in events)
    assert events[0][0] == "promotion" and events[0][2] is None
    assert events[1][2] == events[0][1]  # judged against the first run's champion
    training = _importance_per_version(dsn, "training")
    assert training == _importance_per_version(reference_dsn, "training") * 2

    states = _overlapping(lambda: run_flow(nightly_feature_analysis, **nightly))
    assert all(s.is_completed() for s in states), [s.message for s in states]
    # each run's analysis is whole, none is written twice, and one request is pending
    assert _importance_per_version(dsn, "nightly") == (
        _importance_per_version(reference_dsn, "nightly") * 2
    )
    with connect(dsn) as conn:
        pending = conn.execute(
            "select symbol from raw.retrain_requests where consumed_at is null"
        ).fetchall()
    assert pending == [(SYMBOL,)]
    assert _registry_holds_together(dsn) == [(SYMBOL, "lightgbm", c) for c in _champion(dsn)]


def _champion(dsn: str) -> list[str]:
    with connect(dsn) as conn:
        return [r[0] for r in conn.execute("select version_id from raw.model_champions")]


# ------------------------------------------------------- a dbt test that fails


def _raw_counts(dsn: str) -> dict[str, int]:
    with connect(dsn) as conn:
        names = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' "
            "and table_type = 'BASE TABLE' order by 1"
        ).fetchall()
        return {n: _count(dsn, f'select count(*) from raw."{n}"') for (n,) in names}


def test_a_failing_dbt_test_names_itself_and_leaves_raw_and_the_marts_as_they_were(
    alive: Server, tmp_path: Path
) -> None:
    from brain_lib.dbt import run_dbt
    from brain_lib.errors import BrainError

    dsn = alive.database()
    seed_planted(dsn, [SYMBOL], days=30, seed=43)
    project, state_dir = REPO / "dbt_brain", tmp_path / "dbt"
    run_dbt(["build"], dsn=dsn, project_dir=project, state_dir=state_dir)
    marts = _marts(dsn)
    # a champion whose event is a rollback: breaks the singular test
    # assert_champions_match_their_events on the raw sources (inside this test's database)
    with connect(dsn) as conn:
        conn.execute(
            "insert into raw.model_versions (version_id, exchange, symbol, timeframe, "
            "model_type, manifest, artifact_uri, artifact_sha256, feature_set_hash, "
            "train_start, train_end, n_rows) values ('bad.v1', 'synthetic', %s, '1h', "
            "'lightgbm', '{}', 'file:///nowhere', repeat('0', 64), 'x', now(), now(), 1)",
            (SYMBOL,),
        )
        row = conn.execute(
            "insert into raw.model_events (event_type, exchange, symbol, timeframe, "
            "model_type, version_id, reason) values ('rollback', 'synthetic', %s, '1h', "
            "'lightgbm', 'bad.v1', 'planted by a test') returning event_id",
            (SYMBOL,),
        ).fetchone()
        assert row is not None
        conn.execute(
            "insert into raw.model_champions (exchange, symbol, timeframe, model_type, "
            "version_id, event_id) values ('synthetic', %s, '1h', 'lightgbm', 'bad.v1', %s)",
            (SYMBOL, row[0]),
        )
        conn.commit()
    raw = _raw_counts(dsn)

    with pytest.raises(BrainError) as failed:
        run_dbt(["build"], dsn=dsn, project_dir=project, state_dir=state_dir)
    message = str(failed.value)
    assert "\n" not in message and message.startswith("dbt build failed (exit 1)"), message
    assert "assert_champions_match_their_events" in message, message
    # raw untouched; every mart still there and readable
    assert _raw_counts(dsn) == raw
    assert _marts(dsn).keys() == marts.keys()
    # the mart that reads the champions was skipped, not rebuilt on the bad row: the
    # previous tables stay (the others were rebuilt from raw as usual)
    import json

    results = json.loads((state_dir / "target" / "run_results.json").read_text())
    status = {r["unique_id"].split(".")[-1]: r["status"] for r in results["results"]}
    assert status["assert_champions_match_their_events"] == "fail"
    for mart in ("best_model_per_symbol",):
        assert status[mart] == "skipped", (mart, status[mart])
        assert _marts(dsn)[mart] == marts[mart]


# ------------------------------------- a worker killed mid-task, retried from the API

ENTRYPOINT = "flows/daily_retrain.py:daily_retrain"
TRAINING_TASKS = ("walk_forward", "backtest_and_score", "fit_final_model", "compute_importance")


def _api(call: Callable[[Any], Any]) -> Any:
    """``await call(client)`` with a client of the session's Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def go() -> Any:
        async with get_client() as client:
            return await call(client)

    return run_coro_as_sync(go())


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    return list(_api(lambda c: c.read_task_runs(flow_run_filter=flow_runs)) or [])


def _as_a_worker(flow_run_id: Any, env: dict[str, str], log: Path) -> Any:
    """What a process worker does with a flow run: propose Pending, then run
    ``python -m prefect.engine`` with ``PREFECT__FLOW_RUN_ID`` in its own process group
    (prefect/workers/process.py, prefect/engine.py)."""
    import subprocess
    import sys

    from prefect.states import Pending

    accepted = _api(lambda c: c.set_flow_run_state(flow_run_id, Pending()))
    assert accepted.status.value == "ACCEPT", accepted
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect.engine"],
            env={**env, "PREFECT__FLOW_RUN_ID": str(flow_run_id)},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _quality_rows(dsn: str) -> list[Any]:
    with connect(dsn) as conn:
        return conn.execute(
            "select table_name, suite, expectation, success, count(*) "
            "from raw.data_quality_results group by 1, 2, 3, 4 order by 1, 2, 3, 4"
        ).fetchall()


def test_a_worker_killed_mid_task_and_retried_from_the_api_matches_an_uninterrupted_run(
    prefect_harness: None, alive: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Crashed, Scheduled

    reference_dsn, dsn = _seeded_pair(alive, [SYMBOL], seed=41)
    reference = _retrain(reference_dsn, tmp_path / "reference", monkeypatch)
    assert reference.is_completed(), reference.message

    # a deployment of daily-retrain (as prefect.yaml: run from this folder) and a run of it
    parameters = {"symbols": [SYMBOL], "lookback_days": LOOKBACK, "build_marts": False}

    async def deploy(client: Any) -> Any:
        flow_id = await client.create_flow_from_name("daily-retrain")
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name=f"worker-killed-{uuid.uuid4().hex[:6]}",
            entrypoint=ENTRYPOINT,
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
            ],
        )
        return await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)

    flow_run_id = _api(deploy).id
    home, log = tmp_path / "brain", tmp_path / "worker.log"
    artifacts = home / "artifacts"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAIN_", "PREFECT_"))}
    env.update(
        BRAIN_DATABASE_URL=dsn,
        BRAIN_HOME=str(home),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )

    # attempt 1: SIGKILL to the process group while a training task runs, before any
    # artifact (or its .partial- folder) exists: nothing of the version is written yet
    started = time.monotonic()
    proc = _as_a_worker(flow_run_id, env, log)
    running: list[str] = []
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - started < 120, "no training task ran in 120 s"
            running = [
                t.name
                for t in _task_runs(flow_run_id)
                if t.state is not None
                and t.state.is_running()
                and t.name.startswith(TRAINING_TASKS)
            ]
            assert not _artifact_folders(artifacts), "an artifact before a training task seen"
            if running:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _artifact_folders(artifacts) == []
    assert _registry_state(dsn)["versions"] == (0,)
    # the quality gate had run and recorded its results under the flow run's id
    assert {r[0] for r in _quality_rows(dsn)} == {"ohlcv"}

    # Prefect does not notice a dead process by itself: the run stays Running until
    # something marks it; here what a worker's crash detection does (it sees the
    # process exit with -9), then what the UI's "Retry" does
    run = _api(lambda c: c.read_flow_run(flow_run_id))
    assert run.state.is_running() and run.run_count == 1, run.state
    message = "Flow run infrastructure exited with non-zero status code -9."
    crashed = _api(lambda c: c.set_flow_run_state(flow_run_id, Crashed(message=message)))
    assert crashed.status.value == "ACCEPT", crashed
    retry = Scheduled(name="AwaitingRetry", message="Retry from the UI")
    scheduled = _api(lambda c: c.set_flow_run_state(flow_run_id, retry))
    assert scheduled.status.value == "ACCEPT", scheduled

    # attempt 2: the same flow run id, in a fresh process
    proc = _as_a_worker(flow_run_id, env, log)
    try:
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text()[-3000:]

    run = _api(lambda c: c.read_flow_run(flow_run_id))
    assert run.state.is_completed(), (run.state, log.read_text()[-3000:])
    assert run.run_count == 2
    history = [(s.type.value, s.name) for s in _api(lambda c: c.read_flow_run_states(flow_run_id))]
    assert history == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
        ("CRASHED", "Crashed"),
        ("SCHEDULED", "AwaitingRetry"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),  # Prefect renames reruns of task runs only
        ("COMPLETED", "Completed"),
    ], history
    deadline = time.monotonic() + 30
    second = [t for t in _task_runs(flow_run_id) if t.flow_run_run_count == 2]
    while (
        any(t.state is None or not t.state.is_final() for t in second)
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
        second = [t for t in _task_runs(flow_run_id) if t.flow_run_run_count == 2]
    assert second and all(t.state.is_completed() for t in second), [
        (t.name, t.state) for t in second
    ]
    # the first attempt's task runs stay as the dead process left them (Prefect marks
    # only the flow run): what the API last saw running is still Running there
    first = [t for t in _task_runs(flow_run_id) if t.flow_run_run_count == 1]
    assert any(t.state is not None and t.state.is_running() for t in first), [
        (t.name, t.state) for t in first
    ]

    # the warehouse equals an uninterrupted run's: the first attempt landed no version,
    # so the retry lands the only one (a first attempt killed after landing would leave
    # its version, and the retry's would be a second one judged against it: append-only)
    assert _registry_state(dsn) == _registry_state(reference_dsn)
    assert _registry_holds_together(dsn) == [(SYMBOL, "lightgbm", _champion(dsn)[0])]
    with connect(dsn) as conn:
        versions = conn.execute("select version_id, run_id from raw.model_versions").fetchall()
    assert versions == [(_champion(dsn)[0], str(flow_run_id))]
    assert _artifact_folders(artifacts) == [versions[0][0]]  # no .partial-, no orphan
    # data quality is append-only and both attempts validated the window: the gate's
    # results twice (one set per attempt, same run id), the model metrics' once
    expected = [
        (*r[:4], r[4] * 2 if r[0] == "ohlcv" else r[4]) for r in _quality_rows(reference_dsn)
    ]
    assert _quality_rows(dsn) == expected
    with connect(dsn) as conn:
        run_ids = conn.execute("select distinct run_id from raw.data_quality_results").fetchall()
    assert run_ids == [(str(flow_run_id),)]
