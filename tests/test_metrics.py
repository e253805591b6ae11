"""Tests of brain_lib.metrics against hand-computed values and independent formulas.

Most hand-computed cases use ``periods_per_year=1`` (P=1) so the arithmetic stays
readable; the annualisation factor √P / exponent P/n is tested separately.
Returns written as e.g. ``[1, -2, 3] %`` mean ``[0.01, -0.02, 0.03]``.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from brain_lib import metrics
from brain_lib.metrics import (
    DEFAULT_PERIODS_PER_YEAR,
    annualised_return,
    calmar_ratio,
    compute_all,
    hit_ratio,
    max_drawdown,
    periods_per_year,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
)

NAN = math.nan
INF = math.inf
REL = 1e-12


def same(actual: float, expected: float, rel: float = REL) -> bool:
    """Equality that treats NaN == NaN and compares finite values approximately."""
    if math.isnan(expected):
        return math.isnan(actual)
    if math.isinf(expected):
        return actual == expected
    return actual == pytest.approx(expected, rel=rel, abs=1e-15)


# --------------------------------------------------------------------------- #
# module surface
# --------------------------------------------------------------------------- #
def test_public_api() -> None:
    assert set(metrics.__all__) == {
        "DEFAULT_PERIODS_PER_YEAR",
        "periods_per_year",
        "probabilistic_sharpe_ratio",
        "sharpe_ratio",
        "sortino_ratio",
        "max_drawdown",
        "annualised_return",
        "calmar_ratio",
        "profit_factor",
        "hit_ratio",
        "compute_all",
        "EULER_GAMMA",
        "deflated_sharpe_ratio",
        "expected_max_sharpe",
        "psr_from_moments",
        "trading_statistics",
    }
    assert DEFAULT_PERIODS_PER_YEAR == 8760  # 24 h × 365 d


# --------------------------------------------------------------------------- #
# periods_per_year
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("timeframe", "expected"),
    [
        ("1m", 525_600.0),  # 365 × 24 × 60
        ("5m", 105_120.0),  # 525600 / 5
        ("15m", 35_040.0),  # 525600 / 15
        ("30m", 17_520.0),  # 525600 / 30
        ("1h", 8_760.0),  # 365 × 24
        ("2h", 4_380.0),  # 8760 / 2
        ("4h", 2_190.0),  # 8760 / 4
        ("12h", 730.0),  # 8760 / 12
        ("1d", 365.0),
        ("3d", 365.0 / 3),  # 121.666…
        ("1w", 365.0 / 7),  # 52.142857…
        ("2w", 365.0 / 14),
    ],
)
def test_periods_per_year(timeframe: str, expected: float) -> None:
    result = periods_per_year(timeframe)
    assert isinstance(result, float)
    assert result == pytest.approx(expected, rel=1e-15)


def test_periods_per_year_hourly_is_default() -> None:
    assert periods_per_year("1h") == DEFAULT_PERIODS_PER_YEAR


@pytest.mark.parametrize(
    "timeframe",
    ["", "h", "1", "0h", "0m", "-1h", "1.5h", "1M", "1H", "1s", "1y", " 1h", "1h ", "1hh"],
)
def test_periods_per_year_rejects_bad_timeframe(timeframe: str) -> None:
    with pytest.raises(ValueError, match="timeframe") as excinfo:
        periods_per_year(timeframe)
    assert repr(timeframe) in str(excinfo.value)


def test_periods_per_year_rejects_non_string() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        periods_per_year(60)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# sharpe_ratio
# --------------------------------------------------------------------------- #
SHARPE_CASES = [
    # [1, -2, 3] %: mean = 2/3 %; deviations 1/3, -8/3, 7/3 -> squares 1/9 + 64/9 + 49/9 = 38/3;
    # sample var = (38/3) / 2 = 19/3 -> std = √(19/3) %; SR = (2/3) / √(19/3) = 2/√57 = 0.264906…
    # (population std would give (2/3) / √(38/9) = 2/√38 = 0.324443…)
    pytest.param([0.01, -0.02, 0.03], 1, 0.0, 2 / math.sqrt(57), id="three-bars"),
    # same, P = 365: 2/√57 × √365
    pytest.param([0.01, -0.02, 0.03], 365, 0.0, 2 / math.sqrt(57) * math.sqrt(365), id="P365"),
    # [2, 4] %: mean 3 %, sample var = (1² + 1²) / 1 = 2 -> std √2 %; SR = 3/√2 = 2.121320…
    pytest.param([0.02, 0.04], 1, 0.0, 3 / math.sqrt(2), id="two-bars"),
    # [-1, -3] %: mean -2 %, std √2 % -> -2/√2 = -√2
    pytest.param([-0.01, -0.03], 1, 0.0, -math.sqrt(2), id="negative"),
    # rf = 1 %/yr, P = 1 -> excess [0, -3, 2] %: mean -1/3 %, std unchanged √(19/3) %
    # SR = (-1/3) / √(19/3) = -1/√57 = -0.132453…
    pytest.param([0.01, -0.02, 0.03], 1, 0.01, -1 / math.sqrt(57), id="risk-free"),
    # rf = 4 %/yr, P = 4 -> 1 % per bar, same excess as above; SR = -1/√57 × √4
    pytest.param([0.01, -0.02, 0.03], 4, 0.04, -2 / math.sqrt(57), id="risk-free-P4"),
]


@pytest.mark.parametrize(("returns", "p", "rf", "expected"), SHARPE_CASES)
def test_sharpe_ratio(returns: list[float], p: float, rf: float, expected: float) -> None:
    assert same(sharpe_ratio(returns, periods_per_year=p, risk_free_rate=rf), expected)


def test_sharpe_default_annualises_with_8760() -> None:
    assert same(sharpe_ratio([0.01, -0.02, 0.03]), 2 / math.sqrt(57) * math.sqrt(8760))


@pytest.mark.parametrize(
    "returns",
    [
        pytest.param([], id="empty"),
        pytest.param([NAN, NAN], id="all-nan"),
        pytest.param([0.01], id="single-bar"),
        pytest.param([0.01, NAN], id="single-bar-after-nan"),
        pytest.param([0.0, 0.0, 0.0], id="all-zero"),
        # all equal with a non-zero mean: std is 0, still NaN (not +inf, not float-noise huge)
        pytest.param([0.01, 0.01, 0.01], id="constant-positive"),
        pytest.param([0.1] * 7, id="constant-0.1"),
        pytest.param([-0.003] * 11, id="constant-negative"),
    ],
)
def test_sharpe_undefined_is_nan(returns: list[float]) -> None:
    assert math.isnan(sharpe_ratio(returns))


def test_sharpe_uses_sample_std_independent() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(0.0005, 0.01, size=500)
    expected = statistics.mean(r.tolist()) / statistics.stdev(r.tolist()) * math.sqrt(8760)
    assert same(sharpe_ratio(r), expected, rel=1e-9)
    rf = 0.05
    x = [v - rf / 8760 for v in r.tolist()]
    expected_rf = statistics.mean(x) / statistics.stdev(x) * math.sqrt(8760)
    assert same(sharpe_ratio(r, risk_free_rate=rf), expected_rf, rel=1e-9)


# --------------------------------------------------------------------------- #
# sortino_ratio
# --------------------------------------------------------------------------- #
SORTINO_CASES = [
    # [1, -2, 3] %: mean 2/3 %; min(r,0)² = [0, 4, 0], mean over ALL 3 bars = 4/3 -> DD = 2/√3 %
    # SO = (2/3) / (2/√3) = 1/√3 = 0.577350…  (losing bars only: DD = 2 % -> 1/3, wrong)
    pytest.param([0.01, -0.02, 0.03], 1, 0.0, 1 / math.sqrt(3), id="three-bars"),
    pytest.param([0.01, -0.02, 0.03], 365, 0.0, math.sqrt(365 / 3), id="P365"),
    # [-1, -3, 6] %: mean 2/3 %; squares [1, 9, 0] / 3 = 10/3 -> DD = √(10/3) %
    # SO = (2/3) / √(10/3) = 2/√30 = 0.365148…  (losing bars only: (2/3)/√5 = 0.298142…)
    pytest.param([-0.01, -0.03, 0.06], 1, 0.0, 2 / math.sqrt(30), id="two-losses"),
    # rf = 1 %, P = 1: [4, -1, 3] % -> excess [3, -2, 2] %: mean 1 %, DD = √(4/3) % = 2/√3 %
    # SO = 1 / (2/√3) = √3/2 = 0.866025…  (ignoring rf: 2 / √(1/3) = 3.4641…)
    pytest.param([0.04, -0.01, 0.03], 1, 0.01, math.sqrt(3) / 2, id="risk-free"),
    # single losing bar: mean -1 %, DD = 1 % -> -1 × √P
    pytest.param([-0.01], 1, 0.0, -1.0, id="single-loss"),
    pytest.param([-0.01], 4, 0.0, -2.0, id="single-loss-P4"),
    # no downside
    pytest.param([0.01, 0.02], 1, 0.0, INF, id="no-downside"),
    pytest.param([0.0, 0.01], 1, 0.0, INF, id="no-downside-with-zero"),
    pytest.param([0.01], 1, 0.0, INF, id="single-gain"),
    pytest.param([0.0, 0.0, 0.0], 1, 0.0, NAN, id="all-zero"),
    # rf = 2 %, P = 1, returns all 2 % -> excess all 0 -> NaN
    pytest.param([0.02, 0.02], 1, 0.02, NAN, id="all-excess-zero"),
    # rf = 3 %, P = 1: [1, 2] % -> excess [-2, -1] %: mean -1.5 %, DD = √((4 + 1)/2) = √2.5 %
    pytest.param([0.01, 0.02], 1, 0.03, -1.5 / math.sqrt(2.5), id="rf-turns-gains-to-losses"),
    pytest.param([], 1, 0.0, NAN, id="empty"),
    pytest.param([NAN], 1, 0.0, NAN, id="all-nan"),
]


@pytest.mark.parametrize(("returns", "p", "rf", "expected"), SORTINO_CASES)
def test_sortino_ratio(returns: list[float], p: float, rf: float, expected: float) -> None:
    assert same(sortino_ratio(returns, periods_per_year=p, risk_free_rate=rf), expected)


def test_sortino_independent() -> None:
    rng = np.random.default_rng(2)
    r = rng.normal(0.0002, 0.01, size=400).tolist()
    for rf in (0.0, 0.05):
        x = [v - rf / 8760 for v in r]
        dd = math.sqrt(sum(min(v, 0.0) ** 2 for v in x) / len(x))
        expected = statistics.mean(x) / dd * math.sqrt(8760)
        assert same(sortino_ratio(r, risk_free_rate=rf), expected, rel=1e-9)


# --------------------------------------------------------------------------- #
# max_drawdown
# --------------------------------------------------------------------------- #
MDD_CASES = [
    # E: 1 -> 0.9 -> 0.945; the starting capital 1 is the peak -> min(0.9/1 - 1, 0.945/1 - 1) = -0.1
    # (forgetting E_0 = 1 as a peak would give 0.0)
    pytest.param([-0.1, 0.05], -0.1, id="first-bar-loss"),
    # E: 1.1, 0.88, 0.968; peak 1.1 -> 0.88/1.1 - 1 = -0.2, 0.968/1.1 - 1 = -0.12 -> -0.2
    pytest.param([0.1, -0.2, 0.1], -0.2, id="peak-then-loss"),
    # E: 1.1, 0.99, 0.891 -> 0.891/1.1 - 1 = -0.19 (compounded; the additive sum would say -0.2)
    pytest.param([0.1, -0.1, -0.1], -0.19, id="compounded"),
    # E: 1.5, 0.75, 1.125, 0.5625; peak 1.5 -> 0.5625/1.5 - 1 = -0.625
    pytest.param([0.5, -0.5, 0.5, -0.5], -0.625, id="two-dips"),
    # E: 0.9, 1.08 (new peak), 0.972 -> 0.972/1.08 - 1 = -0.1 ; first dip also -0.1
    pytest.param([-0.1, 0.2, -0.1], -0.1, id="new-peak"),
    # E: 0.95, 1.045, 0.8360 -> dd vs 1.045: 0.836/1.045 - 1 = -0.2
    pytest.param([-0.05, 0.1, -0.2], -0.2, id="later-deeper"),
    pytest.param([0.01, 0.02, 0.0], 0.0, id="no-drawdown"),
    pytest.param([0.0, 0.0], 0.0, id="all-zero"),
    pytest.param([], 0.0, id="empty"),
    pytest.param([NAN, NAN], 0.0, id="all-nan"),
    pytest.param([-1.0, 0.5], -1.0, id="ruin-exact"),
    pytest.param([0.2, -1.5, 0.3], -1.0, id="ruin-below-zero"),
    pytest.param([0.1, 0.1, -1.0], -1.0, id="ruin-last-bar"),
]


@pytest.mark.parametrize(("returns", "expected"), MDD_CASES)
def test_max_drawdown(returns: list[float], expected: float) -> None:
    result = max_drawdown(returns)
    assert same(result, expected)
    assert -1.0 <= result <= 0.0


def brute_force_max_drawdown(returns: list[float]) -> float:
    equity = [1.0]
    for r in returns:
        equity.append(equity[-1] * (1.0 + r))
    worst = 0.0
    for t in range(1, len(equity)):
        peak = equity[0]
        for s in range(t + 1):
            peak = max(peak, equity[s])
        worst = min(worst, equity[t] / peak - 1.0)
    return worst


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [1, 2, 5, 60, 250])
def test_max_drawdown_matches_brute_force(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    r = np.clip(rng.normal(0.001, 0.05, size=n), -0.95, None).tolist()
    assert max_drawdown(r) == pytest.approx(brute_force_max_drawdown(r), rel=1e-10, abs=1e-12)


# --------------------------------------------------------------------------- #
# annualised_return
# --------------------------------------------------------------------------- #
ANN_CASES = [
    # E = 1.1 × 0.9 = 0.99, n = 2, P = 2 -> 0.99^(2/2) - 1 = -0.01
    # (arithmetic mean × P would give 0)
    pytest.param([0.1, -0.1], 2, -0.01, id="compounded"),
    # E = 1.21, n = 2, P = 1 -> 1.21^(1/2) - 1 = 0.1
    pytest.param([0.1, 0.1], 1, 0.1, id="half-year"),
    # E = 1.21, n = 2, P = 4 -> 1.21^2 - 1 = 0.4641
    pytest.param([0.1, 0.1], 4, 0.4641, id="extrapolated"),
    # E = 0.5, n = 1, P = 2 -> 0.25 - 1 = -0.75
    pytest.param([-0.5], 2, -0.75, id="loss"),
    # NaN dropped: same as [0.1, 0.1]
    pytest.param([0.1, NAN, 0.1], 1, 0.1, id="nan-dropped"),
    pytest.param([], 1, 0.0, id="empty"),
    pytest.param([NAN], 1, 0.0, id="all-nan"),
    pytest.param([0.0, 0.0], 8760, 0.0, id="all-zero"),
    pytest.param([0.5, -1.0], 1, -1.0, id="ruin"),
    pytest.param([0.5, -2.0, 0.1], 1, -1.0, id="ruin-below-zero"),
]


@pytest.mark.parametrize(("returns", "p", "expected"), ANN_CASES)
def test_annualised_return(returns: list[float], p: float, expected: float) -> None:
    assert same(annualised_return(returns, periods_per_year=p), expected)


def test_annualised_return_hourly_year_independent() -> None:
    # 8760 hourly bars of 0.01 % = exactly one year -> E_T - 1 = 1.0001^8760 - 1
    r = [0.0001] * 8760
    assert same(annualised_return(r), 1.0001**8760 - 1, rel=1e-9)
    rng = np.random.default_rng(3)
    r2 = rng.normal(0.0001, 0.01, size=1000).tolist()
    equity = math.prod(1 + v for v in r2)
    assert same(annualised_return(r2), equity ** (8760 / 1000) - 1, rel=1e-9)


# --------------------------------------------------------------------------- #
# calmar_ratio
# --------------------------------------------------------------------------- #
CALMAR_CASES = [
    # [10, -10] %, P = 2: ann = 0.99 - 1 = -0.01; MDD = 0.99/1.1 - 1 = -0.1 -> -0.01/0.1 = -0.1
    pytest.param([0.1, -0.1], 2, -0.1, id="negative"),
    # [10, -5, 10] %, P = 3: E = 1.1 × 0.95 × 1.1 = 1.1495 -> ann = 1.1495^(3/3) - 1 = 0.1495
    # MDD = 1.045/1.1 - 1 = -0.05 -> 0.1495 / 0.05 = 2.99
    pytest.param([0.1, -0.05, 0.1], 3, 2.99, id="positive"),
    # [-10, 5] %, P = 2: ann = 0.945 - 1 = -0.055, MDD = -0.1 -> -0.55
    pytest.param([-0.1, 0.05], 2, -0.55, id="first-bar-loss"),
    pytest.param([0.01, 0.02], 1, INF, id="no-drawdown"),
    pytest.param([0.0, 0.01], 8760, INF, id="no-drawdown-with-zero"),
    pytest.param([0.0, 0.0], 1, NAN, id="all-zero"),
    pytest.param([], 1, NAN, id="empty"),
    pytest.param([NAN, NAN], 1, NAN, id="all-nan"),
    # ruin: ann = -1, MDD = -1 -> -1
    pytest.param([0.1, -1.0], 1, -1.0, id="ruin"),
]


@pytest.mark.parametrize(("returns", "p", "expected"), CALMAR_CASES)
def test_calmar_ratio(returns: list[float], p: float, expected: float) -> None:
    assert same(calmar_ratio(returns, periods_per_year=p), expected)


def test_calmar_is_annualised_over_abs_drawdown() -> None:
    rng = np.random.default_rng(4)
    r = rng.normal(0.0003, 0.01, size=700)
    equity = float(np.prod(1 + r))
    ann = equity ** (8760 / 700) - 1
    assert same(calmar_ratio(r), ann / abs(brute_force_max_drawdown(r.tolist())), rel=1e-9)


# --------------------------------------------------------------------------- #
# profit_factor
# --------------------------------------------------------------------------- #
PF_CASES = [
    # gains 1 + 3 = 4 %, losses |-2| = 2 % -> 2.0
    pytest.param([0.01, -0.02, 0.03], 2.0, id="three-bars"),
    # gains 5 %, losses 1 + 4 = 5 % -> 1.0 (zeros ignored)
    pytest.param([0.05, -0.01, -0.04, 0.0], 1.0, id="break-even"),
    # gains 1 %, losses 4 % -> 0.25
    pytest.param([0.01, -0.04, NAN], 0.25, id="nan-dropped"),
    pytest.param([-0.01, -0.02], 0.0, id="no-gains"),
    pytest.param([0.01, 0.02], INF, id="no-losses"),
    pytest.param([0.01, 0.0], INF, id="no-losses-with-zero"),
    pytest.param([0.0, 0.0], NAN, id="all-zero"),
    pytest.param([], NAN, id="empty"),
    pytest.param([NAN], NAN, id="all-nan"),
]


@pytest.mark.parametrize(("returns", "expected"), PF_CASES)
def test_profit_factor(returns: list[float], expected: float) -> None:
    assert same(profit_factor(returns), expected)


# --------------------------------------------------------------------------- #
# hit_ratio
# --------------------------------------------------------------------------- #
HIT_CASES = [
    # no positions given: bars with a position = non-zero returns: 3 of them, 2 positive -> 2/3
    pytest.param([0.01, -0.02, 0.03, 0.0], None, 2 / 3, id="implicit"),
    # all 4 bars in a position (incl. the flat-return bar, a miss) -> 2/4
    pytest.param([0.01, -0.02, 0.03, 0.0], [1, 1, -1, 1], 0.5, id="all-in-position"),
    # bars 2 and 3 only: -2 %, 3 % -> 1/2
    pytest.param([0.01, -0.02, 0.03, 0.0], [0, 1, 1, 0], 0.5, id="subset"),
    # bar 1 only: 1 % -> 1/1
    pytest.param([0.01, -0.02, 0.03, 0.0], [0.5, 0, 0, 0], 1.0, id="single-position"),
    # bools work as positions: bars 1, 2 -> 1/2
    pytest.param([0.01, -0.02, 0.03], [True, True, False], 0.5, id="bool-positions"),
    # NaN return drops the bar AND its position: remaining r [1, -2, 3] %, pos [0, 1, 1] -> 1/2
    # (misaligned dropping would give pos [1, 1, 1] or similar -> 2/3)
    pytest.param([0.01, NAN, -0.02, 0.03], [0, 1, 1, 1], 0.5, id="nan-aligned"),
    # NaN position = no position: bars 2, 3 -> -2 %, 3 % -> 1/2
    pytest.param([0.01, -0.02, 0.03], [NAN, 1, 1], 0.5, id="nan-position"),
    pytest.param([0.01, -0.02], [0, 0], NAN, id="no-position"),
    pytest.param([0.0, 0.0], None, NAN, id="all-zero-implicit"),
    pytest.param([0.0, 0.0], [1, 1], 0.0, id="all-zero-in-position"),
    pytest.param([], None, NAN, id="empty"),
    pytest.param([], [], NAN, id="empty-with-positions"),
    pytest.param([NAN, NAN], [1, 1], NAN, id="all-nan"),
]


@pytest.mark.parametrize(("returns", "positions", "expected"), HIT_CASES)
def test_hit_ratio(returns: list[float], positions: list[float] | None, expected: float) -> None:
    assert same(hit_ratio(returns, positions), expected)


def test_hit_ratio_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        hit_ratio([0.01, 0.02], [1, 1, 1])
    with pytest.raises(ValueError, match="same length"):
        compute_all([0.01, 0.02], [1])


def test_hit_ratio_infinite_position() -> None:
    with pytest.raises(ValueError, match="positions contain infinite values"):
        hit_ratio([0.01, 0.02], [1, INF])


# --------------------------------------------------------------------------- #
# compute_all
# --------------------------------------------------------------------------- #
KEYS = [
    "sharpe",
    "sortino",
    "hit_ratio",
    "profit_factor",
    "max_drawdown",
    "calmar",
    "annualised_return",
    "total_return",
    "n_bars",
    "n_trades_bars",
    "psr",
    "skewness",
    "kurtosis",
]


def test_compute_all_hand_computed() -> None:
    # NaN bar dropped -> r = [1, -2, 3, 0] %, pos = [1, 1, 1, 0]; P = 1
    r = [0.01, NAN, -0.02, 0.03, 0.0]
    pos = [1, 0, 1, 1, 0]
    out = compute_all(r, pos, periods_per_year=1)
    assert list(out) == KEYS
    assert all(type(v) is float for v in out.values())
    # mean = 2/4 = 0.5 %; deviations 0.5, -2.5, 2.5, -0.5 -> squares sum 0.25+6.25+6.25+0.25 = 13
    # sample var = 13/3 -> SR = 0.5 / √(13/3)
    assert same(out["sharpe"], 0.5 / math.sqrt(13 / 3))
    # DD = √(4/4) = 1 % -> SO = 0.5
    assert same(out["sortino"], 0.5)
    # positions on bars 1..3: [1, -2, 3] % -> 2/3
    assert same(out["hit_ratio"], 2 / 3)
    assert same(out["profit_factor"], 2.0)
    # E: 1.01, 0.9898, 1.019494, 1.019494; MDD = 0.9898/1.01 - 1 = -0.02
    assert same(out["max_drawdown"], -0.02)
    # ann (P = 1, n = 4) = 1.019494^(1/4) - 1
    ann = 1.019494**0.25 - 1
    assert same(out["annualised_return"], ann)
    assert same(out["calmar"], ann / 0.02)
    assert same(out["total_return"], 0.019494)
    assert out["n_bars"] == 4.0
    assert out["n_trades_bars"] == 3.0


def test_compute_all_matches_functions() -> None:
    from scipy import stats

    rng = np.random.default_rng(5)
    r = rng.normal(0.0002, 0.01, size=300)
    r[[3, 77]] = np.nan
    pos = rng.choice([-1.0, 0.0, 1.0], size=300)
    out = compute_all(r, pos, periods_per_year=2190, risk_free_rate=0.03)
    expected = {
        "sharpe": sharpe_ratio(r, 2190, 0.03),
        "sortino": sortino_ratio(r, 2190, 0.03),
        "hit_ratio": hit_ratio(r, pos),
        "profit_factor": profit_factor(r),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar_ratio(r, 2190),
        "annualised_return": annualised_return(r, 2190),
        "total_return": float(np.prod(1 + r[~np.isnan(r)]) - 1),
        "n_bars": 298.0,
        "n_trades_bars": float(np.count_nonzero(pos[~np.isnan(r)])),
        "psr": metrics.probabilistic_sharpe_ratio(r),
        "skewness": float(stats.skew(r[~np.isnan(r)])),
        "kurtosis": float(stats.kurtosis(r[~np.isnan(r)], fisher=False)),
    }
    assert list(out) == KEYS
    for key in KEYS:
        assert same(out[key], expected[key], rel=1e-10), key


def test_compute_all_without_positions() -> None:
    out = compute_all([0.01, 0.0, -0.02, NAN])
    assert out["n_bars"] == 3.0
    assert out["n_trades_bars"] == 2.0  # non-zero returns
    assert same(out["hit_ratio"], 0.5)


@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        pytest.param(
            [],
            {
                "sharpe": NAN,
                "sortino": NAN,
                "hit_ratio": NAN,
                "profit_factor": NAN,
                "max_drawdown": 0.0,
                "calmar": NAN,
                "annualised_return": 0.0,
                "total_return": 0.0,
                "n_bars": 0.0,
                "n_trades_bars": 0.0,
                "psr": NAN,  # fewer than 3 bars or zero variance
                "skewness": NAN,
                "kurtosis": NAN,
            },
            id="empty",
        ),
        pytest.param(
            [0.0, 0.0, 0.0],
            {
                "sharpe": NAN,
                "sortino": NAN,
                "hit_ratio": NAN,
                "profit_factor": NAN,
                "max_drawdown": 0.0,
                "calmar": NAN,
                "annualised_return": 0.0,
                "total_return": 0.0,
                "n_bars": 3.0,
                "n_trades_bars": 0.0,
                "psr": NAN,  # fewer than 3 bars or zero variance
                "skewness": NAN,
                "kurtosis": NAN,
            },
            id="all-zero",
        ),
        pytest.param(
            # E = 1.01, 1.0201: ann (P = 1, n = 2) = 1.0201^(1/2) - 1 = 0.01
            [0.01, 0.01],
            {
                "sharpe": NAN,
                "sortino": INF,
                "hit_ratio": 1.0,
                "profit_factor": INF,
                "max_drawdown": 0.0,
                "calmar": INF,
                "annualised_return": 0.01,
                "total_return": 0.0201,
                "n_bars": 2.0,
                "n_trades_bars": 2.0,
                "psr": NAN,  # fewer than 3 bars or zero variance
                "skewness": NAN,
                "kurtosis": NAN,
            },
            id="constant-gain",
        ),
        pytest.param(
            # [10 %, -100 %]: ruin. Sharpe: mean -45 %, sample std = √(2 × 55²) % -> -45/(55√2)
            # Sortino: DD = √(100²/2) = 100/√2 % -> -45/(100/√2) = -0.45√2
            [0.1, -1.0],
            {
                "sharpe": -45 / (55 * math.sqrt(2)),
                "sortino": -0.45 * math.sqrt(2),
                "hit_ratio": 0.5,
                "profit_factor": 0.1,
                "max_drawdown": -1.0,
                "calmar": -1.0,
                "annualised_return": -1.0,
                "total_return": -1.0,
                "n_bars": 2.0,
                "n_trades_bars": 2.0,
                "psr": NAN,  # fewer than 3 bars or zero variance
                "skewness": NAN,
                "kurtosis": NAN,
            },
            id="ruin",
        ),
    ],
)
def test_compute_all_edge_cases(returns: list[float], expected: dict[str, float]) -> None:
    out = compute_all(returns, periods_per_year=1)
    assert list(out) == KEYS
    for key in KEYS:
        assert same(out[key], expected[key]), key


# --------------------------------------------------------------------------- #
# input handling: NaN, inf, pandas, shape, parameters
# --------------------------------------------------------------------------- #
SINGLE_INPUT: list[tuple[str, Callable[[Any], float]]] = [
    ("sharpe_ratio", sharpe_ratio),
    ("sortino_ratio", sortino_ratio),
    ("max_drawdown", max_drawdown),
    ("annualised_return", annualised_return),
    ("calmar_ratio", calmar_ratio),
    ("profit_factor", profit_factor),
    ("hit_ratio", hit_ratio),
]
FUNCS = [pytest.param(f, id=name) for name, f in SINGLE_INPUT]


@pytest.mark.parametrize("func", FUNCS)
def test_nan_is_dropped(func: Callable[[Any], float]) -> None:
    clean = [0.01, -0.02, 0.03, -0.005, 0.0]
    with_nan = [NAN, 0.01, -0.02, NAN, 0.03, -0.005, 0.0, NAN]
    assert same(func(with_nan), func(clean), rel=0.0)


@pytest.mark.parametrize("func", [*FUNCS, pytest.param(compute_all, id="compute_all")])
@pytest.mark.parametrize("bad", [INF, -INF])
def test_infinite_returns_raise(func: Callable[[Any], Any], bad: float) -> None:
    with pytest.raises(ValueError, match="returns contain infinite values"):
        func([0.01, bad, NAN])


@pytest.mark.parametrize("func", [*FUNCS, pytest.param(compute_all, id="compute_all")])
def test_two_dimensional_input_raises(func: Callable[[Any], Any]) -> None:
    with pytest.raises(ValueError, match="1-dimensional"):
        func(np.zeros((3, 2)))


@pytest.mark.parametrize("func", FUNCS)
def test_pandas_series_same_as_numpy(func: Callable[[Any], float]) -> None:
    rng = np.random.default_rng(6)
    arr = rng.normal(0.0, 0.01, size=100)
    arr[[0, 50]] = np.nan
    index = pd.date_range("2024-01-01", periods=100, freq="h", tz="UTC")
    series = pd.Series(arr, index=index)
    assert same(func(series), func(arr), rel=0.0)
    assert same(func(series), func(arr.tolist()), rel=0.0)
    # nullable dtype with pd.NA behaves like NaN
    nullable = pd.Series(arr, dtype="Float64")
    assert same(func(nullable), func(arr), rel=0.0)


def test_pandas_compute_all_and_positions() -> None:
    rng = np.random.default_rng(7)
    arr = rng.normal(0.0, 0.01, size=50)
    arr[10] = np.nan
    pos = rng.choice([-1.0, 0.0, 1.0], size=50)
    index = pd.date_range("2024-01-01", periods=50, freq="4h")
    from_pandas = compute_all(pd.Series(arr, index=index), pd.Series(pos, index=index), 2190)
    from_numpy = compute_all(arr, pos, 2190)
    assert list(from_pandas) == KEYS
    for key in KEYS:
        assert same(from_pandas[key], from_numpy[key], rel=0.0), key
    assert same(hit_ratio(pd.Series(arr), pd.Series(pos)), hit_ratio(arr, pos), rel=0.0)


@pytest.mark.parametrize("func", [*FUNCS, pytest.param(compute_all, id="compute_all")])
def test_returns_python_float(func: Callable[[Any], Any]) -> None:
    out = func(np.array([0.01, -0.02, 0.03], dtype=np.float32))
    values = out.values() if isinstance(out, dict) else [out]
    assert all(type(v) is float for v in values)


@pytest.mark.parametrize(
    "func",
    [sharpe_ratio, sortino_ratio, annualised_return, calmar_ratio],
)
@pytest.mark.parametrize("p", [0, -8760, NAN, INF])
def test_bad_periods_per_year_raise(func: Callable[..., float], p: float) -> None:
    with pytest.raises(ValueError, match="periods_per_year"):
        func([0.01, -0.02], periods_per_year=p)


@pytest.mark.parametrize("func", [sharpe_ratio, sortino_ratio])
def test_bad_risk_free_rate_raises(func: Callable[..., float]) -> None:
    with pytest.raises(ValueError, match="risk_free_rate"):
        func([0.01, -0.02], risk_free_rate=NAN)


# --------------------------------------------------------------------------- #
# no RuntimeWarning on any edge case
# --------------------------------------------------------------------------- #
EDGE_INPUTS = [
    pytest.param([], id="empty"),
    pytest.param([NAN, NAN], id="all-nan"),
    pytest.param([0.01], id="single-gain"),
    pytest.param([-0.01], id="single-loss"),
    pytest.param([0.0], id="single-zero"),
    pytest.param([0.0, 0.0, 0.0], id="all-zero"),
    pytest.param([0.01, 0.01, 0.01], id="constant"),
    pytest.param([0.01, 0.02], id="no-losses"),
    pytest.param([-0.01, -0.02], id="no-gains"),
    pytest.param([-1.0, 0.5], id="ruin"),
    pytest.param([0.3, -2.0, 0.1], id="below-zero"),
    pytest.param([-0.9999999999999999] * 50, id="near-ruin"),
    pytest.param([5e-324, -5e-324, 0.0], id="denormals"),
    pytest.param([1e300, -1e300, 1e308, 1e308], id="huge"),
    pytest.param([10.0] * 2000, id="overflowing-equity"),
]


@pytest.mark.parametrize("returns", EDGE_INPUTS)
def test_no_runtime_warnings(returns: list[float]) -> None:
    with warnings.catch_warnings(), np.errstate(all="warn"):
        warnings.simplefilter("error")
        for _, func in SINGLE_INPUT:
            value = func(returns)
            assert isinstance(value, float)
        out = compute_all(returns)
        out_pos = compute_all(returns, [0.0] * len(returns))
        sharpe_ratio(returns, risk_free_rate=0.05)
        sortino_ratio(returns, risk_free_rate=0.05)
    assert -1.0 <= out["max_drawdown"] <= 0.0
    assert math.isnan(out_pos["hit_ratio"])
    assert out["annualised_return"] >= -1.0


# ---------------------------------------------------------------- probabilistic Sharpe


def test_psr_hand_computed() -> None:
    # r = [0.01, -0.02, 0.03, 0.00, 0.02]; mean = 0.008; deviations 0.002, -0.028,
    # 0.022, -0.008, 0.012; Σd² = 1.48e-3 -> sample std = √(3.7e-4) = 0.019235,
    # SR = 0.41590. Population moments: m2 = 2.96e-4,
    # m3 = (8e-9 - 2.1952e-5 + 1.0648e-5 - 5.12e-7 + 1.728e-6) / 5 = -2.016e-6,
    # m4 = (1.6e-11 + 6.14656e-7 + 2.34256e-7 + 4.096e-9 + 2.0736e-8) / 5 = 1.74752e-7;
    # skew = -2.016e-6 / 2.96e-4^1.5 = -0.39587, kurtosis = 1.74752e-7 / 2.96e-4² = 1.99452
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.02])
    sr = r.mean() / r.std(ddof=1)
    c = r - r.mean()
    skew = np.mean(c**3) / np.mean(c**2) ** 1.5
    kurt = np.mean(c**4) / np.mean(c**2) ** 2
    assert sr == pytest.approx(0.41590, rel=1e-4)
    assert skew == pytest.approx(-0.39587, rel=1e-4)
    assert kurt == pytest.approx(1.99452, rel=1e-4)
    z = sr * math.sqrt(4) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert metrics.probabilistic_sharpe_ratio(r) == pytest.approx(expected, rel=1e-12)
    assert metrics.compute_all(r)["psr"] == pytest.approx(expected, rel=1e-12)


def test_psr_worked_example_away_from_0_and_1() -> None:
    """A PSR that saturates at 0 or 1 cannot tell a right formula from a wrong one, so
    this one sits in the middle. Per-bar SR 0.05 over 400 bars, skew -1, kurtosis 6:
    variance term 1 - (-1)(0.05) + (6 - 1)/4 · 0.05² = 1.053125,
    z = 0.05 · 19.974984 / 1.026219 = 0.973232, Φ(z) = 0.834781;
    against a benchmark of 0.02 per bar: z = 0.03 · 19.974984 / 1.026219 = 0.583939,
    Φ(z) = 0.720369; normal moments (skew 0, kurtosis 3): variance term 1.00125,
    z = 0.998749 / 1.000625 = 0.998126, Φ(z) = 0.840891."""
    assert metrics.psr_from_moments(0.05, 400, -1.0, 6.0) == pytest.approx(0.834781, abs=2e-6)
    assert metrics.psr_from_moments(0.05, 400, -1.0, 6.0, 0.02) == pytest.approx(0.720369, abs=2e-6)
    # skew and fat tails cost confidence: the same SR with normal moments is surer
    assert metrics.psr_from_moments(0.05, 400, 0.0, 3.0) == pytest.approx(0.840891, abs=2e-6)


def test_psr_of_returns_matches_an_independent_reference() -> None:
    """On real returns, against scipy's moments and normal CDF (not brain's code), in a
    range where the PSR is far from 0 and 1."""
    from scipy import stats

    rng = np.random.default_rng(11)
    r = 0.01 * rng.standard_t(5, 700) + 0.0002
    sr = r.mean() / r.std(ddof=1)
    skew = stats.skew(r)
    kurt = stats.kurtosis(r, fisher=False)
    z = sr * math.sqrt(len(r) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    expected = float(stats.norm.cdf(z))
    assert 0.2 < expected < 0.95
    assert metrics.probabilistic_sharpe_ratio(r) == pytest.approx(expected, rel=1e-10)
    # a higher benchmark is harder to beat, and the sign of the edge matters
    assert metrics.probabilistic_sharpe_ratio(r, benchmark_sharpe=1.0) < expected
    assert metrics.probabilistic_sharpe_ratio(-r) < 0.5 < expected


# ---------------------------------------------------------------- deflated Sharpe


def test_dsr_equals_the_papers_worked_example() -> None:
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example:
    annual SR 2.5 on 1,250 daily bars, skew -3, kurtosis 10, selected from N = 100
    trials whose annual SR variance is 0.5. SR0 = √(0.5/250) · (0.4228 · Φ⁻¹(0.99) +
    0.5772 · Φ⁻¹(1 - 1/(100e))) = 0.1132 per bar, and DSR = 0.9004."""
    sr = 2.5 / math.sqrt(250)
    assert metrics.expected_max_sharpe(100, 0.5 / 250) == pytest.approx(0.1132, abs=5e-5)
    assert metrics.deflated_sharpe_ratio(sr, 1250, -3.0, 10.0, 100, 0.5 / 250) == pytest.approx(
        0.9004, abs=5e-4
    )


def test_dsr_with_one_trial_is_the_psr_and_more_trials_deflate() -> None:
    sr, n, skew, kurt = 0.05, 400, -1.0, 6.0
    psr = metrics.psr_from_moments(sr, n, skew, kurt)
    assert metrics.deflated_sharpe_ratio(sr, n, skew, kurt, 1, 0.001) == psr
    assert metrics.deflated_sharpe_ratio(sr, n, skew, kurt, 5, math.nan) == psr
    ten = metrics.deflated_sharpe_ratio(sr, n, skew, kurt, 10, 0.0004)
    hundred = metrics.deflated_sharpe_ratio(sr, n, skew, kurt, 100, 0.0004)
    assert hundred < ten < psr
    with pytest.raises(ValueError, match="n_trials"):
        metrics.expected_max_sharpe(0, 0.1)


# ---------------------------------------------------------------- trading statistics


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        # enter, hold, flip, hold, exit, half long, exit: |Δp| = 1,0,2,0,1,0.5,0.5 over 8
        (
            [0, 1, 1, -1, -1, 0, 0.5, 0],
            {"turnover": 5 / 8, "exposure": 5 / 8, "round_trips": 3, "avg_holding_bars": 5 / 3},
        ),
        ([0, 0, 0], {"turnover": 0.0, "exposure": 0.0, "round_trips": 0, "avg_holding_bars": NAN}),
        ([], {"turnover": 0.0, "exposure": 0.0, "round_trips": 0, "avg_holding_bars": NAN}),
        # a trade still open at the end counts; NaN is flat
        (
            [np.nan, 1, 1, 1],
            {"turnover": 0.25, "exposure": 0.75, "round_trips": 1, "avg_holding_bars": 3},
        ),
    ],
)
def test_trading_statistics_by_hand(positions: list[float], expected: dict[str, float]) -> None:
    out = metrics.trading_statistics(positions)
    for key, value in expected.items():
        assert same(out[key], float(value)), key


@pytest.mark.parametrize("r", [[], [0.01], [0.01, 0.02], [0.01, 0.01, 0.01, 0.01]])
def test_psr_edge_cases_are_nan(r: list[float]) -> None:
    assert math.isnan(metrics.probabilistic_sharpe_ratio(r))
