"""Look-ahead-free features computed from OHLCV candles.

Every feature of row ``t`` is a deterministic function of the candles ``0..t`` only
(everything known at the close of bar ``t``).  Rolling windows are trailing, exponential
averages are recursive (``adjust=False``) and nothing is ever back-filled, so truncating the
input after row ``t`` never changes row ``t`` of the output.  The test-suite checks this
property explicitly (``tests/test_features.py``).

Input convention
----------------
A candles :class:`pandas.DataFrame` indexed by a tz-aware, strictly increasing
:class:`pandas.DatetimeIndex` (conventionally named ``"ts"``, UTC), where each ``ts`` is the
bar's *open* time, with float columns ``open``, ``high``, ``low``, ``close`` and ``volume``.

See ``docs/features.md`` for the formula and window of every feature.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "FEATURE_NAMES",
    "OHLCV_COLUMNS",
    "build_features",
    "feature_warmup_bars",
    "validate_candles",
]

#: Columns a candles frame must carry.
OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

#: Names of the columns returned by :func:`build_features`, in order.
FEATURE_NAMES: tuple[str, ...] = (
    "ret_1",
    "ret_4",
    "ret_12",
    "ret_24",
    "ret_72",
    "vol_24",
    "vol_72",
    "vol_168",
    "vol_ratio_24_168",
    "range_1",
    "range_mean_24",
    "close_loc",
    "volume_z_24",
    "volume_z_168",
    "rsi_14",
    "macd",
    "macd_hist",
    "close_z_24",
    "close_z_168",
    "dist_sma_72",
    "atr_14",
    "skew_72",
    "up_share_24",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)

_RET_HORIZONS: tuple[int, ...] = (1, 4, 12, 24, 72)
_VOL_WINDOWS: tuple[int, ...] = (24, 72, 168)
_RANGE_WINDOW = 24
_VOLUME_Z_WINDOWS: tuple[int, ...] = (24, 168)
_RSI_WINDOW = 14
_MACD_FAST = 12
_MACD_SLOW = 26
_MACD_SIGNAL = 9
_CLOSE_Z_WINDOWS: tuple[int, ...] = (24, 168)
_SMA_WINDOW = 72
_ATR_WINDOW = 14
_SKEW_WINDOW = 72
_UP_SHARE_WINDOW = 24

# First row at which each feature can be defined (0-based); the warm-up is the largest.
_FIRST_VALID_ROW: dict[str, int] = {
    **{f"ret_{k}": k for k in _RET_HORIZONS},
    **{f"vol_{w}": w for w in _VOL_WINDOWS},  # ret_1 starts at row 1
    "range_mean_24": _RANGE_WINDOW - 1,
    **{f"volume_z_{w}": w - 1 for w in _VOLUME_Z_WINDOWS},
    "rsi_14": _RSI_WINDOW,  # close.diff() starts at row 1
    "macd_hist": _MACD_SLOW - 1 + _MACD_SIGNAL - 1,
    **{f"close_z_{w}": w - 1 for w in _CLOSE_Z_WINDOWS},
    "dist_sma_72": _SMA_WINDOW - 1,
    "atr_14": _ATR_WINDOW - 1,
    "skew_72": _SKEW_WINDOW,
    "up_share_24": _UP_SHARE_WINDOW,
}
_WARMUP_BARS: int = max(_FIRST_VALID_ROW.values())


def feature_warmup_bars() -> int:
    """Return the number of leading rows during which features may be NaN.

    Returns
    -------
    int
        ``168``: the longest trailing window (the 168-bar realised volatility of the
        1-bar log return, first defined at row 168).  Dropping this many leading rows of
        :func:`build_features` output leaves rows in which every feature is defined,
        provided the candles themselves have no missing values and no flat windows.

    Notes
    -----
    Exponentially weighted features (RSI, MACD, ATR) are defined earlier but keep a
    decaying memory of their initial value; after 168 bars that memory weighs less than
    ``(13/14) ** 168 ≈ 4e-6`` for the slowest of them.
    """
    return _WARMUP_BARS


def validate_candles(candles: pd.DataFrame, required: Iterable[str] = OHLCV_COLUMNS) -> None:
    """Check that ``candles`` follows the candles convention.

    Parameters
    ----------
    candles : pandas.DataFrame
        Frame to check.
    required : iterable of str, default ``OHLCV_COLUMNS``
        Columns that must be present.

    Raises
    ------
    ValueError
        With a one-line message naming the problem: not a DataFrame, missing column, index
        not a DatetimeIndex, index not tz-aware, index not unique or not sorted ascending.
    """
    if not isinstance(candles, pd.DataFrame):
        raise ValueError(f"candles must be a pandas DataFrame, got {type(candles).__name__}")
    missing = [c for c in required if c not in candles.columns]
    if missing:
        raise ValueError(f"candles is missing column(s): {', '.join(missing)}")
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(
            f"candles index must be a tz-aware DatetimeIndex, got {type(index).__name__}"
        )
    if index.tz is None:
        raise ValueError("candles index must be tz-aware (UTC), got a naive DatetimeIndex")
    if not index.is_unique:
        raise ValueError("candles index must be unique, found duplicated timestamps")
    if not index.is_monotonic_increasing:
        raise ValueError("candles index must be sorted ascending")


def _safe_div(num: pd.Series, den: pd.Series | float) -> pd.Series:
    """Divide, mapping division by zero (``±inf`` and ``0/0``) to NaN."""
    out = num / den
    return out.replace([np.inf, -np.inf], np.nan)


def _zscore(x: pd.Series, window: int) -> pd.Series:
    """Trailing z-score of ``x`` against its own ``window``-bar mean and std (ddof=1)."""
    roll = x.rolling(window, min_periods=window)
    return _safe_div(x - roll.mean(), roll.std())


def _wilder(x: pd.Series, window: int) -> pd.Series:
    """Wilder smoothing: recursive EMA with ``alpha = 1/window`` (``adjust=False``)."""
    return x.ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()


def build_features(candles: pd.DataFrame) -> pd.DataFrame:
    """Compute the look-ahead-free feature matrix of a candles frame.

    Parameters
    ----------
    candles : pandas.DataFrame
        Candles indexed by a tz-aware, unique, ascending DatetimeIndex of bar *open*
        times, with columns ``open``, ``high``, ``low``, ``close``, ``volume`` (extra
        columns are ignored).

    Returns
    -------
    pandas.DataFrame
        One float64 column per name in :data:`FEATURE_NAMES` (in that order), on the same
        index as ``candles``.  Row ``t`` uses only candles ``0..t``.  Rows inside a
        feature's warm-up are NaN (never filled); divisions by zero give NaN, never
        ``inf``.

    Raises
    ------
    ValueError
        If ``candles`` does not follow the input convention (see
        :func:`validate_candles`) or its OHLCV columns are not numeric.

    Notes
    -----
    * Returns are log returns ``log(close_t / close_{t-k})``; realised volatilities are
      trailing sample standard deviations (ddof=1) of the 1-bar log return.
    * RSI and ATR use Wilder smoothing (``ewm(alpha=1/14, adjust=False)``); MACD uses
      recursive EMAs (``ewm(span=n, adjust=False)``).  Recursive filters never look
      forward, so they are safe for incremental (live) computation.
    * Calendar features are functions of the bar's open time ``ts`` (in UTC), which is
      known before the bar closes.
    * Use :func:`feature_warmup_bars` to drop the warm-up rows.
    """
    validate_candles(candles)
    try:
        ohlcv = candles.loc[:, list(OHLCV_COLUMNS)].astype("float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"candles OHLCV columns must be numeric: {exc}") from exc

    with np.errstate(divide="ignore", invalid="ignore"):
        return _compute(ohlcv)


def _compute(ohlcv: pd.DataFrame) -> pd.DataFrame:
    high = ohlcv["high"]
    low = ohlcv["low"]
    close = ohlcv["close"]
    volume = ohlcv["volume"]
    log_close = pd.Series(np.log(close.to_numpy()), index=close.index)
    feats: dict[str, pd.Series] = {}

    # Log returns.
    for k in _RET_HORIZONS:
        feats[f"ret_{k}"] = log_close - log_close.shift(k)
    ret_1 = feats["ret_1"]

    # Realised volatility and its short/long ratio.
    for w in _VOL_WINDOWS:
        feats[f"vol_{w}"] = ret_1.rolling(w, min_periods=w).std()
    feats["vol_ratio_24_168"] = _safe_div(feats["vol_24"], feats["vol_168"])

    # Bar range and close location.
    range_1 = pd.Series(np.log(high.to_numpy() / low.to_numpy()), index=close.index)
    feats["range_1"] = range_1
    feats["range_mean_24"] = range_1.rolling(_RANGE_WINDOW, min_periods=_RANGE_WINDOW).mean()
    span = high - low
    close_loc = _safe_div(close - low, span)
    feats["close_loc"] = close_loc.mask(span == 0, 0.5)

    # Volume z-scores of log1p(volume).
    log_volume = pd.Series(np.log1p(volume.to_numpy()), index=close.index)
    for w in _VOLUME_Z_WINDOWS:
        feats[f"volume_z_{w}"] = _zscore(log_volume, w)

    # RSI (Wilder): 100 * avg_gain / (avg_gain + avg_loss) == 100 - 100 / (1 + RS).
    diff = close.diff()
    avg_gain = _wilder(diff.clip(lower=0.0), _RSI_WINDOW)
    avg_loss = _wilder((-diff).clip(lower=0.0), _RSI_WINDOW)
    # ``diff`` is NaN on row 0, so the filters start on row 1; ewm skips the leading NaN.
    feats["rsi_14"] = 100.0 * _safe_div(avg_gain, avg_gain + avg_loss)

    # MACD, normalised by price, and its histogram (MACD minus 9-EMA signal).
    ema_fast = close.ewm(span=_MACD_FAST, adjust=False, min_periods=_MACD_FAST).mean()
    ema_slow = close.ewm(span=_MACD_SLOW, adjust=False, min_periods=_MACD_SLOW).mean()
    macd = _safe_div(ema_fast - ema_slow, close)
    signal = macd.ewm(span=_MACD_SIGNAL, adjust=False, min_periods=_MACD_SIGNAL).mean()
    feats["macd"] = macd
    feats["macd_hist"] = macd - signal

    # Mean reversion: close z-scores and distance to the SMA.
    for w in _CLOSE_Z_WINDOWS:
        feats[f"close_z_{w}"] = _zscore(close, w)
    sma = close.rolling(_SMA_WINDOW, min_periods=_SMA_WINDOW).mean()
    feats["dist_sma_72"] = _safe_div(close, sma) - 1.0

    # ATR (Wilder) relative to the close.
    prev_close = close.shift(1)
    true_range = pd.concat(
        [high - low, (high - prev_close).abs(), (low - prev_close).abs()], axis=1
    ).max(axis=1, skipna=True)
    true_range = true_range.where(high.notna() & low.notna())
    feats["atr_14"] = _safe_div(_wilder(true_range, _ATR_WINDOW), close)

    # Shape and persistence of recent returns.
    feats["skew_72"] = ret_1.rolling(_SKEW_WINDOW, min_periods=_SKEW_WINDOW).skew()
    up = (ret_1 > 0).astype("float64").where(ret_1.notna())
    feats["up_share_24"] = up.rolling(_UP_SHARE_WINDOW, min_periods=_UP_SHARE_WINDOW).mean()

    # Calendar (bar open time, UTC).
    ts = pd.DatetimeIndex(ohlcv.index).tz_convert("UTC")
    hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60.0
    dow = ts.day_of_week.to_numpy().astype("float64")
    feats["hour_sin"] = pd.Series(np.sin(2.0 * np.pi * hour / 24.0), index=close.index)
    feats["hour_cos"] = pd.Series(np.cos(2.0 * np.pi * hour / 24.0), index=close.index)
    feats["dow_sin"] = pd.Series(np.sin(2.0 * np.pi * dow / 7.0), index=close.index)
    feats["dow_cos"] = pd.Series(np.cos(2.0 * np.pi * dow / 7.0), index=close.index)

    out = pd.DataFrame({name: feats[name] for name in FEATURE_NAMES}, index=ohlcv.index)
    out = out.astype("float64").replace([np.inf, -np.inf], np.nan)
    return out
