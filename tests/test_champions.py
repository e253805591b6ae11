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
from markets import planted

from brain_lib import registry
from brain_lib.errors import (
    ArtifactError,
    BrainError,
    ManifestError,
    NoModelError,
    UnknownVersionError,
)
from brain_lib.policy import PolicySpec
from brain_lib.registry import (
    JudgementRules,
    decide,
    degradation,
    judge_and_record,
    load_model,
    register_version,
    verdict,
)
from brain_lib.training import TrainingConfig, TrainingResult, train_symbol
from brain_lib.warehouse import connect

GOOD = TrainingConfig()  # the defaults: horizon 8, the band policy, 5 bps
# a planted worse challenger: the same model traded by the naive sign rule (it churns,
# pays fees and draws down hard on this market: seed 22 scores 0.54 against 0.65)
WORSE_POLICY = dataclasses.replace(GOOD, policy=PolicySpec(kind="sign"))
# a model with nothing to say: no split can be made, so it predicts a constant and
# its policy never trades
FLAT = dataclasses.replace(GOOD, params={"min_data_in_leaf": 1_000_000})


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return planted(22, 8760, symbol="SOL/USDT")


def _train(candles: pd.DataFrame, config: TrainingConfig) -> TrainingResult:
    return train_symbol(candles, exchange="synthetic", symbol="SOL/USDT", config=config)


@pytest.fixture(scope="module")
def good(candles: pd.DataFrame) -> TrainingResult:
    return _train(candles, GOOD)


@pytest.fixture(scope="module")
def worse_policy(candles: pd.DataFrame) -> TrainingResult:
    return _train(candles, WORSE_POLICY)


@pytest.fixture(scope="module")
def flat(candles: pd.DataFrame) -> TrainingResult:
    return _train(candles, FLAT)


def _register(
    dsn: str,
    result: TrainingResult,
    candles: pd.DataFrame,
    root: Path,
    config: TrainingConfig,
    rules: JudgementRules | None = None,
    **kw,
):  # type: ignore[no-untyped-def]
    with connect(dsn) as conn:
        return register_version(
            conn,
            result,
            artifact_root=str(root),
            candles=candles,
            config=config,
            rules=rules or JudgementRules(),
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
    ("champion", "challenger", "min_abs", "action"),
    [
        (None, 0.1, 0.02, "promotion"),  # no champion score on this window
        (math.nan, -0.9, 0.02, "promotion"),  # champion cannot be scored: no evidence
        (0.5, math.nan, 0.02, "rollback"),  # challenger cannot be scored
        (0.5, 0.476, 0.02, "promotion"),  # 4.8 % worse: within 5 %
        (0.5, 0.47, 0.02, "rollback"),  # 6 % worse, and 0.03 > the absolute band
        (0.5, 0.475, 0.02, "promotion"),  # exactly 5 %: not above the threshold
        (-0.2, -0.3, 0.02, "rollback"),  # 50 % worse
        # near zero a relative rule flips on noise: 0.004 vs 0.0037 is "7.5 % worse",
        # but a drop of 0.0003 is inside the absolute band
        (0.004, 0.0037, 0.02, "promotion"),
        (0.004, 0.0037, 0.0, "rollback"),  # without the band: the old, noisy rule
        (0.01, -0.02, 0.02, "rollback"),  # a real drop across zero: 0.03 > 0.02
    ],
)
def test_decide_table(
    champion: float | None, challenger: float, min_abs: float, action: str
) -> None:
    assert decide(champion, challenger, 0.05, min_abs)[0] == action


@pytest.mark.parametrize(
    ("case", "action", "reason"),
    [
        ({"evidence": "no evidence: 0 round trips"}, "rollback", "no evidence"),
        (
            {"has_champion": False, "evidence": "no evidence: 3 round trips"},
            "rollback",
            "no champion is set",
        ),
        ({"challenger_score": math.nan}, "rollback", "no composite score"),
        ({"dsr": 0.3}, "rollback", "likely luck: deflated Sharpe ratio 0.300 < 0.5 over 4"),
        ({"dsr": math.nan}, "rollback", "deflated Sharpe ratio undefined"),
        ({"dsr": 0.5}, "promotion", "degradation"),  # the minimum itself promotes
        ({"has_champion": False}, "promotion", ""),
        ({"champion_score": math.nan}, "promotion", "no composite score on this window"),
        ({"champion_score": 0.9}, "rollback", "worse than champion"),
    ],
)
def test_verdict_table(case: dict[str, object], action: str, reason: str) -> None:
    """The whole rule table (docs/registry.md): evidence, score, luck, then degradation."""
    inputs: dict[str, object] = {
        "has_champion": True,
        "champion_score": 0.6,
        "challenger_score": 0.6,
        "evidence": None,
        "dsr": 0.97,
        "n_trials": 4,
        "rules": JudgementRules(),
    }
    inputs.update(case)
    got, _, why = verdict(**inputs)  # type: ignore[arg-type]
    assert got == action
    assert reason in why


def test_bad_rules_are_named() -> None:
    with pytest.raises(BrainError, match="min_dsr"):
        JudgementRules(min_dsr=1.5)
    with pytest.raises(BrainError, match="min_abs_degradation"):
        JudgementRules(min_abs_degradation=-0.1)


# ----------------------------------------------------------------- integration


def test_first_model_is_promoted_then_same_recipe_promoted(
    fresh_warehouse: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    first, decision = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    assert decision.action == "promotion" and decision.champion_version_id is None
    assert _champion(fresh_warehouse) == first.version_id
    # retrain with the same recipe on the same data: the replay is skipped as identical
    second, decision = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    assert decision.action == "promotion"
    assert decision.champion_version_id == first.version_id
    assert decision.degradation == 0.0
    assert "same recipe" in (decision.champion_evaluation or "")
    assert _champion(fresh_warehouse) == second.version_id
    events = _events(fresh_warehouse)
    assert [e[0] for e in events] == ["promotion", "promotion"]
    assert events[1][1:3] == (second.version_id, first.version_id)
    with connect(fresh_warehouse) as conn:
        challenged = conn.execute(
            "select challenged_version_id, manifest->>'challenged_version_id', code_version "
            "from raw.model_versions where version_id = %s",
            (second.version_id,),
        ).fetchone()
    assert challenged is not None
    assert challenged[0] == challenged[1] == first.version_id
    assert challenged[2] and challenged[2].startswith("0.")


def test_a_planted_worse_policy_is_rolled_back_against_the_champions_own_policy(
    fresh_warehouse: str,
    good: TrainingResult,
    worse_policy: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Same model, same data, the naive sign rule instead of the band: the champion's
    recipe is replayed with the champion's recorded policy (not the challenger's), on
    the challenger's bars, and the challenger is refused."""
    champion, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    stored, decision = _register(fresh_warehouse, worse_policy, candles, tmp_path, WORSE_POLICY)
    assert decision.action == "rollback", decision
    assert "replayed" in (decision.champion_evaluation or "")
    # the replay traded as the champion trades: the band's positions, not the sign's
    replay = decision.champion_metrics
    for name in ("sharpe", "exposure", "round_trips", "turnover_per_bar"):
        assert replay[name] == pytest.approx(good.metrics[name], rel=1e-9), name
    assert replay["exposure"] < worse_policy.metrics["exposure"] == 1.0
    assert decision.champion_score is not None and decision.challenger_score is not None
    assert decision.degradation == pytest.approx(
        (decision.champion_score - decision.challenger_score) / abs(decision.champion_score)
    )
    assert decision.degradation > 0.05
    assert decision.champion_score - decision.challenger_score > 0.02
    assert _champion(fresh_warehouse) == champion.version_id  # the champion stays
    kind, version, previous, champ_score, chall_score, degr, reason = _events(fresh_warehouse)[-1]
    assert (kind, version, previous) == ("rollback", stored.version_id, champion.version_id)
    assert champ_score == pytest.approx(decision.champion_score)
    assert chall_score == pytest.approx(decision.challenger_score)
    assert degr == pytest.approx(decision.degradation)
    assert "worse than champion" in reason
    assert any(r.message == "model_rollback_occurred" for r in caplog.records)
    with connect(fresh_warehouse) as conn:
        # the refused version is stored all the same, with its metrics, and the
        # champion's replay on its bars beside them
        scopes = dict(
            conn.execute(
                "select scope, count(*) from raw.model_metrics where version_id = %s "
                "group by scope",
                (stored.version_id,),
            ).fetchall()
        )
        replayed_sharpe = conn.execute(
            "select value from raw.model_metrics where version_id = %s "
            "and scope = 'champion_replay' and metric = 'sharpe'",
            (stored.version_id,),
        ).fetchone()
    assert scopes["oos"] > 20 and scopes["champion_replay"] > 20
    assert replayed_sharpe == (pytest.approx(good.metrics["sharpe"]),)


def test_a_model_that_never_trades_is_never_promoted(
    fresh_warehouse: str,
    good: TrainingResult,
    flat: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """No evidence is not a score: a flat challenger neither becomes the first champion
    nor replaces one, and says why."""
    assert flat.metrics["round_trips"] == 0
    _, decision = _register(fresh_warehouse, flat, candles, tmp_path, FLAT)
    assert decision.action == "rollback"
    assert decision.challenger_score is not None and math.isnan(decision.challenger_score)
    assert "no evidence: no round trips" in decision.reason
    assert "no champion is set" in decision.reason
    assert _champion(fresh_warehouse) is None
    champion, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    _, decision = _register(fresh_warehouse, flat, candles, tmp_path, FLAT)
    assert decision.action == "rollback" and "no evidence" in decision.reason
    assert _champion(fresh_warehouse) == champion.version_id
    with connect(fresh_warehouse) as conn:
        stored = registry.composite_score(conn, flat.metrics)
    assert math.isnan(stored)


def test_the_deflated_sharpe_counts_the_trials_and_refuses_luck(
    fresh_warehouse: str,
    good: TrainingResult,
    worse_policy: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """Trials are the distinct recipes in the registry for the symbol (a retrain of the
    same recipe is not a new one); a challenger whose DSR is below min_dsr is refused."""
    first, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    _register(fresh_warehouse, worse_policy, candles, tmp_path, WORSE_POLICY)

    def dsr_of(version_id: str) -> dict[str, float]:
        with connect(fresh_warehouse) as conn:
            rows = conn.execute(
                "select metric, value from raw.model_metrics where version_id = %s "
                "and scope = 'oos' and metric in ('dsr', 'dsr_trials', 'psr', "
                "'dsr_benchmark_sharpe')",
                (version_id,),
            ).fetchall()
        return dict(rows)

    one = dsr_of(first.version_id)
    assert one["dsr_trials"] == 1.0 and one["dsr"] == pytest.approx(one["psr"])
    assert one["dsr_benchmark_sharpe"] == 0.0
    # a third registration of the first recipe: still two trials, and the spread of
    # their Sharpe ratios raises the bar the DSR measures against
    strict = JudgementRules(min_dsr=min(1.0, one["dsr"] + 1e-9))
    third, decision = _register(fresh_warehouse, good, candles, tmp_path, GOOD, rules=strict)
    three = dsr_of(third.version_id)
    assert three["dsr_trials"] == 2.0
    assert three["dsr_benchmark_sharpe"] > 0.0 and three["dsr"] < one["dsr"]
    assert decision.action == "rollback"
    assert "its Sharpe is likely luck" in decision.reason and "over 2 trial(s)" in decision.reason
    assert _champion(fresh_warehouse) == first.version_id


def test_composite_scores_come_from_the_sql_function(
    fresh_warehouse: str, good: TrainingResult, flat: TrainingResult
) -> None:
    with connect(fresh_warehouse) as conn:
        score = registry.composite_score(conn, good.metrics)
        assert score == pytest.approx(reference_composite(good.metrics), rel=1e-12)
        assert registry.evidence_gap(conn, good.metrics) is None
        assert math.isnan(registry.composite_score(conn, flat.metrics))
        assert reference_composite(flat.metrics) is None
        gap = registry.evidence_gap(conn, flat.metrics)
    assert gap is not None and "at least 10 round trips" in gap


def test_manual_promote_and_rollback(
    fresh_warehouse: str,
    good: TrainingResult,
    worse_policy: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
) -> None:
    current, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    rejected, decision = _register(fresh_warehouse, worse_policy, candles, tmp_path, WORSE_POLICY)
    assert decision.action == "rollback"
    # autocommit: each registry call is its own transaction, visible to other sessions at once
    with connect(fresh_warehouse, autocommit=True) as conn:
        previous = registry.promote(conn, rejected.version_id, reason="analyst override")
        assert previous == current.version_id
        assert _champion(fresh_warehouse) == rejected.version_id
        restored, demoted = registry.rollback(conn, "SOL/USDT", reason="override was wrong")
        assert (restored, demoted) == (current.version_id, rejected.version_id)
        assert _champion(fresh_warehouse) == current.version_id
        with pytest.raises(BrainError, match="already the champion"):
            registry.promote(conn, current.version_id, reason="again")
        with pytest.raises(UnknownVersionError, match="unknown model version 'nope'"):
            registry.promote(conn, "nope", reason="x")
        with pytest.raises(NoModelError, match="DOGE/USDT has no champion"):
            registry.rollback(conn, "DOGE/USDT", reason="x")
    kinds = [e[0] for e in _events(fresh_warehouse)[-2:]]
    assert kinds == ["manual_promotion", "manual_rollback"]
    assert _events(fresh_warehouse)[-1][6] == "override was wrong"


def test_a_corrupt_artifact_is_never_made_champion(
    fresh_warehouse: str,
    good: TrainingResult,
    worse_policy: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """Promote and rollback verify the artifact before they write: a changed or missing
    one is refused with a line naming the version, and nothing is written."""
    current, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    rejected, _ = _register(fresh_warehouse, worse_policy, candles, tmp_path, WORSE_POLICY)
    events = len(_events(fresh_warehouse))
    target = Path(rejected.artifact_uri)
    original = target.read_bytes()
    target.write_bytes(original[:-50])
    with connect(fresh_warehouse, autocommit=True) as conn:
        with pytest.raises(ArtifactError, match=f"refusing to promote {rejected.version_id}"):
            registry.promote(conn, rejected.version_id, reason="analyst override")
        assert _champion(fresh_warehouse) == current.version_id
        assert len(_events(fresh_warehouse)) == events
        target.write_bytes(original)
        registry.promote(conn, rejected.version_id, reason="analyst override")
        # now the version a rollback would restore is the one that is gone
        Path(current.artifact_uri).unlink()
        with pytest.raises(ArtifactError, match=r"refusing to roll back to .*artifact is missing"):
            registry.rollback(conn, "SOL/USDT", reason="override was wrong")
    assert _champion(fresh_warehouse) == rejected.version_id
    assert len(_events(fresh_warehouse)) == events + 1


def test_failed_promotion_leaves_the_old_champion(
    fresh_warehouse: str,
    good: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    before_events = len(_events(fresh_warehouse))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("power cut between the event and the champion switch")

    monkeypatch.setattr(registry, "_set_champion", broken)
    with pytest.raises(RuntimeError, match="power cut"):
        _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    assert _champion(fresh_warehouse) == before.version_id
    assert len(_events(fresh_warehouse)) == before_events
    with connect(fresh_warehouse) as conn:
        orphans = conn.execute(
            "select count(*) from raw.model_versions v where not exists "
            "(select 1 from raw.model_events e where e.version_id = v.version_id)"
        ).fetchone()
        metrics = conn.execute(
            "select count(distinct version_id) from raw.model_metrics"
        ).fetchone()
    assert orphans == (0,) and metrics == (1,)


def test_tampered_missing_and_newer_artifacts_are_refused(
    fresh_warehouse: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    champion, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    with connect(fresh_warehouse) as conn:
        info = registry.get_version(conn, champion.version_id)
    model = load_model(info.artifact_uri, info.artifact_sha256, info.manifest, info.version_id)
    assert model.model_type == "lightgbm"
    path = Path(info.artifact_uri)
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"tree", b"tres", 1))
        with pytest.raises(ArtifactError, match="refusing to load a changed artifact"):
            load_model(info.artifact_uri, info.artifact_sha256, info.manifest, info.version_id)
        path.unlink()
        with pytest.raises(ArtifactError, match="artifact is missing"):
            load_model(info.artifact_uri, info.artifact_sha256, info.manifest, info.version_id)
    finally:
        path.write_bytes(original)
    newer = {**info.manifest, "manifest_format": 99}
    with pytest.raises(ManifestError, match="manifest format 99 is newer"):
        load_model(info.artifact_uri, info.artifact_sha256, newer, info.version_id)


def test_versions_are_append_only(
    fresh_warehouse: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    import psycopg

    _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    with pytest.raises(psycopg.Error, match="append-only"), connect(fresh_warehouse) as conn:
        conn.execute("update raw.model_versions set n_rows = 0")
    with pytest.raises(psycopg.Error, match="append-only"), connect(fresh_warehouse) as conn:
        conn.execute("delete from raw.model_events")


def test_overlapping_judgements_are_serialised(
    fresh_warehouse: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    """Two runs judging the same symbol at once: the second waits for the first and
    challenges the champion the first one installed."""
    results: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            results[name] = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
        except Exception as exc:  # surfaced below
            results[name] = exc

    with connect(fresh_warehouse) as holder:
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
    events = _events(fresh_warehouse)
    assert [e[0] for e in events] == ["promotion", "promotion"]
    # serialised: the second promotion replaced the first, not "nothing"
    assert events[0][2] is None and events[1][2] == events[0][1]
    assert _champion(fresh_warehouse) == events[1][1]


def test_event_time_can_be_given(
    fresh_warehouse: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    _register(fresh_warehouse, good, candles, tmp_path, GOOD, at=at)
    with connect(fresh_warehouse) as conn:
        row = conn.execute("select created_at from raw.model_events").fetchone()
        since = conn.execute("select since from raw.model_champions").fetchone()
    assert row == (at,) and since == (at,)


def test_judge_and_record_is_idempotent(
    fresh_warehouse: str, good: TrainingResult, candles: pd.DataFrame, tmp_path: Path
) -> None:
    stored = registry.save_artifact(good, str(tmp_path / "a"), "v-idem")
    record = registry.record_from_result(good, stored, None)
    with connect(fresh_warehouse) as conn:
        first = judge_and_record(conn, record, candles=candles, config=GOOD)
        again = judge_and_record(conn, record, candles=candles, config=GOOD)
    assert first.action == "promotion" and again.action == "exists"
    assert len(_events(fresh_warehouse)) == 1


# --------------------------------------------------- a champion that cannot be served


def _champions(dsn: str) -> list[tuple]:  # type: ignore[type-arg]
    with connect(dsn) as conn:
        return conn.execute(
            "select symbol, model_type, version_id, event_id from raw.model_champions"
        ).fetchall()


def _assert_one_loadable_champion(dsn: str, expected: str) -> None:
    rows = _champions(dsn)
    assert [(r[0], r[1], r[2]) for r in rows] == [("SOL/USDT", "lightgbm", expected)]
    with connect(dsn) as conn:
        info = registry.get_version(conn, expected)
    registry.verify_servable(info, "serve")


def test_an_unservable_champion_is_replaced_by_a_passing_challenger(
    fresh_warehouse: str,
    good: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The champion's artifact changed on disk: the run says so, records a
    champion_unservable event, judges the challenger against the champion's recipe as
    usual, and the passing challenger replaces it."""
    champion, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    artifact = Path(champion.artifact_uri)
    artifact.write_bytes(artifact.read_bytes().replace(b"tree", b"tres", 1))
    with caplog.at_level("WARNING", logger="brain_lib.registry"):
        stored, decision = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    assert decision.action == "promotion"
    assert decision.champion_fault is not None and "sha256" in decision.champion_fault
    assert decision.serving_version_id == stored.version_id
    # judged on the recipe as usual: the same recipe, so equal scores
    assert decision.champion_score == pytest.approx(decision.challenger_score)
    assert f"champion {champion.version_id} cannot be served" in decision.reason
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(champion.version_id in w and "sha256" in w for w in warned), warned
    events = _events(fresh_warehouse)
    assert [(e[0], e[1], e[2]) for e in events] == [
        ("promotion", champion.version_id, None),
        ("champion_unservable", stored.version_id, champion.version_id),
        ("promotion", stored.version_id, champion.version_id),
    ]
    assert "sha256" in events[1][6] and f"{stored.version_id} replaces it" in events[1][6]
    _assert_one_loadable_champion(fresh_warehouse, stored.version_id)
    assert _champions(fresh_warehouse)[0][3] == max(
        r[0] for r in _event_ids(fresh_warehouse)
    )  # the promotion, not the unservable event, made it champion


def _event_ids(dsn: str) -> list[tuple]:  # type: ignore[type-arg]
    with connect(dsn) as conn:
        return conn.execute("select event_id from raw.model_events").fetchall()


def test_an_unservable_champion_never_stays_when_the_challenger_fails(
    fresh_warehouse: str,
    good: TrainingResult,
    worse_policy: TrainingResult,
    candles: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """A refused challenger is not promoted by default; the champion whose artifact is
    missing gives way to the newest earlier champion that loads, and when none loads
    the key is left without a champion. Both are events."""
    earlier, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    champion, _ = _register(fresh_warehouse, good, candles, tmp_path, GOOD)
    Path(champion.artifact_uri).unlink()
    stored, decision = _register(fresh_warehouse, worse_policy, candles, tmp_path, WORSE_POLICY)
    assert decision.action == "rollback"
    assert decision.champion_fault is not None and "missing" in decision.champion_fault
    assert decision.champion_score is not None and not math.isnan(decision.champion_score)
    assert decision.serving_version_id == earlier.version_id
    events = _events(fresh_warehouse)
    assert [(e[0], e[1], e[2]) for e in events][2:] == [
        ("champion_unservable", earlier.version_id, champion.version_id),
        ("rollback", stored.version_id, champion.version_id),
    ]
    assert "the newest earlier champion that loads, is restored" in events[2][6]
    _assert_one_loadable_champion(fresh_warehouse, earlier.version_id)

    # now the restored one breaks too, and nothing earlier loads: no champion at all
    Path(earlier.artifact_uri).write_bytes(b"not a model")
    again, decision = _register(fresh_warehouse, worse_policy, candles, tmp_path, WORSE_POLICY)
    assert decision.action == "rollback" and decision.serving_version_id is None
    last = _events(fresh_warehouse)[-2:]
    assert [(e[0], e[1], e[2]) for e in last] == [
        ("champion_unservable", None, earlier.version_id),
        ("rollback", again.version_id, earlier.version_id),
    ]
    assert "no earlier champion loads: no champion is set" in last[0][6]
    assert _champions(fresh_warehouse) == []
    with connect(fresh_warehouse) as conn, pytest.raises(NoModelError):
        registry.rollback(conn, "SOL/USDT", reason="bring one back")
