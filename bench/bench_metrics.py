"""Benchmark: ``brain_lib.metrics`` against empyrical and quantstats, values and speed.

The returns: ``--bars`` hourly bars (default 5 years, 43,800) of a strategy on a market
with a weak planted trend (``SyntheticMarket(seed=7, trend=0.1)``): long or short by the
sign of the 24-bar return, flat when its size is in the lowest quarter (so about a fifth of
the bars are exactly 0), 5 bps per unit of position change (Sharpe about 1, max drawdown
about 80 %). Simple per-bar returns, no NaN. Every library gets the same numbers and the
same annualisation, 8,760 bars a year (``annualization=`` for empyrical, ``periods=`` for
quantstats), and a risk-free rate of 0.

Values (a metric counts as equal when ``|Δ| <= 1e-9 × max(1, |value|)``), Brain's from
``compute_all``:

* empyrical-reloaded 0.7.1: Sharpe (``sharpe_ratio``), Sortino (``sortino_ratio``), max
  drawdown, annualised return (``annual_return``), Calmar, total return
  (``cum_returns_final``);
* quantstats 0.0.86: the same (``sharpe``, ``sortino``, ``max_drawdown``, ``cagr``,
  ``calmar``, ``comp``) plus profit factor and hit ratio (``win_rate``).

Where the definitions differ, the difference is printed, not counted as a mismatch:

* skewness and kurtosis: Brain's are population moments and its kurtosis is not excess
  (3 for a normal); quantstats gives pandas' bias-adjusted sample skewness and *excess*
  kurtosis. Compared raw and after converting Brain's to pandas' definitions
  (G1 = g1·√(n(n−1))/(n−2), G2 = ((n+1)(b2−3)+6)(n−1)/((n−2)(n−3))).
* the PSR (``probabilistic_sharpe_ratio``): the same formula (Bailey & López de Prado),
  but quantstats puts the sample moments into it and Brain the population moments, a
  difference of order 1/n (it shows only when the PSR is not saturated at 0 or 1).
  Compared raw and with Brain's ``psr_from_moments`` given quantstats' moments.
* a risk-free rate (3 % a year, printed separately): Brain de-annualises it by division
  (``rf / 8760``), which empyrical matches when given that per-bar rate (empyrical takes
  a per-period ``risk_free``); quantstats compounds (``(1 + rf)^(1/8760) − 1``).
* max drawdown: all three return a negative fraction (−0.25 for 25 %) measured with the
  starting capital counted as a peak; Brain compounds in logs (``log1p``), the others by
  product, so they differ by float rounding only (as do annualised return and Calmar).
* ddof: all three use the sample standard deviation (ddof = 1) in the Sharpe ratio, and
  the root mean square of the negative returns over all bars as the Sortino ratio's
  downside deviation.

Speed, like for like: the same metrics function by function, Brain's ``sharpe_ratio``,
``sortino_ratio``, ``max_drawdown``, ``annualised_return``, ``calmar_ratio`` (and against
quantstats also ``profit_factor``, ``hit_ratio``, ``probabilistic_sharpe_ratio``) against
the library's functions for the same metrics (5 and 8; total return has no function of
its own in Brain). Also printed: ``compute_all`` (all 13 figures at once, what
``training`` calls). Brain and empyrical get a NumPy array, quantstats a pandas Series
with an hourly ``DatetimeIndex`` (built once, not timed). quantstats caches its
``_prepare_returns`` by a hash of the data; the cache is emptied before each timed call,
so every call starts as a new series would. Each timing is the median over ``--repeats``
of the mean of ``--loops`` calls; the ratio is other / Brain (above 1: Brain is faster).

Run from the repository root::

    .venv/bin/python bench/bench_metrics.py            # 43,800 bars
    .venv/bin/python bench/bench_metrics.py --quick    # 8,760 bars, one repeat
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from _machine import load_note, wait_for_quiet  # bench/ is on sys.path
from _report import add_report_args, measure, ratio, write_report

from brain_lib import metrics as bm
from brain_lib.market import SyntheticMarket

PERIODS = 8760
RISK_FREE = 0.03
TOLERANCE = 1e-9
FEE = 5e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bars", type=int, default=5 * PERIODS, help="hourly bars of returns")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (median kept)")
    parser.add_argument("--loops", type=int, default=20, help="calls per timing repeat")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds to wait at most for an idle machine before the timings (0: never)",
    )
    add_report_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.bars, args.repeats, args.loops = PERIODS, 1, 5
        args.quiet_wait = min(args.quiet_wait, 5.0)
    if args.bars < 100 or args.repeats < 1 or args.loops < 1:
        parser.error("--bars must be >= 100, --repeats and --loops >= 1")
    return args


def strategy_returns(bars: int) -> pd.Series:
    """Per-bar returns of a simple momentum strategy with fees (see the docstring)."""
    frame = SyntheticMarket(seed=7, trend=0.1).candles("BTC/USDT", bars + 25)
    close = frame.set_index("ts")["close"]
    ret = close.pct_change()
    momentum = close.pct_change(24)
    band = momentum.abs().quantile(0.25)
    position = np.sign(momentum).where(momentum.abs() > band, 0.0)
    held = position.shift(1)
    out = held * ret - FEE * held.diff().abs()
    out = out.iloc[-bars:].astype(float)
    out.name = "strategy"
    return out


def sample_skew(g1: float, n: int) -> float:
    return g1 * math.sqrt(n * (n - 1)) / (n - 2)


def sample_excess_kurtosis(b2: float, n: int) -> float:
    return ((n + 1) * (b2 - 3.0) + 6.0) * (n - 1) / ((n - 2) * (n - 3))


def empyrical_values(r: np.ndarray) -> dict[str, float]:
    import empyrical as ep

    return {
        "sharpe": float(ep.sharpe_ratio(r, annualization=PERIODS)),
        "sortino": float(ep.sortino_ratio(r, annualization=PERIODS)),
        "max_drawdown": float(ep.max_drawdown(r)),
        "annualised_return": float(ep.annual_return(r, annualization=PERIODS)),
        "calmar": float(ep.calmar_ratio(r, annualization=PERIODS)),
        "total_return": float(ep.cum_returns_final(r)),
    }


def quantstats_values(s: pd.Series) -> dict[str, float]:
    import quantstats as qs

    st = qs.stats
    return {
        "sharpe": float(st.sharpe(s, periods=PERIODS)),
        "sortino": float(st.sortino(s, periods=PERIODS)),
        "max_drawdown": float(st.max_drawdown(s)),
        "annualised_return": float(st.cagr(s, periods=PERIODS)),
        "calmar": float(st.calmar(s, periods=PERIODS)),
        "total_return": float(st.comp(s)),
        "profit_factor": float(st.profit_factor(s)),
        "hit_ratio": float(st.win_rate(s)),
    }


def brain_subset(r: np.ndarray, with_quantstats_extras: bool) -> list[float]:
    """Brain's functions for the metrics the other library has (the speed comparison)."""
    out = [
        bm.sharpe_ratio(r, PERIODS),
        bm.sortino_ratio(r, PERIODS),
        bm.max_drawdown(r),
        bm.annualised_return(r, PERIODS),
        bm.calmar_ratio(r, PERIODS),
    ]
    if with_quantstats_extras:
        out += [bm.profit_factor(r), bm.hit_ratio(r), bm.probabilistic_sharpe_ratio(r)]
    return out


def empyrical_subset(r: np.ndarray) -> list[float]:
    import empyrical as ep

    return [
        ep.sharpe_ratio(r, annualization=PERIODS),
        ep.sortino_ratio(r, annualization=PERIODS),
        ep.max_drawdown(r),
        ep.annual_return(r, annualization=PERIODS),
        ep.calmar_ratio(r, annualization=PERIODS),
    ]


def quantstats_subset(s: pd.Series) -> list[float]:
    import quantstats as qs

    st = qs.stats
    return [
        st.sharpe(s, periods=PERIODS),
        st.sortino(s, periods=PERIODS),
        st.max_drawdown(s),
        st.cagr(s, periods=PERIODS),
        st.calmar(s, periods=PERIODS),
        st.profit_factor(s),
        st.win_rate(s),
        st.probabilistic_sharpe_ratio(s, periods=PERIODS),
    ]


def clear_quantstats_cache() -> None:
    try:
        from quantstats import utils

        cache = getattr(utils, "_PREPARE_RETURNS_CACHE", None)
        if cache is not None:
            cache.clear()
    except ImportError:
        pass


def _nothing() -> None:
    return None


def per_call(fn: Callable[[], Any], loops: int, repeats: int, before: Callable[[], None]) -> float:
    """Median over ``repeats`` of the seconds per call, each repeat ``loops`` calls."""
    fn()  # warm-up: imports, first-call set-up
    medians: list[float] = []
    for _ in range(repeats):
        total = 0.0
        for _ in range(loops):
            before()
            start = time.perf_counter()
            fn()
            total += time.perf_counter() - start
        medians.append(total / loops)
    return statistics.median(medians)


def close_enough(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a))


def compare(
    lib: str, brain: dict[str, float], theirs: dict[str, float]
) -> tuple[dict[str, Any], list[str]]:
    """Print one line per metric; the worst metric's row and the metrics that differ."""
    worst = {"metric": "", "diff": -1.0, "brain": math.nan, "other": math.nan}
    differ: list[str] = []
    for name, value in theirs.items():
        mine = brain[name]
        diff = abs(mine - value)
        ok = close_enough(mine, value)
        if not ok:
            differ.append(name)
        print(
            f"  {name:<18} brain {mine:>22.15g}  {lib:<10} {value:>22.15g}  |Δ| {diff:.2e}"
            + ("" if ok else "  DIFFERENT")
        )
        if diff > worst["diff"]:
            worst = {"metric": name, "diff": diff, "brain": mine, "other": value}
    return worst, differ


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"before start: {load_note()}")
    series = strategy_returns(args.bars)
    r = series.to_numpy()
    n = r.size
    print(
        f"{n:,} hourly strategy returns: {np.mean(r == 0):.0%} flat bars, "
        f"mean {r.mean():.2e}, std {r.std(ddof=1):.2e}, annualisation {PERIODS} bars a year"
    )
    brain = bm.compute_all(r, periods_per_year=PERIODS)

    libraries: dict[str, Any] = {}
    missing: list[str] = []
    for module in ("empyrical", "quantstats"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                libraries[module] = __import__(module)
        except Exception as exc:  # not installed, or broken: say so and go on
            missing.append(module)
            print(f"{module}: cannot be imported here ({type(exc).__name__}: {exc})")

    measures: list[dict[str, Any]] = [measure("bars", value=n, unit="bars")]
    ratios: list[dict[str, Any]] = []
    failures: list[str] = []

    for lib, values_of, data in (
        ("empyrical", empyrical_values, r),
        ("quantstats", quantstats_values, series),
    ):
        if lib not in libraries:
            continue
        version = getattr(libraries[lib], "__version__", "?")
        print(f"\n== values: brain_lib.metrics vs {lib} {version} ==")
        clear_quantstats_cache()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = values_of(data)
        worst, differ = compare(lib, brain, theirs)
        for name, value in theirs.items():
            measures.append(measure(f"{lib} {name}", value=value, unit=""))
            measures.append(measure(f"{lib} {name} |Δ|", value=abs(brain[name] - value), unit=""))
        if differ:
            failures.append(f"{lib}: {', '.join(differ)} differ by more than {TOLERANCE:g}")
        label = (
            f"values vs {lib}: {len(theirs)} metrics, "
            f"max |Δ| {worst['diff']:.1e} ({worst['metric']})"
        )
        ratios.append(
            ratio(
                label,
                brain=worst["brain"],
                other=worst["other"],
                other_name=f"{lib} {worst['metric']}",
                target=f"|Δ| <= {TOLERANCE:g} × max(1, |x|)",
                ok=not differ,
            )
        )

    if "quantstats" in libraries:
        import quantstats as qs

        print("\n== definitional differences (not counted as mismatches) ==")
        g1, b2 = brain["skewness"], brain["kurtosis"]
        qs_skew = float(qs.stats.skew(series))
        qs_kurt = float(qs.stats.kurtosis(series))
        qs_psr = float(qs.stats.probabilistic_sharpe_ratio(series, periods=PERIODS))
        sr_bar = float(r.mean() / r.std(ddof=1))
        psr_sample = bm.psr_from_moments(
            sr_bar, n, sample_skew(g1, n), sample_excess_kurtosis(b2, n) + 3.0
        )
        rows = [
            ("skewness, raw (g1 vs pandas G1)", g1, qs_skew),
            ("skewness, Brain's converted to G1", sample_skew(g1, n), qs_skew),
            ("kurtosis, raw (b2 vs excess G2)", b2, qs_kurt),
            ("kurtosis, Brain's converted to G2", sample_excess_kurtosis(b2, n), qs_kurt),
            ("PSR, raw (population moments)", brain["psr"], qs_psr),
            ("PSR, Brain's formula, G1 and G2 + 3", psr_sample, qs_psr),
        ]
        for label, mine, value in rows:
            diff = abs(mine - value)
            print(f"  {label:<36} brain {mine:>14.10g}  quantstats {value:>14.10g}  |Δ| {diff:.2e}")
        measures.append(
            measure("skewness |Δ| after conversion", value=abs(rows[1][1] - qs_skew), unit="")
        )
        measures.append(
            measure("kurtosis |Δ| after conversion", value=abs(rows[3][1] - qs_kurt), unit="")
        )
        measures.append(measure("PSR |Δ| raw", value=abs(brain["psr"] - qs_psr), unit=""))
        measures.append(measure("PSR |Δ| same moments", value=abs(psr_sample - qs_psr), unit=""))
        sr_brain = bm.sharpe_ratio(r, PERIODS, RISK_FREE)
        sr_qs = float(qs.stats.sharpe(series, rf=RISK_FREE, periods=PERIODS))
        line = (
            f"  Sharpe at rf {RISK_FREE:.0%} a year: brain {sr_brain:.12g}, "
            f"quantstats {sr_qs:.12g} (compounded rf)"
        )
        if "empyrical" in libraries:
            sr_ep = float(
                libraries["empyrical"].sharpe_ratio(
                    r, risk_free=RISK_FREE / PERIODS, annualization=PERIODS
                )
            )
            line += f", empyrical {sr_ep:.12g} (given rf / {PERIODS})"
        print(line)
        measures.append(
            measure("Sharpe at rf 3% |Δ| quantstats", value=abs(sr_brain - sr_qs), unit="")
        )

    timed = [lib for lib in ("empyrical", "quantstats") if lib in libraries]
    if timed:
        print(f"\n== speed: seconds per call, median of {args.repeats} × {args.loops} calls ==")
        busy = wait_for_quiet(args.quiet_wait)
        print(f"{load_note()}; busy share before: {busy}")
        t_all = per_call(
            lambda: bm.compute_all(r, periods_per_year=PERIODS), args.loops, args.repeats, _nothing
        )
        print(f"  {'brain_lib.metrics.compute_all, 13 figures':<48} {t_all * 1e3:9.3f} ms")
        measures.append(measure("brain_lib.metrics.compute_all (13 figures)", seconds=t_all))
        others: dict[str, tuple[int, Callable[[], Any], Callable[[], Any]]] = {
            "empyrical": (5, lambda: brain_subset(r, False), lambda: empyrical_subset(r)),
            "quantstats": (8, lambda: brain_subset(r, True), lambda: quantstats_subset(series)),
        }
        for lib in timed:
            k, mine, theirs_fn = others[lib]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_brain = per_call(mine, args.loops, args.repeats, _nothing)
                t_other = per_call(theirs_fn, args.loops, args.repeats, clear_quantstats_cache)
            print(f"  {f'brain_lib.metrics, the {k} metrics of {lib}':<48} {t_brain * 1e3:9.3f} ms")
            print(
                f"  {f'{lib}, the same {k} metrics':<48} {t_other * 1e3:9.3f} ms"
                f"   {lib} / brain = {t_other / t_brain:.2f}x"
            )
            measures.append(measure(f"brain_lib.metrics, {k} metrics of {lib}", seconds=t_brain))
            measures.append(measure(f"{lib}, {k} metrics", seconds=t_other))
            version = getattr(libraries[lib], "__version__", "")
            ratios.append(
                ratio(
                    f"speed: {k} metrics, {lib} / brain_lib.metrics",
                    brain=t_brain,
                    other=t_other,
                    other_name=f"{lib} {version}".strip(),
                )
            )

    if args.json:
        write_report(args.json, "metrics", measures, ratios)
    print(f"\nafter: {load_note()}")
    for failure in failures:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    if missing and not libraries:
        print("neither empyrical nor quantstats could be imported", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
