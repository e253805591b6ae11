"""How the position policy's defaults were chosen: out-of-sample results per setting.

Three markets, 1 year of hourly candles each, the full pipeline of ``train_symbol``
(features, labels, purged walk-forward with the calibration fold, per-fold policy,
backtest with 5 bps fees):

* ``null``    — constant-volatility Student-t random walks (df 4): nothing to find;
* ``regimes`` — the regime-switching random walk of the synthetic market (volatility
  clusters, but returns stay unpredictable);
* ``planted`` — the regime-switching market with the demo's planted trend (κ = 0.2
  bar volatilities, half-life 48 bars): something real to find.

Each row is one setting over ``--seeds`` seeds (default 12): mean Sharpe (a flat
strategy counts 0), share of positive Sharpe, largest |Sharpe|, mean max drawdown,
median position change per bar, mean exposure. The figures in docs/backtest.md
("Choosing the defaults") come from this script:

    .venv/bin/python bench/study_policy.py                 # every setting (~15 min)
    .venv/bin/python bench/study_policy.py --only default  # the defaults only

Run by hand; not part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from typing import Any

from brain_lib.market import generate_candles
from brain_lib.policy import PolicySpec
from brain_lib.training import TrainingConfig, train_symbol

MARKETS: dict[str, dict[str, Any]] = {
    "null": {"regime_vol": (0.007, 0.007, 0.007)},
    "regimes": {},
    "planted": {"trend": 0.2, "trend_half_life": 48.0},
}

DEFAULT = TrainingConfig()
SETTINGS: dict[str, TrainingConfig] = {
    "default": DEFAULT,
    "sign (before)": dataclasses.replace(DEFAULT, label_horizon=1, policy=PolicySpec(kind="sign")),
    "h=1": dataclasses.replace(DEFAULT, label_horizon=1),
    "h=4": dataclasses.replace(DEFAULT, label_horizon=4),
    "h=24": dataclasses.replace(DEFAULT, label_horizon=24),
    "z=1.0": dataclasses.replace(DEFAULT, policy=PolicySpec(confidence_z=1.0)),
    "z=1.25": dataclasses.replace(DEFAULT, policy=PolicySpec(confidence_z=1.25)),
    "z=2.0": dataclasses.replace(DEFAULT, policy=PolicySpec(confidence_z=2.0)),
    "margin=0": dataclasses.replace(DEFAULT, policy=PolicySpec(entry_margin=0.0)),
    "margin=1": dataclasses.replace(DEFAULT, policy=PolicySpec(entry_margin=1.0)),
    "vol_target": dataclasses.replace(DEFAULT, policy=PolicySpec(sizing="vol_target")),
}


def run(market: str, config: TrainingConfig, seeds: int) -> dict[str, float]:
    rows = []
    for seed in range(seeds):
        frame = generate_candles("BTC/USDT", 8760, seed=100 + seed, **MARKETS[market])
        candles = frame.set_index("ts")[["open", "high", "low", "close", "volume"]]
        result = train_symbol(candles, exchange="study", symbol="BTC/USDT", config=config)
        rows.append(result.metrics)
    sharpes = [0.0 if math.isnan(r["sharpe"]) else r["sharpe"] for r in rows]
    return {
        "mean_sharpe": statistics.fmean(sharpes),
        "positive": sum(s > 0 for s in sharpes) / len(sharpes),
        "max_abs_sharpe": max(abs(s) for s in sharpes),
        "mean_mdd": statistics.fmean(r["max_drawdown"] for r in rows),
        "median_turnover": statistics.median(r["turnover_per_bar"] for r in rows),
        "mean_exposure": statistics.fmean(r["exposure"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--only", choices=sorted(SETTINGS), default=None)
    args = parser.parse_args()
    names = [args.only] if args.only else list(SETTINGS)
    print(
        f"{'setting':<14} {'market':<8} {'sharpe':>7} {'>0':>5} {'max|SR|':>8} "
        f"{'mdd':>7} {'turn/bar':>9} {'exposure':>9} {'s':>5}"
    )
    for name in names:
        for market in MARKETS:
            start = time.perf_counter()
            r = run(market, SETTINGS[name], args.seeds)
            print(
                f"{name:<14} {market:<8} {r['mean_sharpe']:>7.2f} {r['positive']:>5.0%} "
                f"{r['max_abs_sharpe']:>8.2f} {r['mean_mdd']:>7.1%} "
                f"{r['median_turnover']:>9.4f} {r['mean_exposure']:>9.1%} "
                f"{time.perf_counter() - start:>5.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
