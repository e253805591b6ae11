"""Champion and challenger on a real PostgreSQL: promotion, automatic rollback, manual
changes, atomicity, one champion under concurrency, tampered artifacts refused."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from composite_reference import composite_score as reference_composite

from brain_lib import registry
from brain_lib.errors import (
    ArtifactError,
    BrainError,
    ManifestError,
    NoModelError,
    UnknownVersionError,
)
from brain_lib.market import SyntheticMarket
from brain_lib.registry import decide, degradation, judge_and_record, load_model, register_version
from brain_lib.training import TrainingConfig, TrainingResult, train_symbol
from brain_lib.warehouse import connect

GOOD = TrainingConfig(
    params={"num_boost_round": 60, "num_leaves": 7, "min_data_in_leaf": 50},
    n_splits=3,
    embargo=6,
    fee_bps=1.0,
    min_rows=300,
)
# a planted worse challenger: no split can be made, so it predicts a constant
BAD = dataclasses.replace(GOOD, params={**GOOD.params, "min_data_in_leaf": 1_000_000})


def _candles(symbol: str = "SOL/USDT", periods: int = 2000) -> pd.DataFrame:
    frame = SyntheticMarket(seed=21, autocorr=-0.2).candles(symbol, periods)
    return frame.set_index("ts").drop(columns="regime")


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return _candles()


@pytest.fixture(scope="module")
def good(candles: pd.DataFrame) -> TrainingResult:
    return train_symbol(candles, exchange="synthetic", symbol="SOL/USDT", config=GOOD)


@pytest.fixture(scope="module")
def bad(candles: pd.DataFrame) -> TrainingResult:
    return train_symbol(candles, exchange="synthetic", symbol="SOL/USDT", config=BAD)


def _register(
    dsn: str,
    result: TrainingResult,
    candles: pd.DataFrame,
    root: Path,
    config: TrainingConfig,
    **kw,
):  # type: ignore[no-untyped-def]
    with connect(dsn) as conn:
        return register_version(
            conn,
            result,
            artifact_root=str(root),
            candles=candles,
            config=config,
            threshold=0.05,
            **kw,
        )


def _champion(dsn: str, symbol: str = "SOL/USDT") -> str | None:
    with connect(dsn) as conn:
        row = conn.execute(
            "select version_id from raw.model_champions "
            "where symbol = %s and model_type = 'lightgbm'",
            (symbol,),
        ).fetchone()
    return row[0] if row else None


def _events(dsn: str, symbol: str = "SOL/USDT") -> list[tuple]:  # type: ignore[type-arg]
    with connect(dsn) as conn:
        return conn.execute(
            "select event_type, version_id, previous_version_id, champion_score, challenger_score, "
            "degradation, reason from raw.model_events where symbol = %s order by event_id",
            (symbol,),
        ).fetchall()


# --------------------------------------------------------------- pure decisions


@pytest.mark.parametrize(
    ("champion", "challenger", "expected"),
    [
        (0.5, 0.4, 0.2),  # (0.5 - 0.4) / 0.5
        (0.5, 0.6, -0.2),  # better challenger: negative degradation
        (-0.5, -0.6, 0.2),  # negative champion: (−0.5 + 0.6) / 0.5, worse
        (-0.5, -0.4, -0.2),  # negative champion, better challenger
        (0.0, 0.1, 0.0),  # zero champion, challenger not below it
        (0.0, 0.0, 0.0),
        (0.0, -0.1, math.inf),  # zero champion, challenger below it: infinitely worse
    ],
)
def test_degradation_table(champion: float, challenger: float, expected: float) -> None:
    assert degradation(champion, challenger) == pytest.approx(expected)


def test_degradation_nan() -> None:
    assert math.isnan(degradation(math.nan, 0.3))
    assert math.isnan(degradation(0.3, math.nan))


@pytest.mark.parametrize(
    ("champion", "challenger", "action"),
    [
        (None, 0.1, "promotion"),  # first model
        (math.nan, -0.9, "promotion"),  # champion cannot be scored
        (0.5, math.nan, "rollback"),  # challenger cannot be scored
        (0.5, 0.476, "promotion"),  # 4.8 % worse: within 5 %
        (0.5, 0.47, "rollback"),  # 6 % worse
        (0.5, 0.475, "promotion"),  # exactly 5 %: not above the threshold
        (-0.2, -0.3, "rollback"),  # 50 % worse
    ],
)
def test_decide_table(champion: float | None, challenger: float, action: str) -> None:
    assert decide(champion, challenger, 0.05)[0] == action


# ----------------------------------------------------------------- integration


def test_first_model_is_promoted_then_same_recipe_promoted(
    warehouse_dsn: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    first, decision = _register(warehouse_dsn, good, candles, tmp_path, GOOD)
    assert decision.action == "promotion" and decision.champion_version_id is None
    assert _champion(warehouse_dsn) == first.version_id
    # retrain with the same recipe on the same data: the replay is skipped as identical
    second, decision = _register(warehouse_dsn, good, candles, tmp_path, GOOD)
    assert decision.action == "promotion"
    assert decision.champion_version_id == first.version_id
    assert decision.degradation == 0.0
    assert "same recipe" in (decision.champion_evaluation or "")
    assert _champion(warehouse_dsn) == second.version_id
    events = _events(warehouse_dsn)
    assert [e[0] for e in events] == ["promotion", "promotion"]
    assert events[1][1:3] == (second.version_id, first.version_id)
    with connect(warehouse_dsn) as conn:
        challenged = conn.execute(
            "select challenged_version_id, manifest->>'challenged_version_id', code_version "
            "from raw.model_versions where version_id = %s",
            (second.version_id,),
        ).fetchone()
    assert challenged is not None
    assert challenged[0] == challenged[1] == first.version_id
    assert challenged[2] and challenged[2].startswith("0.")


def test_planted_worse_challenger_is_rolled_back(
    warehouse_dsn: str,
    good: TrainingResult,
    bad: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    champion = _champion(warehouse_dsn)
    assert champion is not None
    stored, decision = _register(warehouse_dsn, bad, candles, tmp_path, BAD)
    assert decision.action == "rollback", decision
    # the champion was scored by replaying its recipe on the challenger's window
    assert "replayed" in (decision.champion_evaluation or "")
    assert decision.champion_metrics["sharpe"] == pytest.approx(good.metrics["sharpe"])
    assert decision.champion_score is not None and decision.challenger_score is not None
    assert decision.degradation == pytest.approx(
        (decision.champion_score - decision.challenger_score) / abs(decision.champion_score)
    )
    assert decision.degradation > 0.05
    assert _champion(warehouse_dsn) == champion  # the champion stays
    kind, version, previous, champ_score, chall_score, degr, reason = _events(warehouse_dsn)[-1]
    assert (kind, version, previous) == ("rollback", stored.version_id, champion)
    assert champ_score == pytest.approx(decision.champion_score)
    assert chall_score == pytest.approx(decision.challenger_score)
    assert degr == pytest.approx(decision.degradation)
    assert "worse than champion" in reason
    assert any(r.message == "model_rollback_occurred" for r in caplog.records)
    # the refused version is stored all the same, with its metrics
    with connect(warehouse_dsn) as conn:
        assert (
            conn.execute(
                "select count(*) from raw.model_metrics where version_id = %s", (stored.version_id,)
            ).fetchone()[0]
            > 5
        )  # type: ignore[index]


def test_composite_scores_come_from_the_sql_function(
    warehouse_dsn: str, good: TrainingResult
) -> None:
    with connect(warehouse_dsn) as conn:
        score = registry.composite_score(conn, good.metrics)
    assert score == pytest.approx(reference_composite(good.metrics), rel=1e-12)


def test_manual_promote_and_rollback(warehouse_dsn: str, tmp_path: Path) -> None:
    # autocommit: each registry call is its own transaction, visible to other sessions at once
    with connect(warehouse_dsn, autocommit=True) as conn:
        versions = [
            r[0]
            for r in conn.execute(
                "select version_id from raw.model_versions "
                "where symbol = 'SOL/USDT' order by created_at"
            ).fetchall()
        ]
        current = _champion(warehouse_dsn)
        rejected = versions[-1]
        assert current != rejected
        previous = registry.promote(conn, rejected, reason="analyst override")
        assert previous == current and _champion(warehouse_dsn) == rejected
        restored, demoted = registry.rollback(conn, "SOL/USDT", reason="override was wrong")
        assert (restored, demoted) == (current, rejected)
        assert _champion(warehouse_dsn) == current
        with pytest.raises(BrainError, match="already the champion"):
            registry.promote(conn, current, reason="again")
        with pytest.raises(UnknownVersionError, match="unknown model version 'nope'"):
            registry.promote(conn, "nope", reason="x")
        with pytest.raises(NoModelError, match="DOGE/USDT has no champion"):
            registry.rollback(conn, "DOGE/USDT", reason="x")
    kinds = [e[0] for e in _events(warehouse_dsn)[-2:]]
    assert kinds == ["manual_promotion", "manual_rollback"]
    assert _events(warehouse_dsn)[-1][6] == "override was wrong"


def test_failed_promotion_leaves_the_old_champion(
    warehouse_dsn: str,
    good: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before_champion = _champion(warehouse_dsn)
    before_events = len(_events(warehouse_dsn))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("power cut between the event and the champion switch")

    monkeypatch.setattr(registry, "_set_champion", broken)
    with pytest.raises(RuntimeError, match="power cut"):
        _register(warehouse_dsn, good, candles, tmp_path, GOOD)
    assert _champion(warehouse_dsn) == before_champion
    assert len(_events(warehouse_dsn)) == before_events
    with connect(warehouse_dsn) as conn:
        orphans = conn.execute(
            "select count(*) from raw.model_versions v where not exists "
            "(select 1 from raw.model_events e where e.version_id = v.version_id)"
        ).fetchone()
    assert orphans == (0,)


def test_tampered_missing_and_newer_artifacts_are_refused(warehouse_dsn: str) -> None:
    champion = _champion(warehouse_dsn)
    assert champion is not None
    with connect(warehouse_dsn) as conn:
        info = registry.get_version(conn, champion)
    model = load_model(info.artifact_uri, info.artifact_sha256, info.manifest, champion)
    assert model.model_type == "lightgbm"
    path = Path(info.artifact_uri)
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"tree", b"tres", 1))
        with pytest.raises(ArtifactError, match="refusing to load a changed artifact"):
            load_model(info.artifact_uri, info.artifact_sha256, info.manifest, champion)
        path.unlink()
        with pytest.raises(ArtifactError, match="artifact is missing"):
            load_model(info.artifact_uri, info.artifact_sha256, info.manifest, champion)
    finally:
        path.write_bytes(original)
    newer = {**info.manifest, "manifest_format": 99}
    with pytest.raises(ManifestError, match="manifest format 99 is newer"):
        load_model(info.artifact_uri, info.artifact_sha256, newer, champion)


def test_versions_are_append_only(warehouse_dsn: str) -> None:
    import psycopg

    with pytest.raises(psycopg.Error, match="append-only"), connect(warehouse_dsn) as conn:
        conn.execute("update raw.model_versions set n_rows = 0")
    with pytest.raises(psycopg.Error, match="append-only"), connect(warehouse_dsn) as conn:
        conn.execute("delete from raw.model_events")


def test_overlapping_judgements_are_serialised(
    fresh_dsn: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    """Two runs judging the same symbol at once: the second waits for the first and
    challenges the champion the first one installed."""
    from brain_lib.dbt import ensure_raw_schema

    ensure_raw_schema(
        fresh_dsn, project_dir=Path("dbt_brain").resolve(), state_dir=tmp_path / "dbt"
    )
    results: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            results[name] = _register(fresh_dsn, good, candles, tmp_path, GOOD)
        except Exception as exc:  # surfaced below
            results[name] = exc

    with connect(fresh_dsn) as holder:
        # hold the symbol's lock as a run in the middle of its judgement would
        with holder.transaction():
            registry._lock(holder, "synthetic", "SOL/USDT", "1h", "lightgbm")
            threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
            for t in threads:
                t.start()
            time.sleep(1.5)
            assert not results, "a run judged while another held the champion lock"
        for t in threads:
            t.join(120)
    decisions = [results["a"], results["b"]]
    assert all(isinstance(d, tuple) for d in decisions), decisions
    events = _events(fresh_dsn)
    assert [e[0] for e in events] == ["promotion", "promotion"]
    # serialised: the second promotion replaced the first, not "nothing"
    assert events[0][2] is None and events[1][2] == events[0][1]
    assert _champion(fresh_dsn) == events[1][1]


def test_event_time_can_be_given(
    fresh_dsn: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    from brain_lib.dbt import ensure_raw_schema

    ensure_raw_schema(
        fresh_dsn, project_dir=Path("dbt_brain").resolve(), state_dir=tmp_path / "dbt"
    )
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    _register(fresh_dsn, good, candles, tmp_path, GOOD, at=at)
    with connect(fresh_dsn) as conn:
        row = conn.execute("select created_at from raw.model_events").fetchone()
        since = conn.execute("select since from raw.model_champions").fetchone()
    assert row == (at,) and since == (at,)


def test_judge_and_record_is_idempotent(
    fresh_dsn: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    from brain_lib.dbt import ensure_raw_schema

    ensure_raw_schema(
        fresh_dsn, project_dir=Path("dbt_brain").resolve(), state_dir=tmp_path / "dbt"
    )
    stored = registry.save_artifact(good, str(tmp_path / "a"), "v-idem")
    record = registry.record_from_result(good, stored, None)
    with connect(fresh_dsn) as conn:
        first = judge_and_record(conn, record, candles=candles, config=GOOD, threshold=0.05)
        again = judge_and_record(conn, record, candles=candles, config=GOOD, threshold=0.05)
    assert first.action == "promotion" and again.action == "exists"
    assert len(_events(fresh_dsn)) == 1
