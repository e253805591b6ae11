"""Tests for brain_lib.labels: forward returns and their label windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brain_lib.labels import forward_return, label_end_index

CLOSES = [100.0, 110.0, 99.0, 99.0, 120.0, 90.0]


def make_candles(closes: list[float] | np.ndarray = CLOSES) -> pd.DataFrame:
    closes = np.asarray(closes, dtype=float)
    index = pd.date_range("2024-01-01", periods=len(closes), freq="h", tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "open": closes,
            "high": closes * 1.01,
            "low": closes * 0.99,
            "close": closes,
            "volume": np.ones(len(closes)),
        },
        index=index,
    )


def test_horizon_1_hand_computed() -> None:
    candles = make_candles()
    label = forward_return(candles, horizon=1)
    expected = [110 / 100 - 1, 99 / 110 - 1, 0.0, 120 / 99 - 1, 90 / 120 - 1, np.nan]
    np.testing.assert_allclose(label.to_numpy(), expected, rtol=1e-12)
    assert label.name == "fwd_ret_1"
    assert label.index.equals(candles.index)
    assert label.dtype == np.float64


def test_horizon_3_hand_computed() -> None:
    candles = make_candles()
    label = forward_return(candles, horizon=3)
    expected = [99 / 100 - 1, 120 / 110 - 1, 90 / 99 - 1, np.nan, np.nan, np.nan]
    np.testing.assert_allclose(label.to_numpy(), expected, rtol=1e-12)
    assert label.name == "fwd_ret_3"


def test_log_return() -> None:
    candles = make_candles()
    label = forward_return(candles, horizon=3, log=True)
    expected = [np.log(99 / 100), np.log(120 / 110), np.log(90 / 99), np.nan, np.nan, np.nan]
    np.testing.assert_allclose(label.to_numpy(), expected, rtol=1e-12)
    simple = forward_return(candles, horizon=3)
    np.testing.assert_allclose(label.to_numpy(), np.log1p(simple.to_numpy()), rtol=1e-12)


@pytest.mark.parametrize("horizon", [1, 2, 5, 6, 10])
def test_last_h_rows_nan(horizon: int) -> None:
    candles = make_candles(np.linspace(100, 120, 8))
    label = forward_return(candles, horizon=horizon)
    n = len(candles)
    assert label.iloc[max(n - horizon, 0) :].isna().all()
    assert label.iloc[: max(n - horizon, 0)].notna().all()


@pytest.mark.parametrize("horizon", [0, -1, 1.0, 2.5, "3", None, True])
def test_bad_horizon(horizon: object) -> None:
    with pytest.raises(ValueError, match="horizon"):
        forward_return(make_candles(), horizon=horizon)  # type: ignore[arg-type]


def test_numpy_integer_horizon_ok() -> None:
    label = forward_return(make_candles(), horizon=np.int64(2))  # type: ignore[arg-type]
    assert label.name == "fwd_ret_2"


@pytest.mark.parametrize("horizon", [1, 3])
def test_label_depends_on_close_t_plus_h_only(horizon: int) -> None:
    """The label at t changes with close[t+h], not with close[t+h+1]."""
    rng = np.random.default_rng(0)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 20)))
    t = 5
    base = forward_return(make_candles(closes), horizon=horizon)

    bumped = closes.copy()
    bumped[t + horizon] *= 1.05
    changed = forward_return(make_candles(bumped), horizon=horizon)
    assert changed.iloc[t] != pytest.approx(base.iloc[t])

    bumped_after = closes.copy()
    bumped_after[t + horizon + 1] *= 1.05
    unchanged = forward_return(make_candles(bumped_after), horizon=horizon)
    assert unchanged.iloc[t] == base.iloc[t]

    # Closes before t do not matter either; the label window is (t, t+h].
    bumped_before = closes.copy()
    bumped_before[t - 1] *= 1.05
    assert forward_return(make_candles(bumped_before), horizon=horizon).iloc[t] == base.iloc[t]


def test_zero_close_gives_nan_not_inf() -> None:
    label = forward_return(make_candles([100.0, 0.0, 50.0, 0.0]), horizon=1)
    assert not np.isinf(label.to_numpy()).any()
    assert np.isnan(label.iloc[1])  # 50 / 0
    log_label = forward_return(make_candles([100.0, 0.0, 50.0, 0.0]), horizon=1, log=True)
    assert not np.isinf(log_label.to_numpy()).any()


def test_input_validation() -> None:
    with pytest.raises(ValueError, match=r"missing column.*close"):
        forward_return(make_candles().drop(columns="close"))
    with pytest.raises(ValueError, match="tz-aware"):
        forward_return(make_candles().tz_localize(None))
    with pytest.raises(ValueError, match="sorted"):
        forward_return(make_candles().iloc[::-1])


def test_label_end_index() -> None:
    ends = label_end_index(6, 3)
    np.testing.assert_array_equal(ends, [3, 4, 5, 6, 7, 8])
    assert ends.dtype == np.int64
    # Rows whose label window ends past the data are exactly the NaN labels.
    label = forward_return(make_candles(), horizon=3)
    np.testing.assert_array_equal(ends >= 6, label.isna().to_numpy())
    assert label_end_index(0, 1).size == 0
    with pytest.raises(ValueError, match="horizon"):
        label_end_index(5, 0)
    with pytest.raises(ValueError, match="n_samples"):
        label_end_index(-1, 1)
