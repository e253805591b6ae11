r"""Backtest of positions: returns with trading costs and funding, and the baselines.

Timing (see docs/backtest.md): the prediction of bar t is made at the close of bar t
from features known at that close, and the policy (:mod:`brain_lib.policy`) turns it
into the position :math:`p_t` held over bar t+1. The strategy return booked on bar t+1 is

.. math::

    r^{s}_{t+1} = p_t\,r_{t+1} - c\,|p_t - p_{t-1}| - p_t\,f_{t+1},\qquad
    r_{t+1} = close_{t+1} / close_t - 1

with :math:`p_{-1} = 0` (flat before the first decision), :math:`c` the cost of one unit
of position change (``cost_bps / 10,000``: the exchange fee plus the slippage or half
spread) and :math:`f_{t+1}` the funding rate a unit long position pays over bar t+1
(perpetual swaps: the print stamped at the bar's close; a short receives it; 0 where
the symbol has none). A position is never decided with data after its bar, and the last
decision, whose next bar is not in the data, is not traded.

Gaps: ``close`` is on the bar grid, a missing or quarantined bar is NaN. A bar whose
return is undefined (its close or the one before is missing) is never held: the
position over it is forced to 0, so closing before the gap and reopening after it pay
their costs like any trade.

Baselines on the same bars (:func:`baselines`): **flat** (0 every bar) and
**buy-and-hold** (long one unit from the first bar to the last: one entry cost, the
funding a long pays, no exit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "BacktestResult",
    "Booking",
    "backtest_positions",
    "baselines",
    "position_from_prediction",
    "run_backtest",
]


def position_from_prediction(
    prediction: pd.Series | np.ndarray, threshold: float = 0.0
) -> np.ndarray:
    """The naive rule: long (+1) when the predicted return exceeds ``threshold``,
    short (−1) below ``−threshold``, flat (0) in between or when the prediction is NaN.

    Kept as a reference (it trades on every wiggle of the prediction); versions are
    judged with a fitted :mod:`brain_lib.policy`."""
    pred = np.asarray(prediction, dtype=float)
    pos = np.where(pred > threshold, 1.0, np.where(pred < -threshold, -1.0, 0.0))
    pos[np.isnan(pred)] = 0.0
    return pos


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar result of a backtest, indexed by the bar on which the return is booked."""

    # columns: position, asset_return, gross_return, cost, funding_rate, funding, net_return
    frame: pd.DataFrame

    @property
    def net_returns(self) -> pd.Series:
        return self.frame["net_return"]

    @property
    def positions(self) -> pd.Series:
        return self.frame["position"]

    @property
    def turnover(self) -> float:
        """Sum of |position change| over the backtest (entering from flat counts)."""
        pos = self.frame["position"].to_numpy()
        return float(np.abs(np.diff(pos, prepend=0.0)).sum())


def backtest_positions(
    positions: pd.Series,
    close: pd.Series,
    *,
    cost_bps: float = 5.0,
    funding: pd.Series | None = None,
) -> BacktestResult:
    """Book ``positions`` (indexed by decision bar) on ``close`` (the bar grid).

    Parameters
    ----------
    positions : pandas.Series
        Position decided at the close of each bar, in time order; every bar must be in
        ``close``.
    close : pandas.Series
        Closes on the bar grid, covering every decision bar and the bar after it; NaN
        marks a missing bar.
    cost_bps : float, default 5.0
        Cost per unit of position change in basis points (a long→short flip costs 2×).
    funding : pandas.Series, optional
        Funding rate a unit long pays over a bar, indexed by the bar's open time
        (missing bars: 0).

    Returns
    -------
    BacktestResult
        One row per traded bar t+1: ``position`` (held over the bar, decided at t),
        ``asset_return``, ``gross_return``, ``cost``, ``funding_rate`` (the rate over the
        bar), ``funding`` (what the position paid) and ``net_return``.

    Raises
    ------
    ValueError
        If the positions are not in time order, a cost is negative, or ``close`` has no
        row for a decision bar.
    """
    book = Booking.on(positions.index, close, cost_bps=cost_bps, funding=funding)
    pos, gross, cost, funding_cost = book.legs(positions.to_numpy(dtype=float))
    frame = pd.DataFrame(
        {
            "position": pos,
            "asset_return": book.asset_return,
            "gross_return": gross,
            "cost": cost,
            "funding_rate": book.rate,
            "funding": funding_cost,
            "net_return": gross - cost - funding_cost,
        },
        index=pd.Index(book.next_index, name="ts"),
    )
    return BacktestResult(frame)


@dataclass(frozen=True)
class Booking:
    """What :func:`backtest_positions` needs of the prices for one run of decision
    bars, worked out once: which bars can trade, each traded bar's asset return and
    funding rate. Booking many position series on the same bars (the shuffles of
    permutation importance) then costs a few numpy operations each."""

    tradable: npt.NDArray[np.bool_]  # decision bars with a bar after them in ``close``
    next_index: pd.Index  # the bar each tradable decision is booked on
    asset_return: FloatArray  # NaN where undefined (a missing bar)
    rate: FloatArray  # funding a unit long pays over the traded bar
    cost_bps: float

    @classmethod
    def on(
        cls,
        decisions: pd.Index,
        close: pd.Series,
        *,
        cost_bps: float = 5.0,
        funding: pd.Series | None = None,
    ) -> Booking:
        if not decisions.is_monotonic_increasing:
            raise ValueError("positions must be in time order")
        if not np.isfinite(cost_bps) or cost_bps < 0:
            raise ValueError("cost_bps must be a finite number >= 0")
        close = close.sort_index()
        loc = close.index.get_indexer(decisions)
        if (loc < 0).any():
            missing = decisions[loc < 0][0]
            raise ValueError(f"close has no price for decision bar {missing}")
        tradable = loc + 1 < len(close)
        loc = loc[tradable]
        c = close.to_numpy(dtype=float)
        next_index = close.index[loc + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            asset_return = c[loc + 1] / c[loc] - 1.0
        asset_return = np.where(np.isfinite(asset_return), asset_return, np.nan)
        rate = np.zeros(len(loc))
        if funding is not None:
            rate = funding.reindex(next_index).fillna(0.0).to_numpy(dtype=float)
        return cls(tradable, next_index, asset_return, rate, float(cost_bps))

    def legs(
        self, positions: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(position held, gross return, cost, funding paid) per traded bar, for
        positions per decision bar: shape (n,) or (n, k) for k series at once. A
        position on a bar with an undefined return, or one that is not finite, is 0."""
        pos = np.asarray(positions, dtype=float)[self.tradable]
        undefined = np.isnan(self.asset_return)
        if pos.ndim == 2:
            undefined = undefined[:, None]
        pos = np.where(undefined | ~np.isfinite(pos), 0.0, pos)
        prev = np.concatenate([np.zeros_like(pos[:1]), pos[:-1]])
        cost = np.abs(pos - prev) * self.cost_bps / 10_000.0
        moves = np.nan_to_num(self.asset_return)
        rate = self.rate
        if pos.ndim == 2:
            moves, rate = moves[:, None], rate[:, None]
        gross = np.where(pos == 0.0, 0.0, pos * moves)
        return pos, gross, cost, pos * rate

    def net_returns(self, positions: npt.ArrayLike) -> FloatArray:
        """Net return per traded bar (rows) of each position series (columns if 2-D)."""
        _, gross, cost, funding_cost = self.legs(positions)
        return np.asarray(gross - cost - funding_cost, dtype=float)


def run_backtest(
    prediction: pd.Series,
    close: pd.Series,
    *,
    fee_bps: float = 5.0,
    threshold: float = 0.0,
) -> BacktestResult:
    """Backtest the naive rule (:func:`position_from_prediction`) on ``prediction``."""
    if not prediction.index.is_monotonic_increasing:
        raise ValueError("prediction must be in time order")
    if fee_bps < 0:
        raise ValueError("fee_bps must be >= 0")
    positions = pd.Series(position_from_prediction(prediction, threshold), index=prediction.index)
    return backtest_positions(positions, close, cost_bps=fee_bps)


def baselines(result: BacktestResult, *, cost_bps: float = 5.0) -> dict[str, pd.Series]:
    """Flat and buy-and-hold returns on the bars of ``result``.

    ``buy_hold``: long one unit over every bar (a bar with an undefined return books 0),
    paying ``cost_bps`` once on the first bar and the funding rate of every bar, as a
    long perpetual does. ``flat``: 0 on every bar.
    """
    frame = result.frame
    asset = frame["asset_return"].to_numpy(dtype=float)
    held = np.isfinite(asset)
    bh = np.where(held, np.nan_to_num(asset) - frame["funding_rate"].to_numpy(dtype=float), 0.0)
    if len(bh):
        bh[0] -= cost_bps / 10_000.0
    return {
        "flat": pd.Series(np.zeros(len(frame)), index=frame.index),
        "buy_hold": pd.Series(bh, index=frame.index),
    }
