"""Backtest timing and fees, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brain_lib.backtest import (
    backtest_positions,
    baselines,
    position_from_prediction,
    run_backtest,
)


def _index(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC", name="ts")


def test_position_is_applied_to_the_next_bar_with_fees_on_changes() -> None:
    close = pd.Series([100.0, 110.0, 99.0, 99.0, 108.9], index=_index(5))
    # decisions at the close of bars 0..3: long, short, short, long
    pred = pd.Series([0.5, -0.2, -0.1, 0.3], index=_index(5)[:4])
    bt = run_backtest(pred, close, fee_bps=10.0).frame
    # booked on bars 1..4; asset returns: +10%, -10%, 0%, +10%
    assert list(bt.index) == list(_index(5)[1:])
    np.testing.assert_allclose(bt["asset_return"], [0.10, -0.10, 0.0, 0.10])
    np.testing.assert_allclose(bt["position"], [1, -1, -1, 1])
    # position changes: 0→1 (1), 1→-1 (2), -1→-1 (0), -1→1 (2); fee 10 bps per unit
    np.testing.assert_allclose(bt["cost"], [0.001, 0.002, 0.0, 0.002])
    np.testing.assert_allclose(bt["net_return"], [0.099, 0.098, 0.0, 0.098])


def test_last_prediction_without_a_next_bar_is_not_traded() -> None:
    close = pd.Series([100.0, 101.0, 102.0], index=_index(3))
    pred = pd.Series([1.0, 1.0, 1.0], index=_index(3))
    bt = run_backtest(pred, close, fee_bps=0.0).frame
    assert len(bt) == 2
    assert bt.index[-1] == _index(3)[2]


def test_a_position_never_sees_the_return_it_earns() -> None:
    """Changing the price of bar t+1 must not change the position decided at bar t."""
    rng = np.random.default_rng(3)
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200))), index=_index(200))
    pred = close.pct_change().fillna(0.0)  # uses data up to its own bar only
    base = run_backtest(pred.iloc[:-1], close, fee_bps=5.0).frame
    shocked_close = close.copy()
    shocked_close.iloc[150] *= 1.5
    shocked_pred = shocked_close.pct_change().fillna(0.0)
    shocked = run_backtest(shocked_pred.iloc[:-1], shocked_close, fee_bps=5.0).frame
    # positions held over bars up to and including 150 were decided at bars <= 149
    pd.testing.assert_series_equal(
        base["position"].loc[: _index(200)[150]], shocked["position"].loc[: _index(200)[150]]
    )


def test_threshold_and_nan_give_flat() -> None:
    pos = position_from_prediction(np.array([0.02, -0.02, 0.005, np.nan]), threshold=0.01)
    np.testing.assert_array_equal(pos, [1.0, -1.0, 0.0, 0.0])


def test_bad_input_is_named() -> None:
    close = pd.Series([1.0, 2.0], index=_index(2))
    with pytest.raises(ValueError, match="time order"):
        run_backtest(pd.Series([1.0, 1.0], index=_index(2)[::-1]), close)
    with pytest.raises(ValueError, match="no price"):
        run_backtest(pd.Series([1.0], index=pd.DatetimeIndex(["2030-01-01"], tz="UTC")), close)
    with pytest.raises(ValueError, match="fee_bps"):
        run_backtest(pd.Series([1.0], index=_index(1)), close, fee_bps=-1)


# ----------------------------------------------------------- positions, costs, gaps


def test_positions_pay_fees_slippage_and_funding() -> None:
    close = pd.Series([100.0, 110.0, 99.0, 99.0, 108.9], index=_index(5))
    positions = pd.Series([1.0, 1.0, -0.5, 0.0], index=_index(5)[:4])
    # a long pays the funding rate of the bar, a short receives it
    funding = pd.Series([0.0, 0.001, 0.0, 0.002, 0.0], index=_index(5))
    bt = backtest_positions(positions, close, cost_bps=10.0, funding=funding).frame
    np.testing.assert_allclose(bt["asset_return"], [0.10, -0.10, 0.0, 0.10])
    np.testing.assert_allclose(bt["cost"], [0.001, 0.0, 0.0015, 0.0005])
    np.testing.assert_allclose(bt["funding_rate"], [0.001, 0.0, 0.002, 0.0])
    np.testing.assert_allclose(bt["funding"], [0.001, 0.0, -0.001, 0.0])
    # 0.1 - 0.001 - 0.001; -0.1; 0 - 0.0015 + 0.001; -0.0005
    np.testing.assert_allclose(bt["net_return"], [0.098, -0.1, -0.0005, -0.0005])


def test_no_position_is_held_over_a_missing_bar() -> None:
    close = pd.Series([100.0, 101.0, np.nan, 103.0, 104.0], index=_index(5))
    positions = pd.Series([1.0, 1.0, 1.0, 1.0], index=_index(5)[:4])
    bt = backtest_positions(positions, close, cost_bps=10.0).frame
    # bars 2 (missing) and 3 (after the hole) have no return: flat over them, and the
    # exit before the hole and the re-entry after it pay the fee
    np.testing.assert_array_equal(bt["position"], [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(bt["cost"], [0.001, 0.001, 0.0, 0.001])
    assert np.isnan(bt["asset_return"].iloc[1]) and np.isnan(bt["asset_return"].iloc[2])
    np.testing.assert_allclose(bt["net_return"], [0.009, -0.001, 0.0, 104 / 103 - 1 - 0.001])


def test_baselines_by_hand() -> None:
    close = pd.Series([100.0, 110.0, 99.0, 99.0, 108.9], index=_index(5))
    positions = pd.Series([0.0, 1.0, 0.0, -1.0], index=_index(5)[:4])
    funding = pd.Series([0.0, 0.0, 0.001, 0.0, 0.0], index=_index(5))
    bt = backtest_positions(positions, close, cost_bps=10.0, funding=funding)
    base = baselines(bt, cost_bps=10.0)
    np.testing.assert_array_equal(base["flat"], [0.0, 0.0, 0.0, 0.0])
    # long over every bar: +10 % minus the entry fee, -10 % minus the funding, 0, +10 %
    np.testing.assert_allclose(base["buy_hold"], [0.099, -0.101, 0.0, 0.1])
    assert list(base["buy_hold"].index) == list(bt.frame.index)


def test_negative_cost_is_refused() -> None:
    close = pd.Series([1.0, 2.0], index=_index(2))
    with pytest.raises(ValueError, match="cost_bps"):
        backtest_positions(pd.Series([1.0], index=_index(1)), close, cost_bps=-1.0)
