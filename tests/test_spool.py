"""The warehouse goes down in the middle of a daily-retrain run: the run finishes its
models, spools their records, and a replay lands them exactly once — the same rows, and
the same judgement against the champion, as an uninterrupted run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markets import seed_planted

from brain_lib import registry
from brain_lib.dbt import ensure_raw_schema
from brain_lib.spool import pending, replay
from brain_lib.warehouse import EmbeddedWarehouse, connect

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTC/USDT", "ETH/USDT"]

pytestmark = pytest.mark.slow


LOOKBACK = 190  # days of the 200 stored
PASSWORD = "spool-Secret-93c1"


def _load_market(dsn: str, state: Path) -> None:
    ensure_raw_schema(dsn, project_dir=REPO / "dbt_brain", state_dir=state)
    seed_planted(dsn, SYMBOLS, seed=31)


def _quarantine_one_candle(dsn: str, symbol: str) -> None:
    """A candle a data-quality rule put aside: the raw row stays, nothing trains on it."""
    with connect(dsn) as conn:
        conn.execute(
            "insert into raw.quarantine_ohlcv (exchange, symbol, timeframe, ts, open, high, "
            "low, close, volume, expectation, reason, severity, run_id) "
            "select exchange, symbol, timeframe, ts, open, high, low, close, volume, "
            "'expect_test', 'planted by the test', 'blocking', 'test' from raw.ohlcv "
            "where symbol = %s and ts = (select max(ts) - interval '300 hours' from raw.ohlcv "
            "where symbol = %s)",
            (symbol, symbol),
        )


def _landed(dsn: str) -> dict[str, Any]:
    """What a run leaves in the warehouse, without the ids that differ between runs."""
    with connect(dsn) as conn:
        metrics = conn.execute(
            "select v.symbol, m.scope, m.metric, m.value from raw.model_metrics m "
            "join raw.model_versions v using (version_id) order by 1, 2, 3, 4"
        ).fetchall()
        events = conn.execute(
            "select symbol, event_type, previous_version_id is null, champion_score, "
            "challenger_score, degradation, reason, details->'champion_metrics' "
            "from raw.model_events order by symbol, event_id"
        ).fetchall()
        importance = conn.execute(
            "select v.symbol, i.method, i.feature, i.importance, i.rank "
            "from raw.feature_importance i join raw.model_versions v using (version_id) "
            "order by 1, 2, 3"
        ).fetchall()
        counts = conn.execute(
            "select (select count(*) from raw.model_versions), "
            "(select count(*) from raw.model_champions)"
        ).fetchone()
    return {"metrics": metrics, "importance": importance, "events": events, "counts": counts}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[EmbeddedWarehouse, str, Path]]:
    warehouse = EmbeddedWarehouse(tmp_path / "pg-home")
    # a password the server never asks for (trust auth): no spool file may hold it
    dsn = warehouse.start().replace("postgres:@", f"postgres:{PASSWORD}@", 1)
    home = tmp_path / "brain"
    _load_market(dsn, home / "dbt")
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAIN_DATABASE_URL", dsn)
    mp.setenv("BRAIN_HOME", str(home))
    try:
        yield warehouse, dsn, home
    finally:
        mp.undo()
        warehouse.stop()


def test_stop_the_warehouse_mid_run_then_replay(
    prefect_harness: None,
    env: tuple[EmbeddedWarehouse, str, Path],
    fresh_warehouse: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    warehouse, dsn, home = env

    # reference: the same run, uninterrupted, in another database
    _load_market(fresh_warehouse, home / "dbt-ref")
    monkeypatch.setenv("BRAIN_DATABASE_URL", fresh_warehouse)
    reference = run_flow(daily_retrain, symbols=SYMBOLS, lookback_days=LOOKBACK, build_marts=False)
    assert reference.is_completed()
    monkeypatch.setenv("BRAIN_DATABASE_URL", dsn)

    # the real PostgreSQL stops when the first model is trained, before anything lands
    original = registry.save_artifact
    saved: list[str] = []
    lock = threading.Lock()

    def stop_then_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            if warehouse.is_running():
                warehouse.stop()
        stored = original(*args, **kwargs)
        saved.append(stored.version_id)
        return stored

    monkeypatch.setattr(registry, "save_artifact", stop_then_save)
    # Prefect reconfigures the root logger during a run, so listen on ours directly
    events: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: events.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("brain_lib.spool").addHandler(handler)
    try:
        state = run_flow(daily_retrain, symbols=SYMBOLS, lookback_days=LOOKBACK)
    finally:
        logging.getLogger("brain_lib.spool").removeHandler(handler)
    assert state.is_completed() and state.name == "Spooled", (state.name, state.message)
    rows = state.result()
    assert {r["status"] for r in rows} == {"spooled"}
    files = pending(home / "spool")
    assert sorted(f.stem for f in files) == sorted(saved)
    assert PASSWORD in dsn and not [f for f in files if PASSWORD.encode() in f.read_bytes()]
    assert events.count("brain_integration_failed") == len(SYMBOLS)
    assert not warehouse.is_running()

    # the warehouse comes back; the replay lands everything once
    warehouse.start()
    first = replay(dsn, home / "spool")
    assert sorted(first.landed) == sorted(saved) and not first.failed
    assert pending(home / "spool") == []
    second = replay(dsn, home / "spool")
    assert second.landed == [] and second.already == []
    assert _landed(dsn) == _landed(fresh_warehouse)
    assert _landed(dsn)["counts"] == (2, 2)


def test_replay_twice_from_a_copied_file_adds_nothing(
    prefect_harness: None, env: tuple[EmbeddedWarehouse, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool file that is landed and then shows up again (a restored backup, a crash
    between commit and delete) lands nothing the second time."""
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    warehouse, dsn, home = env
    original = registry.save_artifact

    def stop_then_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        warehouse.stop()
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "save_artifact", stop_then_save)
    state = run_flow(daily_retrain, symbols=SYMBOLS[:1], lookback_days=LOOKBACK)
    assert state.name == "Spooled"
    (spooled,) = pending(home / "spool")
    backup = spooled.read_bytes()
    warehouse.start()
    assert len(replay(dsn, home / "spool").landed) == 1
    spooled.write_bytes(backup)
    again = replay(dsn, home / "spool")
    assert again.already == [spooled.stem] and again.landed == []
    with connect(dsn) as conn:
        assert conn.execute("select count(*) from raw.model_versions").fetchone() == (1,)
        assert conn.execute("select count(*) from raw.model_events").fetchone() == (1,)


def test_a_spooled_challenger_is_judged_exactly_as_a_live_one(
    prefect_harness: None,
    env: tuple[EmbeddedWarehouse, str, Path],
    fresh_warehouse: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A champion exists and a candle of the window is quarantined; the challenger (other
    hyperparameters, so the champion's recipe must be replayed) is spooled and landed
    later. Its judgement — the champion's replay on the same bars, both scores, the
    degradation, the decision — is the one a live run makes on the same data, and the
    quarantined candle does not stop the file from landing."""
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    warehouse, dsn, home = env
    symbol = SYMBOLS[0]
    challenger = {"lightgbm": {"num_leaves": 7, "num_boost_round": 120}}
    _load_market(fresh_warehouse, home / "dbt-ref")
    for target in (fresh_warehouse, dsn):
        _quarantine_one_candle(target, symbol)
        monkeypatch.setenv("BRAIN_DATABASE_URL", target)
        first = run_flow(daily_retrain, symbols=[symbol], lookback_days=LOOKBACK, build_marts=False)
        assert first.is_completed(), first.message
    # live, on the reference
    monkeypatch.setenv("BRAIN_DATABASE_URL", fresh_warehouse)
    live = run_flow(
        daily_retrain,
        symbols=[symbol],
        lookback_days=LOOKBACK,
        model_params=challenger,
        build_marts=False,
    )
    assert live.is_completed(), live.message
    # spooled, on the warehouse that goes down before the version lands
    monkeypatch.setenv("BRAIN_DATABASE_URL", dsn)
    original = registry.save_artifact

    def stop_then_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        if warehouse.is_running():
            warehouse.stop()
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "save_artifact", stop_then_save)
    state = run_flow(
        daily_retrain,
        symbols=[symbol],
        lookback_days=LOOKBACK,
        model_params=challenger,
        build_marts=False,
    )
    assert state.name == "Spooled", state.message
    warehouse.start()
    report = replay(dsn, home / "spool")
    assert len(report.landed) == 1 and not report.failed, report
    landed, reference = _landed(dsn), _landed(fresh_warehouse)
    assert landed == reference
    events = landed["events"]
    assert len(events) == 2 and events[1][3] is not None  # the champion was scored
    assert "champion" in (events[1][6] or "")  # judged against it, not waved through
