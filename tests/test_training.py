"""The pure training pipeline judged as a desk would trade it: a model with nothing to say
stays flat, a planted edge survives 5 bps, a leak is caught, the policy never sees the
bars it is scored on, gaps are holes, and the manifest says what was trained on."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from markets import STRONG_TREND, planted, random_walk

from brain_lib import features as features_module
from brain_lib.errors import ConfigError, DataError
from brain_lib.training import (
    CALIBRATION_FOLDS,
    FUNDING_COLUMN,
    TrainingConfig,
    build_dataset,
    dataset_fingerprint,
    evaluate_walk_forward,
    train_symbol,
    walk_forward_predictions,
)

FAST = TrainingConfig(
    params={"num_boost_round": 40, "num_leaves": 7, "min_data_in_leaf": 50},
    n_splits=4,
    embargo=12,
    min_rows=300,
)
DEFAULT = TrainingConfig()  # what daily-retrain uses: horizon 8, band policy, 5 bps


def _results(candles: list[pd.DataFrame], config: TrainingConfig) -> list[dict[str, float]]:
    return [train_symbol(c, exchange="x", symbol="T/USDT", config=config).metrics for c in candles]


def _sharpe(metrics: dict[str, float]) -> float:
    """A strategy that stayed flat has an undefined Sharpe; it earned exactly 0."""
    return 0.0 if math.isnan(metrics["sharpe"]) else metrics["sharpe"]


def test_random_walks_stay_flat_after_costs() -> None:
    """12 seeded fat-tailed random walks (Student-t, 1 year hourly, 5 bps): nothing is
    predictable, so the policy finds no skill on the training rows and mostly stays flat
    instead of bleeding fees (the naive sign rule lost 2-7 Sharpe a year here)."""
    results = _results([random_walk(100 + seed) for seed in range(12)], DEFAULT)
    sharpes = np.array([_sharpe(r) for r in results])
    assert -0.5 <= sharpes.mean() <= 0.5, sharpes
    assert np.abs(sharpes).max() <= 2.0, sharpes
    assert np.median([r["turnover_per_bar"] for r in results]) < 0.05
    drawdowns = np.array([r["max_drawdown"] for r in results])
    assert drawdowns.min() > -0.25 and drawdowns.mean() > -0.05, drawdowns
    # the baselines sit beside the strategy, on the same bars
    assert all(r["flat_total_return"] == 0.0 for r in results)
    assert len({round(r["buy_hold_sharpe"], 6) for r in results}) == 12


def test_a_planted_signal_is_traded_profitably_after_fees() -> None:
    """The demo's planted trend (0.2 bar volatilities, half-life 48 bars): the out-of-sample
    Sharpe after 5 bps is positive for at least 80 % of seeds."""
    results = _results([planted(200 + seed) for seed in range(12)], DEFAULT)
    sharpes = np.array([_sharpe(r) for r in results])
    assert (sharpes > 0).mean() >= 0.8, sharpes
    assert np.median(sharpes) > 1.0, sharpes
    traded = [r for r in results if r["round_trips"] > 0]
    assert all(r["avg_holding_bars"] >= DEFAULT.label_horizon for r in traded)


def test_a_planted_leak_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Positive control: a feature that peeks one bar ahead scores far above zero through
    the same walk-forward, policy and backtest (so the flat results above are not a
    pipeline that can find nothing)."""
    original = features_module.build_features

    def leaky(candles: pd.DataFrame) -> pd.DataFrame:
        out = original(candles)
        out["peek"] = candles["close"].pct_change().shift(-1)
        return out

    monkeypatch.setattr("brain_lib.training.build_features", leaky)
    config = dataclasses.replace(FAST, label_horizon=1)
    sharpes = np.array(
        [_sharpe(r) for r in _results([random_walk(s, 3000) for s in range(4)], config)]
    )
    assert sharpes.min() > 10, sharpes


def test_each_fold_policy_is_fitted_on_its_training_rows_only() -> None:
    """Changing the candles of a scored fold's test rows leaves that fold's model and
    policy parameters exactly as they were; the next fold, whose calibration rows they
    are, changes (positive control)."""
    candles = planted(3, 4000, trend=STRONG_TREND)
    base = train_symbol(candles, exchange="x", symbol="P", config=FAST)
    fold = 2  # a scored fold with a fold after it
    first, last = (pd.Timestamp(base.folds[fold][k]) for k in ("test_from", "test_to"))
    changed = candles.copy()
    rows = (changed.index >= first) & (changed.index <= last)
    rng = np.random.default_rng(0)
    factor = np.exp(np.cumsum(rng.normal(0, 0.02, rows.sum())))
    for col in ("open", "high", "low", "close"):
        changed.loc[rows, col] *= factor
    again = train_symbol(changed, exchange="x", symbol="P", config=FAST)
    before = {p["fold"]: p for p in base.manifest["policy"]["folds"]}
    after = {p["fold"]: p for p in again.manifest["policy"]["folds"]}
    assert before[fold]["entry"] is not None  # the fold really trades
    assert before[fold] == after[fold]
    assert before[fold + 1] != after[fold + 1]


def test_calibration_rows_end_before_the_purge_and_embargo() -> None:
    """The calibration set of each scored fold: only rows whose label window ends before
    the fold's test rows minus the embargo; perturbing the labels of the test rows of a
    fold changes no parameter of that fold's policy."""
    candles = planted(4, 3000, trend=STRONG_TREND)
    X, y = build_dataset(candles, FAST.label_horizon)
    wf = walk_forward_predictions(X, y, FAST)
    base = evaluate_walk_forward(wf, X, y, candles, FAST)
    for k, (_, train_stop, test_start, _) in enumerate(wf.bounds):
        if k < CALIBRATION_FOLDS:
            continue
        assert train_stop + FAST.label_horizon + FAST.embargo == test_start
    _, _, start, stop = wf.bounds[2]
    noisy = y.copy()
    noisy.iloc[start:stop] = np.random.default_rng(1).normal(0, 1, stop - start)
    again = evaluate_walk_forward(wf, X, noisy, candles, FAST)
    assert base.fold_policies[1] == again.fold_policies[1]  # fold 2 (first is fold 1)
    assert base.fold_policies[2] != again.fold_policies[2]


def test_multi_bar_horizon_end_to_end() -> None:
    config = dataclasses.replace(FAST, label_horizon=6)
    result = train_symbol(
        planted(5, 5000, trend=STRONG_TREND), exchange="x", symbol="P", config=config
    )
    manifest = result.manifest
    assert manifest["label"]["horizon"] == 6 and manifest["walk_forward"]["purge"] == 6
    positions = result.backtest.positions.to_numpy()
    assert result.metrics["round_trips"] >= 5
    # every position is held at least the horizon (a trade still open at the end aside)
    runs, length, sign = [], 0, 0.0
    for p in positions:
        s = np.sign(p)
        if s != sign and sign != 0:
            runs.append(length)
        length = length + 1 if s == sign and s != 0 else (1 if s != 0 else 0)
        sign = s
    assert runs and min(runs) >= 6
    # metrics are per bar: one return per booked bar
    assert result.metrics["n_bars"] == len(result.backtest.frame)


def test_manifest_describes_the_version() -> None:
    candles = planted(5, 5000, trend=STRONG_TREND)
    result = train_symbol(candles, exchange="synthetic", symbol="P/USDT", config=FAST)
    manifest = result.manifest
    assert manifest["manifest_format"] == 2
    assert manifest["model_type"] == "lightgbm"
    assert manifest["hyperparameters"]["num_boost_round"] == 40
    assert manifest["features"] == result.feature_names and len(result.feature_names) >= 15
    assert manifest["dataset"]["fingerprint_sha256"] == dataset_fingerprint(candles)
    assert manifest["dataset"]["start"] == candles.index[0].isoformat()
    assert manifest["dataset"]["missing_bars"] == 0
    assert manifest["label"] == {"kind": "forward_return", "horizon": 8}
    assert manifest["walk_forward"]["purge"] == 8 and manifest["walk_forward"]["embargo"] == 12
    folds = manifest["walk_forward"]["folds"]
    assert [f["role"] for f in folds] == ["calibration"] + ["scored"] * 4
    assert manifest["policy"]["spec"] == FAST.policy.to_dict()
    assert [p["fold"] for p in manifest["policy"]["folds"]] == [1, 2, 3, 4]
    assert "center" in manifest["policy"]["serving"]
    assert manifest["backtest"]["fee_bps"] == 5.0 and manifest["backtest"]["slippage_bps"] == 0.0
    assert len(manifest["trial_key"]) == 64
    assert {"lightgbm", "numpy", "pandas"} <= set(manifest["libraries"])
    # the scored window starts with the first scored fold: the calibration fold is never scored
    assert result.oos_window[0] > pd.Timestamp(folds[0]["test_to"])
    # the fingerprint changes when one value changes
    changed = candles.copy()
    changed.iloc[10, 3] *= 1.0001
    assert dataset_fingerprint(changed) != dataset_fingerprint(candles)


def test_each_fold_model_never_saw_its_test_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record what every fit sees and what its model is asked: no training row's label
    window reaches the rows the model predicts out of sample; the only rows it predicts in
    sample are its own training rows (the policy's centre of that model)."""
    from brain_lib.models import LightGBMModel

    calls: list[tuple[str, pd.Index]] = []
    original_fit, original_predict = LightGBMModel.fit, LightGBMModel.predict

    def fit(self, X, y):  # type: ignore[no-untyped-def]
        calls.append(("fit", X.index))
        return original_fit(self, X, y)

    def predict(self, X):  # type: ignore[no-untyped-def]
        calls.append(("predict", X.index))
        return original_predict(self, X)

    monkeypatch.setattr(LightGBMModel, "fit", fit)
    monkeypatch.setattr(LightGBMModel, "predict", predict)
    config = dataclasses.replace(FAST, label_horizon=3)
    train_symbol(random_walk(9, 1500), exchange="x", symbol="RW/USDT", config=config)
    bar = pd.Timedelta(hours=1)
    fits = [i for i, (kind, _) in enumerate(calls) if kind == "fit"]
    assert len(fits) == config.n_splits + CALIBRATION_FOLDS + 1  # folds and the final refit
    for n, start in enumerate(fits[:-1]):
        train_index = calls[start][1]
        asked = [idx for kind, idx in calls[start + 1 : fits[n + 1]] if kind == "predict"]
        out_of_sample = [idx for idx in asked if not idx.isin(train_index).all()]
        assert len(out_of_sample) == 1 and len(asked) == 2
        assert any(idx.equals(train_index) for idx in asked)  # the centre, in sample
        # label of row t covers (t, t+3]; it must end before the test fold and the embargo
        test_index = out_of_sample[0]
        assert train_index.max() + 3 * bar < test_index.min() - config.embargo * bar


def test_a_missing_bar_is_a_hole_not_a_seam() -> None:
    """A quarantined or missing candle becomes a hole on the bar grid: the rows whose
    one-bar return or label would span it are not trained on, and no position is held
    over it."""
    candles = planted(6, 5000, trend=STRONG_TREND)
    hole = candles.index[4000]
    holed = candles.drop(index=hole)
    X, _ = build_dataset(holed, 8)
    bar = pd.Timedelta(hours=1)
    assert hole not in X.index and hole + bar not in X.index  # no one-bar return
    assert hole - 8 * bar not in X.index  # its label would end in the hole
    assert X.loc[hole + 2 * bar, "vol_24"] != X.loc[hole + 2 * bar, "vol_24"]  # NaN window
    result = train_symbol(holed, exchange="x", symbol="P", config=FAST)
    frame = result.backtest.frame
    assert frame.loc[hole, "position"] == 0.0 and frame.loc[hole + bar, "position"] == 0.0
    assert result.manifest["dataset"]["missing_bars"] == 1


def test_funding_is_charged_to_the_positions() -> None:
    candles = planted(7, 5000, trend=STRONG_TREND)
    free = train_symbol(candles, exchange="x", symbol="P", config=FAST)
    # a long pays 1 bp every 8 hours (bars opening at 07:00, 15:00, 23:00)
    charge = pd.Series(0.0, index=candles.index)
    charge[candles.index.hour.isin([7, 15, 23])] = 0.0001
    paid = train_symbol(
        candles.assign(**{FUNDING_COLUMN: charge}), exchange="x", symbol="P", config=FAST
    )
    frame = paid.backtest.frame
    assert paid.manifest["backtest"]["funding_charged"] is True
    np.testing.assert_allclose(frame["funding"], frame["position"] * frame["funding_rate"])
    assert paid.metrics["funding_paid"] == pytest.approx(frame["funding"].sum())
    assert paid.metrics["funding_paid"] != 0.0
    # same positions, the funding subtracted from the net returns
    np.testing.assert_array_equal(frame["position"], free.backtest.frame["position"])
    np.testing.assert_allclose(
        frame["net_return"], free.backtest.frame["net_return"] - frame["funding"]
    )
    unpaid = dataclasses.replace(FAST, charge_funding=False)
    off = train_symbol(
        candles.assign(**{FUNDING_COLUMN: charge}), exchange="x", symbol="P", config=unpaid
    )
    assert off.metrics["funding_paid"] == 0.0


def test_too_few_candles_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="only 100 candles"):
        train_symbol(random_walk(1, 100), exchange="x", symbol="RW/USDT", config=FAST)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"label_horizon": 0}, "label_horizon"),
        ({"label_horizon": 50, "test_size": 40}, "label_horizon"),
        ({"fee_bps": -1.0}, "fee_bps"),
        ({"slippage_bps": float("inf")}, "slippage_bps"),
        ({"embargo": -1}, "embargo"),
        ({"timeframe": "1M"}, "timeframe"),
    ],
)
def test_bad_settings_are_named_before_anything_trains(
    settings: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        TrainingConfig(**settings)  # type: ignore[arg-type]


def test_a_horizon_longer_than_a_fold_trains_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from brain_lib.models import LightGBMModel

    fits: list[int] = []
    original = LightGBMModel.fit
    monkeypatch.setattr(
        LightGBMModel, "fit", lambda self, X, y: fits.append(1) or original(self, X, y)
    )
    config = dataclasses.replace(FAST, label_horizon=400)
    with pytest.raises(ConfigError, match="label_horizon=400: longer than a test fold"):
        train_symbol(random_walk(2, 2000), exchange="x", symbol="RW/USDT", config=config)
    assert fits == []
