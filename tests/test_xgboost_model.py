"""The XGBoost adapter: same protocol as LightGBM, deterministic, native artifact."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brain_lib.market import generate_candles
from brain_lib.models import MODEL_TYPES, Model, XGBoostModel, get_model
from brain_lib.training import TrainingConfig, build_dataset, train_symbol

FAST = {"num_boost_round": 40, "min_child_weight": 5.0, "eta": 0.1}


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    index = pd.date_range("2025-01-01", periods=1500, freq="h", tz="UTC", name="ts")
    X = pd.DataFrame(rng.normal(size=(1500, 5)), index=index, columns=[f"f{i}" for i in range(5)])
    y = pd.Series(0.003 * X["f0"] - 0.002 * X["f1"] + 0.002 * rng.normal(size=1500), index=index)
    return X, y


def test_registered_and_implements_the_protocol() -> None:
    assert MODEL_TYPES["xgboost"] is XGBoostModel
    model = get_model("xgboost", max_depth=3)
    assert isinstance(model, Model)
    assert model.model_type == "xgboost"
    assert model.params["max_depth"] == 3
    assert model.params["objective"] == "reg:pseudohubererror"
    assert model.params["tree_method"] == "hist"


def test_save_load_round_trip_gives_identical_predictions(
    data: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    X, y = data
    model = XGBoostModel(**FAST).fit(X, y)
    before = model.predict(X)
    assert before.dtype == np.float64
    assert before.std() > 0
    path = tmp_path / model.artifact_name
    model.save(path)
    loaded = XGBoostModel.load(path, model.params)
    assert loaded.feature_names == list(X.columns)
    assert loaded.params == model.params
    np.testing.assert_array_equal(loaded.predict(X), before)


def test_artifact_is_ubjson_not_pickle(
    data: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    X, y = data
    model = XGBoostModel(**FAST).fit(X, y)
    path = tmp_path / model.artifact_name
    model.save(path)
    raw = path.read_bytes()
    assert path.suffix == ".ubj"
    assert raw[:1] == b"{"  # a UBJSON object, not a pickle stream (which starts with 0x80)
    assert not raw.startswith(b"\x80")
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(raw)


def test_training_is_deterministic(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = data
    a = XGBoostModel(**FAST).fit(X, y).predict(X)
    b = XGBoostModel(**FAST).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    c = XGBoostModel(**{**FAST, "seed": 7}).fit(X, y).predict(X)
    assert not np.array_equal(a, c)  # the seed drives row and column subsampling


def test_wrong_feature_columns_raise(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = data
    model = XGBoostModel(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="feature columns differ"):
        model.predict(X[list(reversed(X.columns))])
    with pytest.raises(ValueError, match="feature columns differ"):
        model.predict(X.drop(columns="f4"))
    with pytest.raises(ValueError, match="feature columns differ"):
        model.predict(X.rename(columns={"f0": "other"}))


def test_unfitted_model_raises() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        XGBoostModel().predict(pd.DataFrame({"a": [1.0]}))


def test_train_symbol_end_to_end(tmp_path: Path) -> None:
    candles = generate_candles("XGB/USDT", 1500, seed=11).set_index("ts").drop(columns="regime")
    config = TrainingConfig(
        model_type="xgboost",
        params={"num_boost_round": 30, "min_child_weight": 5.0},
        n_splits=3,
        embargo=12,
        min_rows=300,
    )
    result = train_symbol(candles, exchange="x", symbol="XGB/USDT", config=config)
    assert isinstance(result.model, XGBoostModel)
    assert result.manifest["model_type"] == "xgboost"
    assert result.manifest["hyperparameters"]["num_boost_round"] == 30
    assert result.manifest["hyperparameters"]["min_child_weight"] == 5.0
    assert len(result.oos_predictions) > 0
    assert np.isfinite(result.oos_predictions).all()
    assert np.isfinite(result.metrics["turnover_per_bar"])
    # the final model survives its artifact
    X, _ = build_dataset(candles, config.label_horizon)
    path = tmp_path / result.model.artifact_name
    result.model.save(path)
    reloaded = XGBoostModel.load(path, result.manifest["hyperparameters"])
    np.testing.assert_array_equal(reloaded.predict(X), result.model.predict(X))
