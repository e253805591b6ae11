"""Performance metrics of per-bar strategy returns.

Every function takes a 1-D array-like of *simple* per-bar returns
(``r_t = E_t / E_{t-1} - 1``; a NumPy array, a list or a pandas Series) and
returns a Python :class:`float`.

Conventions shared by all functions:

* ``NaN`` entries are missing bars and are dropped before any computation.
* ``+inf`` / ``-inf`` entries are bad input and raise :class:`ValueError`.
* Annualisation uses bars per 365-day year (crypto trades every day), so the
  default for hourly bars is ``DEFAULT_PERIODS_PER_YEAR = 8760``; see
  :func:`periods_per_year` for other timeframes.
* The annual risk-free rate is converted to a per-bar rate by simple division,
  ``rf_bar = risk_free_rate / periods_per_year``.
* Degenerate inputs (empty series, zero variance, no losses, ...) return a
  documented value (``NaN``, ``0.0``, ``+inf`` or ``-1.0``); no function raises
  on them and none emits a NumPy ``RuntimeWarning``.

The formulas and the edge-case table are also in ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_PERIODS_PER_YEAR",
    "EULER_GAMMA",
    "annualised_return",
    "calmar_ratio",
    "compute_all",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "hit_ratio",
    "max_drawdown",
    "periods_per_year",
    "probabilistic_sharpe_ratio",
    "profit_factor",
    "psr_from_moments",
    "sharpe_ratio",
    "sortino_ratio",
    "trading_statistics",
]

DEFAULT_PERIODS_PER_YEAR: int = 8760
"""Hourly bars in a 365-day year (24 × 365)."""

_MINUTES_PER_YEAR = 365 * 24 * 60
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}
_TIMEFRAME_RE = re.compile(r"([0-9]+)([mhdw])")

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _as_1d(values: npt.ArrayLike, name: str) -> FloatArray:
    """Convert to a 1-D float64 array (NaN kept) and reject infinite values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got an array of shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name} contain infinite values")
    return arr


def _clean_returns(returns: npt.ArrayLike) -> FloatArray:
    """1-D float64 returns with NaN (missing bars) dropped; infinite values raise."""
    arr = _as_1d(returns, "returns")
    return arr[~np.isnan(arr)]


def _check_periods(periods_per_year: float) -> float:
    p = float(periods_per_year)
    if not math.isfinite(p) or p <= 0.0:
        raise ValueError(f"periods_per_year must be a finite number > 0, got {periods_per_year!r}")
    return p


def _check_rate(risk_free_rate: float) -> float:
    rf = float(risk_free_rate)
    if not math.isfinite(rf):
        raise ValueError(f"risk_free_rate must be finite, got {risk_free_rate!r}")
    return rf


def _sharpe(r: FloatArray, p: float, rf: float) -> float:
    if r.size < 2:
        return math.nan
    with np.errstate(all="ignore"):
        x = r - rf / p
        if x.max() == x.min():  # zero variance: every excess return identical
            return math.nan
        mean = float(x.mean())
        std = float(x.std(ddof=1))
        if std == 0.0 or not math.isfinite(std) or not math.isfinite(mean):
            return math.nan
        return float(mean / std * math.sqrt(p))


def _sortino(r: FloatArray, p: float, rf: float) -> float:
    if r.size == 0:
        return math.nan
    with np.errstate(all="ignore"):
        x = r - rf / p
        mean = float(x.mean())
        downside = np.minimum(x, 0.0)
        scale = float(-downside.min())  # largest loss, >= 0
        if scale == 0.0:  # no negative excess return
            return math.inf if mean > 0.0 else math.nan
        # DD = scale * sqrt(mean((x⁻ / scale)²)); scaling avoids overflow/underflow
        dd_scaled = math.sqrt(float(np.mean((downside / scale) ** 2)))
        return float(mean / scale / dd_scaled * math.sqrt(p))


def _log_equity(r: FloatArray) -> FloatArray | None:
    """Cumulative log equity ``L_t = Σ log1p(r_i)``, or ``None`` on ruin (a return <= -1)."""
    if (r <= -1.0).any():
        return None
    return np.cumsum(np.log1p(r))


def _total_return(r: FloatArray) -> float:
    if r.size == 0:
        return 0.0
    log_eq = _log_equity(r)
    if log_eq is None:
        return -1.0
    with np.errstate(all="ignore"):
        return float(np.expm1(log_eq[-1]))


def _max_drawdown(r: FloatArray) -> float:
    if r.size == 0:
        return 0.0
    log_eq = _log_equity(r)
    if log_eq is None:
        return -1.0
    # running peak of log equity, starting capital (L_0 = 0) included
    peak = np.maximum.accumulate(np.maximum(log_eq, 0.0))
    with np.errstate(all="ignore"):
        dd = float(np.expm1(log_eq - peak).min())
    return min(max(dd, -1.0), 0.0)


def _annualised_return(r: FloatArray, p: float) -> float:
    if r.size == 0:
        return 0.0
    log_eq = _log_equity(r)
    if log_eq is None:
        return -1.0
    with np.errstate(all="ignore"):
        return float(np.expm1(log_eq[-1] * (p / r.size)))


def _calmar(r: FloatArray, p: float) -> float:
    if r.size == 0:
        return math.nan
    ann = _annualised_return(r, p)
    mdd = _max_drawdown(r)
    if mdd == 0.0:
        return math.inf if ann > 0.0 else math.nan
    return ann / abs(mdd)


def _profit_factor(r: FloatArray) -> float:
    if r.size == 0:
        return math.nan
    with np.errstate(all="ignore"):
        gains = float(r[r > 0.0].sum())
        losses = float(-r[r < 0.0].sum())
        if losses == 0.0:
            return math.inf if gains > 0.0 else math.nan
        return gains / losses


def _position_mask(
    returns: npt.ArrayLike, positions: npt.ArrayLike | None
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Clean returns and a same-length boolean mask "bar has a position"."""
    r = _as_1d(returns, "returns")
    if positions is None:
        r = r[~np.isnan(r)]
        return r, r != 0.0
    pos = _as_1d(positions, "positions")
    if pos.shape != r.shape:
        raise ValueError(
            f"positions must have the same length as returns ({r.size}), got {pos.size}"
        )
    keep = ~np.isnan(r)
    r, pos = r[keep], pos[keep]
    # NaN != 0 is True, so test NaN explicitly: an unknown position is no position
    return r, (pos != 0.0) & ~np.isnan(pos)


def _hit_ratio(r: FloatArray, has_position: npt.NDArray[np.bool_]) -> float:
    n_pos = int(has_position.sum())
    if n_pos == 0:
        return math.nan
    return int((has_position & (r > 0.0)).sum()) / n_pos


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def periods_per_year(timeframe: str) -> float:
    """Number of bars of a ccxt-style timeframe in a 365-day year.

    Parameters
    ----------
    timeframe : str
        ``"<n><unit>"`` with ``n >= 1`` (ASCII digits) and ``unit`` one of
        ``m`` (minutes), ``h`` (hours), ``d`` (days), ``w`` (weeks), e.g.
        ``"1m"``, ``"5m"``, ``"15m"``, ``"30m"``, ``"1h"``, ``"4h"``, ``"1d"``,
        ``"1w"``. Units are case-sensitive (ccxt's ``"1M"`` means one month and is
        not supported).

    Returns
    -------
    float
        ``525600 / (n × minutes_per_unit)`` where ``525600 = 365 × 24 × 60``:
        ``"1h"`` → 8760.0, ``"4h"`` → 2190.0, ``"1d"`` → 365.0,
        ``"1w"`` → 365 / 7 ≈ 52.142857.

    Raises
    ------
    ValueError
        If ``timeframe`` is not a string of that form; the message names it.

    Notes
    -----
    Crypto markets trade 24/7, 365 days a year, so no 252-trading-day
    convention is used. Leap days are ignored.
    """
    match = _TIMEFRAME_RE.fullmatch(timeframe) if isinstance(timeframe, str) else None
    n = int(match.group(1)) if match else 0
    if match is None or n <= 0:
        raise ValueError(
            f"unsupported timeframe {timeframe!r}: expected '<n>m', '<n>h', '<n>d' or '<n>w' "
            "with an integer n >= 1"
        )
    return _MINUTES_PER_YEAR / (n * _UNIT_MINUTES[match.group(2)])


def sharpe_ratio(
    returns: npt.ArrayLike,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    risk_free_rate: float = 0.0,
) -> float:
    r"""Annualised Sharpe ratio of per-bar returns.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.
    periods_per_year : float, default=8760
        Bars per 365-day year (8760 for hourly bars), must be finite and > 0.
    risk_free_rate : float, default=0.0
        Annual risk-free rate, converted per bar as ``risk_free_rate / periods_per_year``.

    Returns
    -------
    float
        The Sharpe ratio, or NaN when undefined (see Notes).

    Raises
    ------
    ValueError
        If ``returns`` contain ±inf or are not 1-D, or a parameter is invalid.

    Notes
    -----
    With excess returns :math:`x_t = r_t - rf / P` over the :math:`n` non-NaN bars,

    .. math:: SR = \frac{\bar{x}}{s_x} \sqrt{P},\qquad
              s_x = \sqrt{\frac{1}{n-1}\sum_t (x_t - \bar{x})^2}

    (sample standard deviation, ``ddof=1``).

    Edge cases:

    * fewer than 2 bars (after dropping NaN) → NaN (sample std undefined);
    * zero variance (all excess returns identical, so :math:`s_x = 0` exactly,
      even if the mean is not 0) → NaN; this is tested by exact equality of the
      values, because ``np.std`` of a constant series can be float noise (~1e-17);
    * a non-finite mean or std (float64 overflow on absurd inputs) → NaN.
    """
    p = _check_periods(periods_per_year)
    rf = _check_rate(risk_free_rate)
    return _sharpe(_clean_returns(returns), p, rf)


def sortino_ratio(
    returns: npt.ArrayLike,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    risk_free_rate: float = 0.0,
) -> float:
    r"""Annualised Sortino ratio of per-bar returns.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.
    periods_per_year : float, default=8760
        Bars per 365-day year (8760 for hourly bars), must be finite and > 0.
    risk_free_rate : float, default=0.0
        Annual risk-free rate (also the minimum acceptable return), converted per
        bar as ``risk_free_rate / periods_per_year``.

    Returns
    -------
    float
        The Sortino ratio, ``+inf`` or NaN (see Notes).

    Raises
    ------
    ValueError
        If ``returns`` contain ±inf or are not 1-D, or a parameter is invalid.

    Notes
    -----
    With excess returns :math:`x_t = r_t - rf / P` over the :math:`n` non-NaN bars,

    .. math:: SO = \frac{\bar{x}}{DD} \sqrt{P},\qquad
              DD = \sqrt{\frac{1}{n}\sum_{t=1}^{n} \min(x_t, 0)^2}

    The downside deviation averages over **all** :math:`n` bars (bars without
    a loss contribute 0), not over the losing bars only. It is evaluated as
    ``m * sqrt(mean((min(x, 0) / m)**2))`` with ``m = max(-min(x, 0))``, which is
    the same number but cannot overflow or underflow.

    Edge cases:

    * no bars → NaN;
    * no negative excess return (:math:`DD = 0`) → ``+inf`` if :math:`\bar{x} > 0`,
      NaN if :math:`\bar{x} = 0` (all excess returns zero);
    * a single bar is defined: ``+inf`` if positive, :math:`-\sqrt{P}` if negative.
    """
    p = _check_periods(periods_per_year)
    rf = _check_rate(risk_free_rate)
    return _sortino(_clean_returns(returns), p, rf)


def max_drawdown(returns: npt.ArrayLike) -> float:
    r"""Maximum drawdown of the compounded equity curve.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.

    Returns
    -------
    float
        The deepest peak-to-trough loss as a fraction, in ``[-1, 0]``
        (``-0.25`` means a 25 % loss from the running peak).

    Raises
    ------
    ValueError
        If ``returns`` contain ±inf or are not 1-D.

    Notes
    -----
    The equity curve starts at :math:`E_0 = 1` before the first bar and
    compounds, :math:`E_t = \prod_{i \le t} (1 + r_i)`. The starting capital
    counts as a peak, so a first-bar loss is a drawdown:

    .. math:: MDD = \min_{1 \le t \le n}
              \left( \frac{E_t}{\max_{0 \le s \le t} E_s} - 1 \right)

    It is computed in log space (``expm1(L_t - max_{s<=t} L_s)`` with
    :math:`L_t = \sum_{i \le t} \log(1 + r_i)`, :math:`L_0 = 0`), which is
    identical but cannot overflow on long, strongly trending curves.

    Edge cases:

    * no bars → ``0.0`` (no drawdown);
    * only non-negative returns → ``0.0``;
    * ruin: any return :math:`\le -1` sends equity to zero (or below, which is
      treated as zero: the account is wiped out) → ``-1.0``.
    """
    return _max_drawdown(_clean_returns(returns))


def annualised_return(
    returns: npt.ArrayLike,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> float:
    r"""Compounded annual growth rate of per-bar returns.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.
    periods_per_year : float, default=8760
        Bars per 365-day year (8760 for hourly bars), must be finite and > 0.

    Returns
    -------
    float
        The annualised return, ``>= -1`` (``+inf`` if it overflows float64).

    Raises
    ------
    ValueError
        If ``returns`` contain ±inf or are not 1-D, or ``periods_per_year`` is invalid.

    Notes
    -----
    With final equity :math:`E_n = \prod_{t=1}^{n} (1 + r_t)` over the
    :math:`n` non-NaN bars,

    .. math:: R_{ann} = E_n^{P / n} - 1

    computed as ``expm1((P / n) * sum(log1p(r)))``. Short samples are
    extrapolated to a full year, which can give very large numbers.

    Edge cases:

    * no bars → ``0.0`` (no growth);
    * ruin (any return :math:`\le -1`) → ``-1.0``.
    """
    p = _check_periods(periods_per_year)
    return _annualised_return(_clean_returns(returns), p)


def calmar_ratio(
    returns: npt.ArrayLike,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> float:
    r"""Calmar ratio: annualised compounded return over the maximum drawdown.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.
    periods_per_year : float, default=8760
        Bars per 365-day year (8760 for hourly bars), must be finite and > 0.

    Returns
    -------
    float
        The Calmar ratio, ``+inf`` or NaN (see Notes).

    Raises
    ------
    ValueError
        If ``returns`` contain ±inf or are not 1-D, or ``periods_per_year`` is invalid.

    Notes
    -----
    .. math:: Calmar = \frac{R_{ann}}{|MDD|}

    with :math:`R_{ann}` from :func:`annualised_return` and :math:`MDD` from
    :func:`max_drawdown`, both over the whole sample (not a trailing 36 months).

    Edge cases:

    * no bars → NaN;
    * no drawdown (:math:`MDD = 0`) → ``+inf`` if :math:`R_{ann} > 0`, NaN if
      :math:`R_{ann} = 0` (all returns zero);
    * ruin (any return :math:`\le -1`) → :math:`-1 / 1 = -1.0`.
    """
    p = _check_periods(periods_per_year)
    return _calmar(_clean_returns(returns), p)


def profit_factor(returns: npt.ArrayLike) -> float:
    r"""Gross gains over gross losses of per-bar returns.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.

    Returns
    -------
    float
        The profit factor, in ``[0, +inf]``, or NaN (see Notes).

    Raises
    ------
    ValueError
        If ``returns`` contain ±inf or are not 1-D.

    Notes
    -----
    .. math:: PF = \frac{\sum_t \max(r_t, 0)}{\left|\sum_t \min(r_t, 0)\right|}

    summed over bars (not over round-trip trades).

    Edge cases:

    * no bars → NaN;
    * no losing bar → ``+inf`` if there is a gain, NaN if all returns are zero;
    * no winning bar but losses → ``0.0``.
    """
    return _profit_factor(_clean_returns(returns))


def hit_ratio(
    returns: npt.ArrayLike,
    positions: npt.ArrayLike | None = None,
) -> float:
    r"""Share of bars with a position whose return is positive.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped, together with the
        position of the same bar; infinite entries raise.
    positions : array-like of shape (n_bars,), optional
        Position held over each bar (any sign/size; bool works too). A bar has a
        position iff its position is non-zero; a NaN position counts as no
        position. When ``None``, a bar has a position iff its return is non-zero.

    Returns
    -------
    float
        The hit ratio in ``[0, 1]``, or NaN if no bar has a position.

    Raises
    ------
    ValueError
        If ``returns`` or ``positions`` contain ±inf, are not 1-D, or differ in length.

    Notes
    -----
    .. math:: HR = \frac{\#\{t : p_t \ne 0,\ r_t > 0\}}{\#\{t : p_t \ne 0\}}

    A bar with a position and a return of exactly 0 counts as a miss.

    Edge cases:

    * no bars, or no bar with a position → NaN.
    """
    r, has_position = _position_mask(returns, positions)
    return _hit_ratio(r, has_position)


def compute_all(
    returns: npt.ArrayLike,
    positions: npt.ArrayLike | None = None,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    *,
    risk_free_rate: float = 0.0,
) -> dict[str, float]:
    r"""All metrics of this module at once.

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.
    positions : array-like of shape (n_bars,), optional
        Position per bar, used for ``hit_ratio`` and ``n_trades_bars`` (see
        :func:`hit_ratio`).
    periods_per_year : float, default=8760
        Bars per 365-day year (8760 for hourly bars), must be finite and > 0.
    risk_free_rate : float, default=0.0
        Annual risk-free rate used by the Sharpe and Sortino ratios.

    Returns
    -------
    dict of str to float
        Keys, in this order: ``"sharpe"``, ``"sortino"``, ``"hit_ratio"``,
        ``"profit_factor"``, ``"max_drawdown"``, ``"calmar"``,
        ``"annualised_return"``, ``"total_return"``, ``"n_bars"`` (non-NaN bars),
        ``"n_trades_bars"`` (those with a position), ``"psr"`` (against 0),
        ``"skewness"`` and ``"kurtosis"`` (population moments, NaN for fewer than 3
        bars or zero variance). All values are floats.

    Raises
    ------
    ValueError
        As the individual functions.

    Notes
    -----
    ``total_return`` is :math:`E_n - 1 = \prod_t (1 + r_t) - 1`: ``0.0`` with
    no bars, ``-1.0`` on ruin (any return :math:`\le -1`). Every other value
    equals the function of the same name, with the same edge cases.
    """
    p = _check_periods(periods_per_year)
    rf = _check_rate(risk_free_rate)
    r, has_position = _position_mask(returns, positions)
    return {
        "sharpe": _sharpe(r, p, rf),
        "sortino": _sortino(r, p, rf),
        "hit_ratio": _hit_ratio(r, has_position),
        "profit_factor": _profit_factor(r),
        "max_drawdown": _max_drawdown(r),
        "calmar": _calmar(r, p),
        "annualised_return": _annualised_return(r, p),
        "total_return": _total_return(r),
        "n_bars": float(r.size),
        "n_trades_bars": float(has_position.sum()),
        "psr": _psr(r, 0.0),
        **_moment_metrics(r),
    }


def _moment_metrics(r: FloatArray) -> dict[str, float]:
    moments = _moments(r)
    if moments is None:
        return {"skewness": math.nan, "kurtosis": math.nan}
    return {"skewness": moments[2], "kurtosis": moments[3]}


def _moments(r: FloatArray) -> tuple[float, float, float, float] | None:
    """Per-bar mean, sample std, skewness and (non-excess) kurtosis, or None."""
    if r.size < 3 or r.max() == r.min():
        return None
    with np.errstate(all="ignore"):
        mean = float(r.mean())
        std = float(r.std(ddof=1))
        centred = r - mean
        m2 = float(np.mean(centred**2))
        if not (m2 > 0.0 and std > 0.0 and math.isfinite(m2) and math.isfinite(std)):
            return None  # variance lost to underflow or overflow
        skew = float(np.mean(centred**3)) / m2**1.5
        kurt = float(np.mean(centred**4)) / m2**2
    return mean, std, skew, kurt


def _norm_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _norm_ppf(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def psr_from_moments(
    sharpe_per_bar: float,
    n_bars: int,
    skewness: float,
    kurtosis: float,
    benchmark_per_bar: float = 0.0,
) -> float:
    r"""Probabilistic Sharpe ratio from the moments of a track record.

    Parameters
    ----------
    sharpe_per_bar : float
        :math:`\widehat{SR}`, mean over sample standard deviation of the per-bar
        returns (not annualised).
    n_bars : int
        :math:`T`, the number of bars.
    skewness, kurtosis : float
        :math:`\hat\gamma_3` and :math:`\hat\gamma_4` of the returns (population
        moments; the kurtosis of a normal distribution is 3).
    benchmark_per_bar : float, default 0.0
        :math:`SR^*`, per bar.

    Returns
    -------
    float
        .. math:: PSR = \Phi\left(\frac{(\widehat{SR} - SR^*)\sqrt{T - 1}}
                  {\sqrt{1 - \hat\gamma_3\,\widehat{SR}
                  + \frac{\hat\gamma_4 - 1}{4}\widehat{SR}^2}}\right)

        in [0, 1]; NaN when an input is not finite, :math:`T < 3`, or the variance
        term is not positive.
    """
    values = (sharpe_per_bar, skewness, kurtosis, benchmark_per_bar)
    if n_bars < 3 or not all(math.isfinite(v) for v in values):
        return math.nan
    sr = sharpe_per_bar
    variance = 1.0 - skewness * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if not (math.isfinite(variance) and variance > 0.0):
        return math.nan
    return _norm_cdf((sr - benchmark_per_bar) * math.sqrt(n_bars - 1) / math.sqrt(variance))


def _psr(r: FloatArray, benchmark_per_bar: float) -> float:
    moments = _moments(r)
    if moments is None:
        return math.nan
    mean, std, skew, kurt = moments
    return psr_from_moments(mean / std, int(r.size), skew, kurt, benchmark_per_bar)


def probabilistic_sharpe_ratio(
    returns: npt.ArrayLike,
    benchmark_sharpe: float = 0.0,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> float:
    r"""Probability that the true Sharpe ratio exceeds ``benchmark_sharpe``
    (Bailey & López de Prado, 2012).

    Parameters
    ----------
    returns : array-like of shape (n_bars,)
        Simple per-bar returns. NaN entries are dropped; infinite entries raise.
    benchmark_sharpe : float, default 0.0
        The annualised Sharpe ratio to beat, :math:`SR^*`; converted per bar as
        :math:`SR^* / \sqrt{periods}`.
    periods_per_year : float, default 8760
        Bars per 365-day year.

    Returns
    -------
    float
        :func:`psr_from_moments` of the returns' per-bar Sharpe ratio (mean over sample
        standard deviation), skewness and kurtosis (population moments, 3 for a normal
        distribution), in [0, 1].

    Notes
    -----
    It tells skill from luck: 0.5 means the track record says nothing, values near 1
    that a positive Sharpe is unlikely to be chance. Edge cases: fewer than 3 bars or
    zero variance give NaN; a non-positive variance term (possible for extreme skew)
    gives NaN.
    """
    p = _check_periods(periods_per_year)
    if not math.isfinite(benchmark_sharpe):
        raise ValueError("benchmark_sharpe must be finite")
    return _psr(_clean_returns(returns), benchmark_sharpe / math.sqrt(p))


EULER_GAMMA = 0.5772156649015329
"""The Euler–Mascheroni constant, in the expected maximum of :func:`expected_max_sharpe`."""


def expected_max_sharpe(n_trials: int, trials_variance: float) -> float:
    r"""Expected maximum Sharpe ratio of ``n_trials`` unskilled trials (per bar).

    .. math:: SR_0 = \sqrt{V[\widehat{SR}_n]}\left((1 - \gamma)\,\Phi^{-1}\!\left(1 -
              \frac{1}{N}\right) + \gamma\,\Phi^{-1}\!\left(1 - \frac{1}{N e}\right)\right)

    with :math:`\gamma` the Euler–Mascheroni constant (Bailey & López de Prado, 2014,
    eq. 2 of "The Deflated Sharpe Ratio"). One trial (or a zero or undefined variance)
    gives 0: nothing was selected, so there is nothing to deflate.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1 or not math.isfinite(trials_variance) or trials_variance <= 0.0:
        return 0.0
    n = float(n_trials)
    spread = (1.0 - EULER_GAMMA) * _norm_ppf(1.0 - 1.0 / n) + EULER_GAMMA * _norm_ppf(
        1.0 - 1.0 / (n * math.e)
    )
    return math.sqrt(trials_variance) * spread


def deflated_sharpe_ratio(
    sharpe_per_bar: float,
    n_bars: int,
    skewness: float,
    kurtosis: float,
    n_trials: int,
    trials_variance: float,
) -> float:
    r"""Deflated Sharpe ratio (Bailey & López de Prado, 2014).

    Parameters
    ----------
    sharpe_per_bar : float
        The selected track record's per-bar Sharpe ratio :math:`\widehat{SR}`.
    n_bars : int
        Bars of the track record, :math:`T`.
    skewness, kurtosis : float
        Its skewness and (non-excess) kurtosis.
    n_trials : int
        :math:`N`, the number of independent trials the selection was made from.
    trials_variance : float
        :math:`V[\widehat{SR}_n]`, the variance of the trials' per-bar Sharpe ratios.

    Returns
    -------
    float
        :math:`DSR = PSR(SR_0)` (:func:`psr_from_moments`) with :math:`SR_0` from
        :func:`expected_max_sharpe`: the probability that the true Sharpe ratio is above
        what the best of :math:`N` unskilled trials would show. With one trial it equals
        the PSR against 0. NaN where the PSR is undefined.

    Examples
    --------
    The paper's numerical example: an annual Sharpe of 2.5 on 1,250 daily bars (skew
    −3, kurtosis 10), selected from 100 trials whose annual Sharpe ratios vary by 0.5:

    >>> sr = 2.5 / 250**0.5
    >>> round(deflated_sharpe_ratio(sr, 1250, -3.0, 10.0, 100, 0.5 / 250), 3)
    0.9
    """
    sr0 = expected_max_sharpe(n_trials, trials_variance)
    return psr_from_moments(sharpe_per_bar, n_bars, skewness, kurtosis, sr0)


def trading_statistics(positions: npt.ArrayLike) -> dict[str, float]:
    r"""How a backtest traded: turnover, exposure, round trips and holding period.

    Parameters
    ----------
    positions : array-like of shape (n_bars,)
        Position held over each bar (NaN = flat), in time order, flat before the first.

    Returns
    -------
    dict of str to float
        * ``turnover`` — :math:`\frac{1}{n}\sum_t |p_t - p_{t-1}|`, position change per
          bar (:math:`p_{-1} = 0`); 0 with no bars;
        * ``exposure`` — share of bars with :math:`p_t \ne 0`; 0 with no bars;
        * ``round_trips`` — number of trades: maximal runs of bars whose position has
          one sign (a flip ends one trade and starts the next; a trade still open at the
          end counts);
        * ``avg_holding_bars`` — bars in the market per trade, NaN with no trade.
    """
    pos = _as_1d(positions, "positions")
    pos = np.where(np.isnan(pos), 0.0, pos)
    n = pos.size
    if n == 0:
        return {"turnover": 0.0, "exposure": 0.0, "round_trips": 0.0, "avg_holding_bars": math.nan}
    sign = np.sign(pos)
    prev = np.concatenate([[0.0], sign[:-1]])
    trades = int(((sign != 0.0) & (sign != prev)).sum())
    in_market = int((sign != 0.0).sum())
    return {
        "turnover": float(np.abs(np.diff(pos, prepend=0.0)).sum() / n),
        "exposure": in_market / n,
        "round_trips": float(trades),
        "avg_holding_bars": in_market / trades if trades else math.nan,
    }
