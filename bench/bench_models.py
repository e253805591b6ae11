"""Benchmark: fit and predict time of every model type on the demo-sized data, vs LightGBM.

Set-up (not timed): one symbol of the demo's size, 365 days of hourly candles from the
planted-trend ``SyntheticMarket(seed=7)``, turned into the training set by
``brain_lib.training.build_dataset`` (features and the 8-bar forward return, warm-up
rows dropped): about 8,570 rows × the feature columns.

Measured (wall-clock seconds, ``time.perf_counter``), per model type with its default
hyperparameters (``get_model(name)``), ``--repeats`` times, the median kept:

* ``fit``: one fit on all rows (what the final fit of a version costs; the walk-forward
  makes ``n_splits + 1`` more on shorter windows). For the deep types this includes the
  early stopping on the validation tail (``epochs_run`` is printed).
* ``predict``: one prediction of every row.
* ``ratio``: the type's time over LightGBM's.

Torch's import and first-call set-up are paid once before timing. Device: the CPU unless
``--device cuda`` (the deep types only). Run it by hand, not in CI::

    .venv/bin/python bench/bench_models.py [--types lightgbm,xgboost,lstm,transformer,cnn]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from _machine import load_note, wait_for_quiet

from brain_lib.market import SyntheticMarket
from brain_lib.models import SequenceModel, get_model
from brain_lib.training import build_dataset

ALL_TYPES = "lightgbm,xgboost,lstm,transformer,cnn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default=ALL_TYPES)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    args = parser.parse_args()

    candles = SyntheticMarket(seed=7).candles("BTC/USDT", args.days * 24).set_index("ts")
    X, y = build_dataset(candles[["open", "high", "low", "close", "volume"]], 8)
    print(f"data: {len(X)} rows x {X.shape[1]} features; {load_note()}")
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    if any(t not in ("lightgbm", "xgboost") for t in types):
        warm = get_model("cnn", epochs=1, device=args.device)
        warm.fit(X.iloc[:500], y.iloc[:500]).predict(X.iloc[:500])  # torch import, set-up

    rows: dict[str, dict[str, Any]] = {}
    for name in types:
        fits, predicts, info = [], [], ""
        for _ in range(args.repeats):
            wait_for_quiet(args.quiet_wait)
            params = {"device": args.device} if name not in ("lightgbm", "xgboost") else {}
            model = get_model(name, **params)
            start = time.perf_counter()
            model.fit(X, y)
            fits.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(X)
            predicts.append(time.perf_counter() - start)
            if isinstance(model, SequenceModel):
                s = model.training_summary
                info = f"epochs_run={s['epochs_run']} best={s['best_epoch']} on {s['device']}"
        rows[name] = {
            "fit": statistics.median(fits),
            "predict": statistics.median(predicts),
            "info": info,
        }
        print(f"  {name}: fit {rows[name]['fit']:.2f} s, predict {rows[name]['predict']:.3f} s")

    base = rows.get("lightgbm")
    print(f"\n{'type':<12}{'fit s':>9}{'x lgbm':>9}{'predict s':>11}{'x lgbm':>9}  notes")
    for name, r in rows.items():
        fit_ratio = f"{r['fit'] / base['fit']:.1f}" if base else "-"
        pred_ratio = f"{r['predict'] / base['predict']:.1f}" if base else "-"
        print(
            f"{name:<12}{r['fit']:>9.2f}{fit_ratio:>9}{r['predict']:>11.3f}{pred_ratio:>9}"
            f"  {r['info']}"
        )
    print(f"\n{load_note()}")


if __name__ == "__main__":
    main()
