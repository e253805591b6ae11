"""BrainLibrary: the champion in service, loaded and verified; history; best model."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import pytest
from markets import STRONG_TREND, planted

from brain_lib import brain as brain_module
from brain_lib.brain import BrainLibrary
from brain_lib.dbt import run_dbt
from brain_lib.errors import ArtifactError, NoModelError, RegistryError
from brain_lib.registry import register_version
from brain_lib.training import (
    TrainingConfig,
    TrainingResult,
    build_dataset,
    train_symbol,
    version_importance,
)
from brain_lib.warehouse import connect

REPO = Path(__file__).resolve().parent.parent
CONFIG = TrainingConfig(params={"num_boost_round": 30}, n_splits=3, embargo=6, min_rows=300)
# the planted trend: momentum is what there is to learn
TREND_FEATURES = {
    "ret_4",
    "ret_12",
    "ret_24",
    "ret_72",
    "dist_sma_72",
    "macd",
    "macd_hist",
    "rsi_14",
    "up_share_24",
    "close_z_168",
    "close_z_24",
}


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return planted(3, 4000, symbol="ETH/USDT", trend=STRONG_TREND)


def _importance(result: TrainingResult, candles: pd.DataFrame) -> list[dict[str, object]]:
    assert result.walk_forward is not None and result.evaluation is not None
    X, y = build_dataset(candles, CONFIG.label_horizon)
    return version_importance(result.walk_forward, result.evaluation, X, y, candles, CONFIG)


@pytest.fixture(scope="module")
def stored(warehouse_dsn: str, candles: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("artifacts")
    result = train_symbol(candles, exchange="synthetic", symbol="ETH/USDT", config=CONFIG)
    importance = _importance(result, candles)
    with connect(warehouse_dsn) as conn:
        version, _ = register_version(
            conn,
            result,
            artifact_root=str(root),
            candles=candles,
            config=CONFIG,
            importance=importance,
        )
    run_dbt(["build"], dsn=warehouse_dsn, project_dir=REPO / "dbt_brain", state_dir=root / "dbt")
    return version, result


def test_active_model_is_the_champion_and_predicts_like_the_trained_one(
    warehouse_dsn: str,
    stored,
    candles: pd.DataFrame,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    version, result = stored
    caplog.set_level(logging.INFO, logger="brain_lib.brain")
    library = BrainLibrary(dsn=warehouse_dsn)
    assert any(r.message == "brain_library_integration_enabled" for r in caplog.records)
    active = library.get_active_model("ETH/USDT")
    assert active.version_id == version.version_id
    assert active.model_type == "lightgbm" and active.exchange == "synthetic"
    assert active.manifest["artifact"]["sha256"] == version.artifact_sha256
    X, _ = build_dataset(candles, CONFIG.label_horizon)
    features = X[active.features].tail(100)
    assert (active.model.predict(features) == result.model.predict(features)).all()
    assert (
        library.get_active_model("ETH/USDT", model_type="lightgbm").version_id == version.version_id
    )


def test_warm_calls_do_not_reload(
    warehouse_dsn: str, stored, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    original = brain_module.load_model

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(brain_module, "load_model", counting)
    library = BrainLibrary(dsn=warehouse_dsn)
    first = library.get_active_model("ETH/USDT")
    second = library.get_active_model("ETH/USDT")
    assert first.model is second.model
    assert calls == [first.version_id]


def test_a_tampered_artifact_is_refused_on_cold_load(warehouse_dsn: str, stored) -> None:  # type: ignore[no-untyped-def]
    version, _ = stored
    path = Path(version.artifact_uri)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# appended")
        with pytest.raises(ArtifactError, match="sha256"):
            BrainLibrary(dsn=warehouse_dsn).get_active_model("ETH/USDT")
    finally:
        path.write_bytes(original)


def test_history_and_best_model(warehouse_dsn: str, stored) -> None:  # type: ignore[no-untyped-def]
    version, _ = stored
    library = BrainLibrary(dsn=warehouse_dsn)
    history = library.get_model_history("ETH/USDT")
    assert [h["event_type"] for h in history] == ["promotion"]
    assert history[0]["version_id"] == version.version_id
    best = library.get_best_model("ETH/USDT")
    assert best["version_id"] == version.version_id and best["model_type"] == "lightgbm"


def test_unknown_symbol_is_a_clear_error(warehouse_dsn: str, stored) -> None:  # type: ignore[no-untyped-def]
    library = BrainLibrary(dsn=warehouse_dsn)
    with pytest.raises(NoModelError, match="no champion model for DOGE/USDT"):
        library.get_active_model("DOGE/USDT")
    with pytest.raises(NoModelError, match="no model history for DOGE/USDT"):
        library.get_model_history("DOGE/USDT")
    with pytest.raises(NoModelError, match="no best model for DOGE/USDT"):
        library.get_best_model("DOGE/USDT")


def test_top_features_come_from_the_stored_importance(warehouse_dsn: str, stored) -> None:  # type: ignore[no-untyped-def]
    library = BrainLibrary(dsn=warehouse_dsn)
    top = library.get_top_features("ETH/USDT", n=5, method="shap")
    assert [row["rank"] for row in top] == [1, 2, 3, 4, 5]
    assert top[0]["importance"] >= top[-1]["importance"] > 0
    assert all(row["kind"] == "training" for row in top)
    correlation = library.get_top_features("ETH/USDT", n=3, method="correlation")
    # the market carries a planted trend: a momentum feature leads the ranking
    assert correlation[0]["feature"] in TREND_FEATURES
    with pytest.raises(NoModelError, match="no champion model for DOGE/USDT"):
        library.get_top_features("DOGE/USDT")


def test_several_markets_and_model_types_are_told_apart(
    fresh_warehouse: str, candles: pd.DataFrame, tmp_path: Path
) -> None:
    """The same symbol on two exchanges needs exchange=; two model types on one market
    are compared on their common window (marts.best_model_per_symbol)."""
    result = train_symbol(candles, exchange="synthetic", symbol="ETH/USDT", config=CONFIG)
    xgb_config = dataclasses.replace(CONFIG, model_type="xgboost", params={"num_boost_round": 30})
    xgb = train_symbol(candles, exchange="synthetic", symbol="ETH/USDT", config=xgb_config)
    elsewhere = dataclasses.replace(result, exchange="binance")
    with connect(fresh_warehouse) as conn:
        for res, cfg in ((result, CONFIG), (xgb, xgb_config), (elsewhere, CONFIG)):
            register_version(
                conn, res, artifact_root=str(tmp_path / "a"), candles=candles, config=cfg
            )
    run_dbt(
        ["build"], dsn=fresh_warehouse, project_dir=REPO / "dbt_brain", state_dir=tmp_path / "dbt"
    )
    library = BrainLibrary(dsn=fresh_warehouse)
    with pytest.raises(RegistryError, match=r"several markets \(binance 1h, synthetic 1h\)"):
        library.get_active_model("ETH/USDT")
    with pytest.raises(RegistryError, match="several markets"):
        library.get_best_model("ETH/USDT")
    assert library.get_active_model("ETH/USDT", exchange="binance").exchange == "binance"
    best = library.get_best_model("ETH/USDT", exchange="synthetic", timeframe="1h")
    assert best["n_candidates"] == 2 and best["n_compared"] == 2
    assert (
        best["window_start"] == result.oos_window[0] and best["window_end"] == result.oos_window[1]
    )
    active = library.get_active_model("ETH/USDT", exchange="synthetic")
    assert active.version_id == best["version_id"]
    assert active.model_type == best["model_type"]
    assert (
        library.get_active_model("ETH/USDT", "xgboost", exchange="synthetic").model_type
        == "xgboost"
    )
