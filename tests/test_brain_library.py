"""BrainLibrary: the champion in service, loaded and verified; history; best model."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from brain_lib import brain as brain_module
from brain_lib.brain import BrainLibrary
from brain_lib.dbt import run_dbt
from brain_lib.errors import ArtifactError, NoModelError
from brain_lib.market import SyntheticMarket
from brain_lib.registry import register_version
from brain_lib.training import TrainingConfig, build_dataset, train_symbol, version_importance
from brain_lib.warehouse import connect

REPO = Path(__file__).resolve().parent.parent
CONFIG = TrainingConfig(params={"num_boost_round": 30}, n_splits=3, embargo=6, min_rows=300)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    frame = SyntheticMarket(seed=3, autocorr=-0.15).candles("ETH/USDT", 1500)
    return frame.set_index("ts").drop(columns="regime")


@pytest.fixture(scope="module")
def stored(warehouse_dsn: str, candles: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("artifacts")
    result = train_symbol(candles, exchange="synthetic", symbol="ETH/USDT", config=CONFIG)
    X, y = build_dataset(candles, 1)
    importance = version_importance(result.model, X, y, result.oos_predictions, candles, CONFIG)
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
    X, _ = build_dataset(candles, 1)
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
    # the demo market mean-reverts hour to hour: the last return leads the ranking
    assert correlation[0]["feature"] == "ret_1"
    with pytest.raises(NoModelError, match="no champion model for DOGE/USDT"):
        library.get_top_features("DOGE/USDT")
