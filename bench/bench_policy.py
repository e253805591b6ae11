"""What the position policy, the backtest and the baselines cost next to the fits.

For one symbol × one year of hourly candles (8,760 bars, the demo's planted market),
``train_symbol`` fits 5 scored folds + 1 calibration fold + the final model. Measured
separately, each the median of ``--repeats`` runs on an idle machine:

* **fits** — ``walk_forward_predictions`` (6 fold fits, their predictions and the
  in-sample centres) plus ``fit_final``: what a version costs to train;
* **policy + backtest + baselines** — ``evaluate_walk_forward``: the per-fold policy
  fits (skill, Bartlett's effective sample), the position state machine, the backtest
  with costs and funding, every metric, the trading statistics and both baselines.

Prints both and the ratio (target: at most 5 % on top of the fits), and the same for
XGBoost. Run by hand: ``.venv/bin/python bench/bench_policy.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import pandas as pd
from _machine import load_note, wait_for_quiet

from brain_lib.market import SyntheticMarket
from brain_lib.training import (
    TrainingConfig,
    build_dataset,
    evaluate_walk_forward,
    fit_final,
    walk_forward_predictions,
)


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(config: TrainingConfig, candles: pd.DataFrame, repeats: int) -> tuple[float, float]:
    X, y = build_dataset(candles, config.label_horizon, config.timeframe)
    wf = walk_forward_predictions(X, y, config)

    def fits() -> None:
        walk_forward_predictions(X, y, config)
        fit_final(X, y, config)

    def policy() -> None:
        evaluate_walk_forward(wf, X, y, candles, config)

    policy()  # warm caches (imports, FFT plans) outside the timing
    return _median_seconds(fits, repeats), _median_seconds(policy, repeats * 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frame = SyntheticMarket(seed=7, trend=0.2).candles("BTC/USDT:USDT", 8760)
    candles = frame.set_index("ts")[["open", "high", "low", "close", "volume"]]
    # a funding print every 8 hours, as a perpetual pays
    charge = pd.Series(0.0, index=candles.index)
    charge[candles.index.hour.isin([7, 15, 23])] = 0.0001
    candles = candles.assign(funding_charge=charge)
    busy = wait_for_quiet(60)
    print(load_note(), f"(busy share before: {busy})" if busy is not None else "")
    lightgbm = TrainingConfig()
    xgboost = dataclasses.replace(lightgbm, model_type="xgboost")
    for name, config in (("lightgbm", lightgbm), ("xgboost", xgboost)):
        fit_s, policy_s = bench(config, candles, args.repeats)
        print(
            f"{name:<9} fits {fit_s:7.3f} s   policy+backtest+baselines {policy_s * 1000:7.1f} ms"
            f"   on top of the fits: {policy_s / fit_s:6.1%}   (target <= 5 %)"
        )


if __name__ == "__main__":
    main()
