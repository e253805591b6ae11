"""Nightly feature analysis: importance on recent data, drift counts, the trend, shift
and drift marts on a real warehouse, and retrain requests."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from markets import STRONG_TREND, planted

from brain_lib import analysis
from brain_lib.dbt import run_dbt
from brain_lib.errors import DataError
from brain_lib.registry import register_version
from brain_lib.training import TrainingConfig, build_dataset, train_symbol, version_importance
from brain_lib.warehouse import connect, copy_ohlcv

REPO = Path(__file__).resolve().parent.parent
CONFIG = TrainingConfig(
    params={"num_boost_round": 40, "num_leaves": 7, "min_data_in_leaf": 50},
    n_splits=4,
    embargo=12,
    min_rows=300,
)
TRAINED = 4500  # the champion is trained on the first 4,500 bars; 500 newer ones follow
SYMBOL = "ETH/USDT"
MARTS = ["build", "--select", "+feature_importance_trends", "+feature_shifts", "+feature_drift"]
CAUTIOUS = ["--indirect-selection", "cautious"]


# ----------------------------------------------------------------- pure parts


def test_decile_edges_and_bins_by_hand() -> None:
    values = np.arange(1, 101, dtype=float)  # 1..100
    edges = analysis.decile_edges(values)
    assert edges.tolist() == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    counts = analysis.bin_counts(values, edges)
    assert counts.tolist() == [10] * 10
    # a binary feature has one inner edge, two bins; NaN is not counted
    binary = np.array([0.0, 1.0, 1.0, np.nan, 0.0, 1.0])
    b_edges = analysis.decile_edges(binary)
    assert b_edges.tolist() == [0.0]
    assert analysis.bin_counts(binary, b_edges).tolist() == [2, 3]
    assert analysis.decile_edges(np.full(10, 3.0)).size == 0
    with pytest.raises(ValueError, match="bins"):
        analysis.decile_edges(values, bins=1)


def test_psi_by_hand() -> None:
    # (0.8 - 0.5) ln(0.8/0.5) + (0.2 - 0.5) ln(0.2/0.5)
    expected = 0.3 * math.log(1.6) - 0.3 * math.log(0.4)
    assert analysis.psi([50, 50], [80, 20]) == pytest.approx(expected, abs=1e-12)
    assert analysis.psi([10, 20, 30], [10, 20, 30]) == 0.0
    # an empty recent bin is floored at epsilon, not infinite
    assert analysis.psi([50, 50], [100, 0]) == pytest.approx(
        (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2), abs=1e-12
    )
    with pytest.raises(ValueError):
        analysis.psi([1, 2], [0, 0])


def test_distribution_rows_skip_constant_and_empty_features() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {"x": rng.normal(size=500), "flat": np.ones(500), "gone": rng.normal(size=500)}
    )
    recent = pd.DataFrame(
        {"x": rng.normal(1.0, 1.0, size=200), "flat": np.ones(200), "gone": np.nan}
    )
    rows = analysis.distribution_rows(train, recent)
    by_feature: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_feature.setdefault(r["feature"], []).append(r)
    x = by_feature["x"]
    assert [r["bin"] for r in x] == list(range(1, 11))
    assert sum(r["train_count"] for r in x) == 500 and sum(r["recent_count"] for r in x) == 200
    assert x[0]["lower_edge"] is None and x[-1]["upper_edge"] is None
    assert all(a["upper_edge"] == b["lower_edge"] for a, b in itertools.pairwise(x))
    # a shifted mean moves recent rows into the upper bins
    assert sum(r["recent_count"] for r in x[5:]) > 150
    assert by_feature["flat"] == [
        {
            "feature": "flat",
            "bin": 0,
            "lower_edge": None,
            "upper_edge": None,
            "train_count": 0,
            "recent_count": 0,
            "skipped_reason": "constant in the window",
        }
    ]
    assert by_feature["gone"][0]["skipped_reason"] == "no values in the window"


# ------------------------------------------------------------- on a warehouse


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return planted(5, TRAINED + 500, symbol=SYMBOL, trend=STRONG_TREND)


@pytest.fixture(scope="module")
def champion(
    warehouse_dsn: str, candles: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> analysis.Champion:
    """A champion trained on the first 4,500 bars; 500 newer bars are stored too."""
    root = tmp_path_factory.mktemp("artifacts")
    train = candles.iloc[:TRAINED]
    result = train_symbol(train, exchange="synthetic", symbol=SYMBOL, config=CONFIG)
    assert result.walk_forward is not None and result.evaluation is not None
    X, y = build_dataset(train, CONFIG.label_horizon)
    importance = version_importance(result.walk_forward, result.evaluation, X, y, train, CONFIG)
    with connect(warehouse_dsn) as conn:
        copy_ohlcv(conn, candles.reset_index(), exchange="synthetic", symbol=SYMBOL, timeframe="1h")
        conn.commit()
        register_version(
            conn,
            result,
            artifact_root=str(root),
            candles=train,
            config=CONFIG,
            importance=importance,
        )
        (found,) = analysis.list_champions(conn, symbols=[SYMBOL])
    return found


def _build_marts(dsn: str, state: Path) -> None:
    run_dbt([*MARTS, *CAUTIOUS], dsn=dsn, project_dir=REPO / "dbt_brain", state_dir=state)


def _rows(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with connect(dsn) as conn:
        cur = conn.execute(sql, params)
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_nightly_analysis_is_stored_and_the_marts_match_hand_computations(
    warehouse_dsn: str,
    champion: analysis.Champion,
    candles: pd.DataFrame,
    tmp_path: Path,
) -> None:
    with connect(warehouse_dsn) as conn:
        night = analysis.analyze_champion(conn, champion, window_days=10, max_rows=500)
        analysis.record_nightly(conn, night)
    # the window is the last 10 days of stored candles: 240 bars, 0 of them trained on
    assert night.window_end == candles.index[-1]
    assert night.n_recent_rows == 240 and night.rows_after_training == 240
    stored = _rows(
        warehouse_dsn,
        "select method, count(*) filter (where rank is not null) as ranked, "
        "count(*) filter (where importance = 'NaN'::float8) as nans "
        "from raw.feature_importance where version_id = %s and kind = 'nightly' group by method",
        (champion.version_id,),
    )
    assert {r["method"]: r["ranked"] > 10 for r in stored} == {
        "shap": True,
        "permutation": True,
        "correlation": True,
    }
    assert all(r["nans"] == 0 for r in stored)

    _build_marts(warehouse_dsn, tmp_path / "dbt")

    # PSI in SQL == PSI by hand from the stored counts, for every feature
    drift = _rows(
        warehouse_dsn,
        "select feature_name, psi, drift_level from marts.feature_drift "
        "where version_id = %s and is_latest",
        (champion.version_id,),
    )
    assert len(drift) == len(champion.manifest["features"])
    counts: dict[str, tuple[list[int], list[int]]] = {}
    for r in night.distributions:
        t, rc = counts.setdefault(r["feature"], ([], []))
        if r["bin"] > 0:
            t.append(r["train_count"])
            rc.append(r["recent_count"])
    for row in drift:
        t, rc = counts[row["feature_name"]]
        if not t:
            assert row["psi"] is None
            continue
        assert row["psi"] == pytest.approx(analysis.psi(t, rc), abs=1e-8)
        level = "stable" if row["psi"] < 0.1 else "moderate" if row["psi"] < 0.25 else "major"
        assert row["drift_level"] == level

    shifts = _rows(
        warehouse_dsn,
        "select importance_method, rank_correlation, top_k_jaccard, is_latest, is_champion "
        "from marts.feature_shifts where version_id = %s and computed_at = %s",
        (champion.version_id, night.computed_at),
    )
    assert {r["importance_method"] for r in shifts} == {"shap", "permutation", "correlation"}
    assert all(r["is_latest"] and r["is_champion"] for r in shifts)
    assert all(-1 <= r["rank_correlation"] <= 1 for r in shifts)

    trend = _rows(
        warehouse_dsn,
        "select count(*) as n from marts.feature_importance_trends where version_id = %s",
        (champion.version_id,),
    )
    assert trend[0]["n"] > 0


def _planted(champion: analysis.Champion, dsn: str, *, reverse: bool) -> analysis.NightlyAnalysis:
    """A night whose SHAP ranking equals the training one, or is its reverse."""
    training = _rows(
        dsn,
        "select feature, importance, normalised, rank from raw.feature_importance "
        "where version_id = %s and kind = 'training' and method = 'shap' and rank is not null "
        "order by rank",
        (champion.version_id,),
    )
    n = len(training)
    rows = []
    for r in training:
        rank = n + 1 - r["rank"] if reverse else r["rank"]
        normalised = training[rank - 1]["normalised"]
        rows.append(
            {
                "method": "shap",
                "feature": r["feature"],
                "importance": normalised,
                "normalised": normalised,
                "rank": rank,
                "skipped_reason": None,
                "window_start": None,
                "window_end": None,
                "n_rows": 500,
            }
        )
    return analysis.NightlyAnalysis(
        champion=champion,
        computed_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
        window_start=pd.Timestamp("2025-03-01", tz="UTC"),
        window_end=pd.Timestamp("2025-03-31", tz="UTC"),
        n_recent_rows=500,
        rows_after_training=500,
        importance=rows,
        distributions=[],
    )


def test_shift_mart_flags_a_planted_shift_and_not_a_stable_ranking(
    warehouse_dsn: str, champion: analysis.Champion, tmp_path: Path
) -> None:
    with connect(warehouse_dsn) as conn:
        analysis.record_nightly(conn, _planted(champion, warehouse_dsn, reverse=False))
    _build_marts(warehouse_dsn, tmp_path / "dbt")
    with connect(warehouse_dsn) as conn:
        shap = [
            r
            for r in analysis.latest_flags(conn, [champion.version_id])["shifts"]
            if r["importance_method"] == "shap"
        ]
    (row,) = shap
    assert row["rank_correlation"] == 1 and row["top_k_jaccard"] == 1 and row["n_moved"] == 0
    assert row["shift_flag"] is False and row["symbol_shift_flag"] is False

    with connect(warehouse_dsn) as conn:
        analysis.record_nightly(conn, _planted(champion, warehouse_dsn, reverse=True))
    _build_marts(warehouse_dsn, tmp_path / "dbt")
    with connect(warehouse_dsn) as conn:
        shap = [
            r
            for r in analysis.latest_flags(conn, [champion.version_id])["shifts"]
            if r["importance_method"] == "shap"
        ]
    (row,) = shap
    assert row["rank_correlation"] == -1
    assert row["shift_flag"] is True and row["symbol_shift_flag"] is True
    assert "rank correlation -1.00 < 0.5" in row["shift_reason"]


def test_too_short_a_window_is_recorded_as_skipped_not_nan(
    warehouse_dsn: str, champion: analysis.Champion
) -> None:
    with connect(warehouse_dsn) as conn:
        night = analysis.analyze_champion(conn, champion, window_days=2)  # 48 rows < 200
        analysis.record_nightly(conn, night)
    assert night.n_recent_rows == 48
    skipped = {r["method"]: r for r in night.importance if r["feature"] == "*"}
    assert set(skipped) == {"shap", "permutation", "correlation"}
    assert all("rows" in r["skipped_reason"] for r in skipped.values())
    assert all(r["importance"] is None for r in night.importance)
    # the drift counts still exist: PSI needs no model
    assert any(r["bin"] > 0 for r in night.distributions)


def test_only_rows_the_champion_never_saw_are_analysed(
    warehouse_dsn: str, champion: analysis.Champion
) -> None:
    """A 30-day window reaches back into the training window: only the 500 bars after
    its end count, for every method and for the drift counts, and the night says so."""
    with connect(warehouse_dsn) as conn:
        night = analysis.analyze_champion(conn, champion, window_days=30, max_rows=500)
    assert night.n_recent_rows == night.rows_after_training == 500
    methods = {r["method"]: r for r in night.importance if r["rank"] == 1}
    assert set(methods) == {"shap", "permutation", "correlation"}
    for row in methods.values():
        assert row["n_rows"] <= 500
        assert pd.Timestamp(row["window_start"]) > champion.train_end
    recent = sum(r["recent_count"] for r in night.distributions if r["feature"] == "ret_24")
    assert recent == 500
    # at the training end itself nothing is out of sample yet: every method is skipped
    with connect(warehouse_dsn) as conn:
        fresh = analysis.analyze_champion(conn, champion, end=champion.train_end, window_days=30)
    assert fresh.rows_after_training == fresh.n_recent_rows == 0
    assert {r["method"] for r in fresh.importance if r["feature"] == "*"} == {
        "shap",
        "permutation",
        "correlation",
    }
    assert fresh.distributions[0]["skipped_reason"] == "no rows in the recent window"


def test_missing_candles_and_unknown_features_are_clear_errors(
    warehouse_dsn: str, champion: analysis.Champion
) -> None:
    gone = dataclasses.replace(champion, symbol="NOPE/USDT")
    renamed = dataclasses.replace(
        champion, manifest={**champion.manifest, "features": ["ret_1", "not_a_feature"]}
    )
    with connect(warehouse_dsn) as conn:
        with pytest.raises(DataError, match=r"NOPE/USDT.*no candles"):
            analysis.analyze_champion(conn, gone)
        with pytest.raises(DataError, match="not_a_feature"):
            analysis.analyze_champion(conn, renamed)


def test_retrain_requests_one_pending_per_symbol(fresh_dsn: str, tmp_path: Path) -> None:
    run_dbt(
        ["run-operation", "create_raw_tables"],
        dsn=fresh_dsn,
        project_dir=REPO / "dbt_brain",
        state_dir=tmp_path,
    )
    key = {"exchange": "binance", "timeframe": "1h"}
    with connect(fresh_dsn) as conn:
        assert analysis.request_retrain(conn, symbol="BTC/USDT", reason="shift", **key)
        assert not analysis.request_retrain(conn, symbol="BTC/USDT", reason="again", **key)
        assert analysis.request_retrain(conn, symbol="ETH/USDT", reason="shift", **key)
        pending = analysis.pending_retrain_requests(conn, **key)
        assert [p["symbol"] for p in pending] == ["BTC/USDT", "ETH/USDT"]
        assert pending[0]["reason"] == "shift"
        assert (
            analysis.consume_retrain_requests(conn, symbols=["BTC/USDT"], run_id="r1", **key) == 1
        )
        assert [p["symbol"] for p in analysis.pending_retrain_requests(conn, **key)] == ["ETH/USDT"]
        # served: the symbol can be marked again
        assert analysis.request_retrain(conn, symbol="BTC/USDT", reason="shift again", **key)
        assert analysis.pending_retrain_requests(conn, exchange="okx", timeframe="1h") == []
