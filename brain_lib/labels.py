"""Forward-return labels for candles.

The label of row ``t`` is the return from the close of bar ``t`` to the close of bar
``t + h``.  It therefore depends on the closes ``t+1 .. t+h``: its *label window* is the
half-open row interval ``(t, t+h]``.  When such labels are used with
:class:`brain_lib.validation.PurgedWalkForward`, set ``purge=h`` so that no training label
window overlaps a test fold.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from brain_lib.features import validate_candles

__all__ = ["forward_return", "label_end_index"]


def _check_horizon(horizon: object) -> int:
    """Return ``horizon`` as an ``int`` or raise ``ValueError`` if it is not an int >= 1."""
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral):
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    if int(horizon) < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    return int(horizon)


def forward_return(candles: pd.DataFrame, horizon: int = 1, log: bool = False) -> pd.Series:
    """Compute the forward return of each bar over ``horizon`` bars.

    Parameters
    ----------
    candles : pandas.DataFrame
        Candles with a ``close`` column, indexed by a tz-aware, unique, ascending
        DatetimeIndex of bar open times.
    horizon : int, default 1
        Number of bars ahead, ``h >= 1``.
    log : bool, default False
        If True return ``log(close[t+h] / close[t])`` instead of the simple return.

    Returns
    -------
    pandas.Series
        float64 series named ``f"fwd_ret_{horizon}"`` on the index of ``candles``:
        ``close[t+h] / close[t] - 1`` (or its log).  The last ``h`` rows are NaN (their
        future close is unknown).

    Raises
    ------
    ValueError
        If ``horizon`` is not an int >= 1 or ``candles`` breaks the input convention.

    Notes
    -----
    The label of row ``t`` uses the closes ``t+1 .. t+h``, i.e. it covers the label window
    ``(t, t+h]``.  A training row ``i`` therefore leaks information about any test row in
    ``(i, i+h]``; a walk-forward splitter must purge ``h`` rows before each test fold
    (``PurgedWalkForward(purge=h)``).  Zero or negative closes give NaN, never ``inf``.
    """
    h = _check_horizon(horizon)
    validate_candles(candles, required=("close",))
    try:
        close = candles["close"].astype("float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"candles close column must be numeric: {exc}") from exc
    future = close.shift(-h)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = future / close
        out = np.log(ratio) if log else ratio - 1.0
    out = out.replace([np.inf, -np.inf], np.nan).astype("float64")
    out.name = f"fwd_ret_{h}"
    return out


def label_end_index(n_samples: int, horizon: int) -> np.ndarray:
    """Return, for each row, the position of the last bar its label depends on.

    Parameters
    ----------
    n_samples : int
        Number of rows, ``>= 0``.
    horizon : int
        Label horizon ``h >= 1``.

    Returns
    -------
    numpy.ndarray
        int64 array ``[h, h+1, ..., n_samples-1+h]``: row ``t``'s label window is
        ``(t, t+h]``.  Entries ``>= n_samples`` mark rows whose label is not available
        (the last ``h`` rows, NaN in :func:`forward_return`).

    Raises
    ------
    ValueError
        If ``n_samples`` is negative or ``horizon`` is not an int >= 1.
    """
    h = _check_horizon(horizon)
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise ValueError(f"n_samples must be an int >= 0, got {n_samples!r}")
    if int(n_samples) < 0:
        raise ValueError(f"n_samples must be an int >= 0, got {n_samples!r}")
    return np.arange(int(n_samples), dtype=np.int64) + h
