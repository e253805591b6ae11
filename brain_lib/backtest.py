"""Backtest of out-of-sample predictions: position from prediction, fees on changes.

Timing (see docs/metrics.md): the prediction of bar t is made at the close of bar t
from features known at that close. The position ``p_t`` decided then is held over
bar t+1, so the strategy return booked on bar t+1 is

    r_strat[t+1] = p_t · r[t+1] − fee · |p_t − p_{t−1}|,     r[t+1] = close[t+1] / close[t] − 1

with ``p_{−1} = 0`` (flat before the first prediction) and ``fee`` the cost per unit of
position change (``fee_bps / 10,000``). A position is never decided with data after its
bar, and the last prediction, whose next bar is not in the data, is not traded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["BacktestResult", "position_from_prediction", "run_backtest"]


def position_from_prediction(
    prediction: pd.Series | np.ndarray, threshold: float = 0.0
) -> np.ndarray:
    """Long (+1) when the predicted return exceeds ``threshold``, short (−1) below
    ``−threshold``, flat (0) in between or when the prediction is NaN."""
    pred = np.asarray(prediction, dtype=float)
    pos = np.where(pred > threshold, 1.0, np.where(pred < -threshold, -1.0, 0.0))
    pos[np.isnan(pred)] = 0.0
    return pos


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar result of a backtest, indexed by the bar on which the return is booked."""

    frame: pd.DataFrame  # columns: position, asset_return, gross_return, cost, net_return

    @property
    def net_returns(self) -> pd.Series:
        return self.frame["net_return"]

    @property
    def positions(self) -> pd.Series:
        return self.frame["position"]

    @property
    def turnover(self) -> float:
        """Sum of |position change| over the backtest."""
        pos = self.frame["position"].to_numpy()
        return float(np.abs(np.diff(pos, prepend=0.0)).sum())


def run_backtest(
    prediction: pd.Series,
    close: pd.Series,
    *,
    fee_bps: float = 5.0,
    threshold: float = 0.0,
) -> BacktestResult:
    """Trade ``prediction`` (indexed by decision bar) on ``close`` (same index or wider).

    Parameters
    ----------
    prediction : pandas.Series
        Predicted forward return per bar, indexed by the bar at whose close it is made.
        Must be in time order; gaps between test folds are allowed.
    close : pandas.Series
        Close prices covering every prediction bar and the bar after it.
    fee_bps : float
        Cost in basis points per unit of position change (a flip long→short costs 2×).
    threshold : float
        Minimum |prediction| to take a position.

    Returns
    -------
    BacktestResult
        One row per traded bar t+1: ``position`` (held over the bar, decided at t),
        ``asset_return``, ``gross_return``, ``cost`` and ``net_return``.

    Notes
    -----
    The returned frame is indexed by the bar on which the return is earned; the
    position in a row was decided one bar earlier. Predictions with no following bar in
    ``close`` are dropped (they cannot be traded).
    """
    if not prediction.index.is_monotonic_increasing:
        raise ValueError("prediction must be in time order")
    if fee_bps < 0:
        raise ValueError("fee_bps must be >= 0")
    positions = pd.Series(position_from_prediction(prediction, threshold), index=prediction.index)
    close = close.sort_index()
    loc = close.index.get_indexer(positions.index)
    if (loc < 0).any():
        missing = positions.index[loc < 0][0]
        raise ValueError(f"close has no price for prediction bar {missing}")
    tradable = loc + 1 < len(close)
    positions = positions[tradable]
    loc = loc[tradable]
    c = close.to_numpy(dtype=float)
    next_index = close.index[loc + 1]
    asset_return = c[loc + 1] / c[loc] - 1.0
    pos = positions.to_numpy()
    prev = np.concatenate([[0.0], pos[:-1]])
    change = np.abs(pos - prev)
    cost = change * fee_bps / 10_000.0
    gross = pos * asset_return
    frame = pd.DataFrame(
        {
            "position": pos,
            "asset_return": asset_return,
            "gross_return": gross,
            "cost": cost,
            "net_return": gross - cost,
        },
        index=pd.Index(next_index, name="ts"),
    )
    return BacktestResult(frame)
