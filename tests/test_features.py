"""Tests for brain_lib.features: no look-ahead, shape, values and input validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import pytest

from brain_lib.features import FEATURE_NAMES, build_features, feature_warmup_bars

N_BARS = 1200


def make_candles(n: int = N_BARS, seed: int = 7) -> pd.DataFrame:
    """Seeded synthetic hourly random-walk OHLCV frame with valid OHLC relations."""
    rng = np.random.default_rng(seed)
    log_close = np.log(30_000.0) + np.cumsum(rng.normal(0.0, 0.01, n))
    close = np.exp(log_close)
    open_ = np.empty(n)
    open_[0] = close[0] * np.exp(rng.normal(0.0, 0.002))
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 0.0005, n - 1))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
    volume = rng.lognormal(mean=5.0, sigma=0.8, size=n)
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="ts")
    candles = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=index,
    )
    assert (candles["high"] >= candles[["open", "close"]].max(axis=1)).all()
    assert (candles["low"] <= candles[["open", "close"]].min(axis=1)).all()
    assert (candles["volume"] > 0).all()
    return candles


def assert_no_lookahead(
    fn: Callable[[pd.DataFrame], pd.DataFrame],
    candles: pd.DataFrame,
    positions: Iterable[int],
    rtol: float = 1e-9,
) -> None:
    """Assert that row ``t`` of ``fn(candles)`` equals the last row of ``fn(candles[:t+1])``.

    A feature that uses any bar after ``t`` changes when the future is cut off, so the
    two rows differ.  NaN compares equal to NaN.
    """
    full = fn(candles)
    for t in positions:
        truncated = fn(candles.iloc[: t + 1])
        pd.testing.assert_series_equal(
            truncated.iloc[-1],
            full.iloc[t],
            check_exact=False,
            rtol=rtol,
            atol=1e-12,
            obj=f"feature row {t}",
        )


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return make_candles()


@pytest.fixture(scope="module")
def positions() -> list[int]:
    rng = np.random.default_rng(2024)
    warm = feature_warmup_bars()
    after = rng.choice(np.arange(warm, N_BARS), size=40, replace=False)
    during = [0, 1, 2, 13, 14, 25, 33, 71, 72, 167, 168]
    return sorted({*during, *after.tolist(), N_BARS - 1})


def test_no_lookahead(candles: pd.DataFrame, positions: list[int]) -> None:
    assert_no_lookahead(build_features, candles, positions)


def test_no_lookahead_check_catches_leakage(candles: pd.DataFrame, positions: list[int]) -> None:
    """Positive control: the same check fails on a deliberately leaky feature."""

    def leaky(c: pd.DataFrame) -> pd.DataFrame:
        feats = build_features(c)
        feats["leak_next_close"] = c["close"].shift(-1)
        return feats

    with pytest.raises(AssertionError):
        assert_no_lookahead(leaky, candles, positions)


def test_no_lookahead_check_catches_centered_window(candles: pd.DataFrame) -> None:
    """A subtler leak (a centred rolling mean) is caught too."""

    def leaky(c: pd.DataFrame) -> pd.DataFrame:
        feats = build_features(c)
        feats["centred_mean"] = c["close"].rolling(5, center=True).mean()
        return feats

    with pytest.raises(AssertionError):
        assert_no_lookahead(leaky, candles, [300, 600, 900])


def test_columns_and_index(candles: pd.DataFrame) -> None:
    feats = build_features(candles)
    assert len(FEATURE_NAMES) >= 20
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert tuple(feats.columns) == FEATURE_NAMES
    assert feats.index.equals(candles.index)
    assert (feats.dtypes == np.float64).all()


def test_no_inf_and_warmup(candles: pd.DataFrame) -> None:
    feats = build_features(candles)
    assert not np.isinf(feats.to_numpy()).any()
    warm = feature_warmup_bars()
    assert warm == 168
    assert not feats.iloc[warm:].isna().any().any()
    # The longest window is not yet defined one bar earlier.
    assert feats.iloc[warm - 1].isna().any()
    # Warm-up rows are NaN, never filled with later values.
    assert feats["vol_168"].iloc[:warm].isna().all()
    assert feats["ret_72"].iloc[:72].isna().all()


def test_no_inf_on_degenerate_input() -> None:
    """Flat prices and zero volume give NaN (0/0, x/0), never inf."""
    candles = make_candles(300)
    candles.iloc[100:200, :4] = 100.0
    candles.iloc[100:200, 4] = 0.0
    feats = build_features(candles)
    assert not np.isinf(feats.to_numpy()).any()
    flat = feats.iloc[199]
    assert flat["close_loc"] == 0.5
    assert flat["range_1"] == 0.0
    assert flat["vol_24"] == 0.0
    assert flat["vol_ratio_24_168"] == 0.0
    assert np.isnan(flat["volume_z_24"])  # zero std of constant log1p(0)
    assert np.isnan(flat["close_z_24"])  # zero std of a flat close


def _tiny() -> pd.DataFrame:
    index = pd.date_range("2024-03-04 22:00", periods=4, freq="h", tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "open": [100.0, 101.0, 99.0, 102.0],
            "high": [102.0, 103.0, 99.0, 104.0],
            "low": [98.0, 100.0, 99.0, 101.0],
            "close": [101.0, 102.0, 99.0, 103.0],
            "volume": [10.0, 0.0, 5.0, 7.0],
        },
        index=index,
    )


def test_hand_computed_values() -> None:
    feats = build_features(_tiny())
    np.testing.assert_allclose(
        feats["ret_1"].to_numpy(),
        [np.nan, np.log(102 / 101), np.log(99 / 102), np.log(103 / 99)],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        feats["range_1"].to_numpy(),
        [np.log(102 / 98), np.log(103 / 100), 0.0, np.log(104 / 101)],
        rtol=1e-12,
    )
    # (close - low) / (high - low), 0.5 on a flat bar (high == low).
    np.testing.assert_allclose(
        feats["close_loc"].to_numpy(), [3 / 4, 2 / 3, 0.5, 2 / 3], rtol=1e-12
    )
    assert feats["ret_4"].isna().all()
    # Calendar: 2024-03-04 is a Monday (dow 0); bars open at 22:00, 23:00, 00:00, 01:00.
    hours = np.array([22.0, 23.0, 0.0, 1.0])
    dows = np.array([0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(feats["hour_sin"], np.sin(2 * np.pi * hours / 24), atol=1e-12)
    np.testing.assert_allclose(feats["hour_cos"], np.cos(2 * np.pi * hours / 24), atol=1e-12)
    np.testing.assert_allclose(feats["dow_sin"], np.sin(2 * np.pi * dows / 7), atol=1e-12)
    np.testing.assert_allclose(feats["dow_cos"], np.cos(2 * np.pi * dows / 7), atol=1e-12)


def test_hand_computed_rolling_values(candles: pd.DataFrame) -> None:
    feats = build_features(candles)
    t = 500
    close = candles["close"].to_numpy()
    rets = np.diff(np.log(close))  # rets[j] is the return of row j + 1
    window = rets[t - 24 : t]  # returns of rows t-23 .. t
    assert feats["vol_24"].iloc[t] == pytest.approx(np.std(window, ddof=1), rel=1e-9)
    assert feats["up_share_24"].iloc[t] == pytest.approx(np.mean(window > 0), rel=1e-12)
    assert feats["ret_12"].iloc[t] == pytest.approx(np.log(close[t] / close[t - 12]), rel=1e-9)
    c24 = close[t - 23 : t + 1]
    expected_z = (close[t] - c24.mean()) / c24.std(ddof=1)
    assert feats["close_z_24"].iloc[t] == pytest.approx(expected_z, rel=1e-7)
    sma72 = close[t - 71 : t + 1].mean()
    assert feats["dist_sma_72"].iloc[t] == pytest.approx(close[t] / sma72 - 1, rel=1e-7)
    lv = np.log1p(candles["volume"].to_numpy()[t - 23 : t + 1])
    expected_vz = (lv[-1] - lv.mean()) / lv.std(ddof=1)
    assert feats["volume_z_24"].iloc[t] == pytest.approx(expected_vz, rel=1e-7)


def test_hand_computed_rsi() -> None:
    """Wilder RSI against an explicit recursion."""
    candles = make_candles(60, seed=3)
    feats = build_features(candles)
    diff = np.diff(candles["close"].to_numpy())
    gain = np.clip(diff, 0, None)
    loss = np.clip(-diff, 0, None)
    g, loss_avg = gain[0], loss[0]
    expected = [np.nan] * 60
    for j in range(1, len(diff)):
        g = g + (gain[j] - g) / 14
        loss_avg = loss_avg + (loss[j] - loss_avg) / 14
        if j >= 13:  # 14 observations of the difference
            expected[j + 1] = 100 * g / (g + loss_avg)
    np.testing.assert_allclose(feats["rsi_14"].to_numpy(), expected, rtol=1e-9)
    assert feats["rsi_14"].iloc[14:].between(0, 100).all()


def test_rsi_all_gains_is_100() -> None:
    candles = make_candles(40)
    candles["close"] = np.linspace(100, 140, 40)
    candles["high"] = candles[["open", "close"]].max(axis=1) + 1
    candles["low"] = candles[["open", "close"]].min(axis=1) - 1
    feats = build_features(candles)
    assert feats["rsi_14"].iloc[-1] == pytest.approx(100.0)


def test_input_is_not_modified(candles: pd.DataFrame) -> None:
    before = candles.copy()
    build_features(candles)
    pd.testing.assert_frame_equal(candles, before)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda c: c.drop(columns="volume"), "missing column.*volume"),
        (lambda c: c.drop(columns=["high", "low"]), "missing column.*high, low"),
        (lambda c: c.tz_localize(None), "tz-aware"),
        (lambda c: c.reset_index(drop=True), "DatetimeIndex"),
        (lambda c: c.iloc[::-1], "sorted"),
        (lambda c: pd.concat([c, c.iloc[[-1]]]), "unique"),
        (lambda c: c["close"], "DataFrame"),
        (lambda c: c.assign(close="abc"), "numeric"),
    ],
)
def test_input_validation(mutate: Callable[[pd.DataFrame], object], match: str) -> None:
    candles = make_candles(50)
    with pytest.raises(ValueError, match=match):
        build_features(mutate(candles))
