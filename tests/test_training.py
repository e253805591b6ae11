"""The pure training pipeline: no leak on random walks, a positive control that a
leak is caught, a manifest that says what was trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brain_lib import features as features_module
from brain_lib.errors import DataError
from brain_lib.market import generate_candles
from brain_lib.training import TrainingConfig, dataset_fingerprint, train_symbol

FAST = TrainingConfig(
    params={"num_boost_round": 40, "num_leaves": 7, "min_data_in_leaf": 50},
    n_splits=4,
    embargo=12,
    fee_bps=0.0,
    min_rows=300,
)


def _candles(seed: int, periods: int = 2400, autocorr: float = 0.0) -> pd.DataFrame:
    frame = generate_candles("RW/USDT", periods, seed=seed, autocorr=autocorr)
    return frame.set_index("ts").drop(columns="regime")


def _oos_sharpes(
    seeds: range, leak: bool = False, monkeypatch: pytest.MonkeyPatch | None = None
) -> np.ndarray:
    return np.array(
        [
            train_symbol(_candles(seed), exchange="x", symbol="RW/USDT", config=FAST).metrics[
                "sharpe"
            ]
            for seed in seeds
        ]
    )


def test_random_walk_oos_sharpe_centres_on_zero() -> None:
    """On pure random walks nothing is predictable: the mean out-of-sample Sharpe
    over many seeds must be within three standard errors of zero."""
    sharpes = _oos_sharpes(range(24))
    mean = sharpes.mean()
    se = sharpes.std(ddof=1) / np.sqrt(len(sharpes))
    assert abs(mean) < 3 * se, (mean, se, sharpes)
    # and the spread is what chance gives: annualised Sharpe of ~1,700 OOS bars has a
    # standard deviation near sqrt(8760 / 1700) ≈ 2.3
    assert 1.0 < sharpes.std(ddof=1) < 4.0


def test_a_planted_leak_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Positive control: a feature that peeks one bar ahead makes the same check fail."""
    original = features_module.build_features

    def leaky(candles: pd.DataFrame) -> pd.DataFrame:
        out = original(candles)
        out["peek"] = candles["close"].pct_change().shift(-1)
        return out

    monkeypatch.setattr("brain_lib.training.build_features", leaky)
    sharpes = _oos_sharpes(range(6))
    se = sharpes.std(ddof=1) / np.sqrt(len(sharpes))
    assert sharpes.mean() > 3 * se and sharpes.mean() > 10


def test_mean_reversion_is_found() -> None:
    """A market with real (negative) autocorrelation gives a positive gross Sharpe."""
    result = train_symbol(
        _candles(1, 4000, autocorr=-0.15), exchange="x", symbol="MR/USDT", config=FAST
    )
    assert result.metrics["sharpe"] > 2


def test_manifest_describes_the_version() -> None:
    candles = _candles(5, 1500)
    result = train_symbol(candles, exchange="synthetic", symbol="RW/USDT", config=FAST)
    manifest = result.manifest
    assert manifest["model_type"] == "lightgbm"
    assert manifest["hyperparameters"]["num_boost_round"] == 40
    assert manifest["features"] == result.feature_names and len(result.feature_names) >= 15
    assert manifest["dataset"]["fingerprint_sha256"] == dataset_fingerprint(candles)
    assert manifest["dataset"]["start"] == candles.index[0].isoformat()
    assert manifest["label"] == {"kind": "forward_return", "horizon": 1}
    assert manifest["walk_forward"]["purge"] == 1 and manifest["walk_forward"]["embargo"] == 12
    assert len(manifest["walk_forward"]["folds"]) == 4
    assert {"lightgbm", "numpy", "pandas"} <= set(manifest["libraries"])
    # out-of-sample window starts after the first training fold
    first_test = pd.Timestamp(manifest["walk_forward"]["folds"][0]["test_from"])
    assert result.oos_window[0] > first_test
    # the fingerprint changes when one value changes
    changed = candles.copy()
    changed.iloc[10, 3] *= 1.0001
    assert dataset_fingerprint(changed) != dataset_fingerprint(candles)


def test_each_fold_model_never_saw_its_test_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record what every fit sees: no training row's label window reaches its test fold."""
    from brain_lib.models import LightGBMModel

    seen: list[pd.Index] = []
    predicted: list[pd.Index] = []
    original_fit, original_predict = LightGBMModel.fit, LightGBMModel.predict

    def fit(self, X, y):  # type: ignore[no-untyped-def]
        seen.append(X.index)
        return original_fit(self, X, y)

    def predict(self, X):  # type: ignore[no-untyped-def]
        predicted.append(X.index)
        return original_predict(self, X)

    monkeypatch.setattr(LightGBMModel, "fit", fit)
    monkeypatch.setattr(LightGBMModel, "predict", predict)
    config = TrainingConfig(**{**FAST.__dict__, "label_horizon": 3})
    train_symbol(_candles(9, 1500), exchange="x", symbol="RW/USDT", config=config)
    bar = pd.Timedelta(hours=1)
    for train_index, test_index in zip(
        seen[:-1], predicted, strict=True
    ):  # last fit is the final refit
        # label of row t covers (t, t+3]; it must end before the test fold and the embargo
        assert train_index.max() + 3 * bar < test_index.min() - config.embargo * bar


def test_too_few_candles_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="only 100 candles"):
        train_symbol(_candles(1, 100), exchange="x", symbol="RW/USDT", config=FAST)
