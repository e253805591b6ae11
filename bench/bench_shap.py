"""Benchmark: the cost of feature importance (brain_lib.importance).

1. TreeSHAP on 50,000 rows × 60 features of a 200-tree LightGBM model:

   * ``native``: ``shap_importance(model, X, max_rows=50_000)``, i.e. LightGBM's own
     ``booster.predict(X, pred_contrib=True)`` plus the table (mean |SHAP|);
   * ``shap.TreeExplainer``: ``shap.TreeExplainer(booster).shap_values(X)``. For
     LightGBM (and XGBoost) shap 0.51 hands the path-dependent case straight back to the
     booster's ``pred_contrib``, so this is the same C++ code plus shap's overhead;
   * ``shap internal``: shap's own C++ TreeSHAP on the trees shap parsed from the model
     (the trees passed to ``shap.TreeExplainer`` as a dict, so it cannot delegate): an
     independent implementation, to compare speed and values with.

   The three contribution matrices must agree within 1e-6 (max absolute difference is
   printed); the speed ratio is ``T_other / T_native``.

   Data: ``generate_candles("BTC/USDT", 50_000 + warm-up, seed=7)`` → ``build_dataset``
   (27 features, 1-bar forward return) plus 33 seeded standard-normal columns, the last
   50,000 rows. The model is ``LightGBMModel()`` with its defaults (200 trees, 15 leaves,
   2 threads), fitted on those rows (fit time printed, not part of the ratio).

2. Permutation importance on a realistic window: a ``LightGBMModel()`` and an
   ``XGBoostModel()`` with their defaults, trained on 8,760 hourly rows (one year), and
   explained on the following ``--window`` rows (default 5,000, the default ``max_rows``)
   with the 27 real features. Reported: total wall time and seconds per feature per
   repeat, ``T / (n_features × n_repeats)``, and its parts: one ``model.predict`` and one
   ``run_backtest`` + ``sharpe_ratio`` of the window.

Wall-clock seconds with ``time.perf_counter``; each measurement is repeated
``--repeats`` times and the minimum and median are printed.

``--json PATH`` also writes the timings and the ratios (``bench/_report.py``); ``--quick``
is 5,000 rows, a 1,000-row window, 2 shuffles and one repeat.

Run from the repository root::

    .venv/bin/python bench/bench_shap.py                 # 3 repeats
    .venv/bin/python bench/bench_shap.py --repeats 1 --rows 20000
    .venv/bin/python bench/bench_shap.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from _report import add_report_args, measure, ratio, write_report  # bench/ is on sys.path

from brain_lib.backtest import run_backtest
from brain_lib.features import feature_warmup_bars
from brain_lib.importance import ImportanceResult, permutation_importance, shap_importance
from brain_lib.market import generate_candles
from brain_lib.metrics import periods_per_year, sharpe_ratio
from brain_lib.models import LightGBMModel, XGBoostModel
from brain_lib.training import build_dataset


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times: list[float] = []
    out: Any = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def _fmt(times: list[float]) -> str:
    return f"min {min(times):8.3f} s   median {statistics.median(times):8.3f} s"


def _candles(periods: int) -> pd.DataFrame:
    frame = generate_candles("BTC/USDT", periods, seed=7)
    return frame.set_index("ts").drop(columns="regime")


Report = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def bench_treeshap(rows: int, n_features: int, repeats: int) -> Report:
    import shap

    print(f"== TreeSHAP: {rows:,} rows × {n_features} features, LightGBM 200 trees ==")
    X, y = build_dataset(_candles(rows + feature_warmup_bars() + 10), label_horizon=1)
    X, y = X.iloc[-rows:], y.iloc[-rows:]
    rng = np.random.default_rng(0)
    extra = n_features - X.shape[1]
    noise = pd.DataFrame(
        rng.normal(size=(len(X), extra)), index=X.index, columns=[f"rand_{i}" for i in range(extra)]
    )
    X = pd.concat([X, noise], axis=1)
    start = time.perf_counter()
    model = LightGBMModel().fit(X, y)
    print(f"fit: {time.perf_counter() - start:.2f} s ({model.booster.num_trees()} trees)")
    arr = X.to_numpy(dtype=float)

    t_native, result = _timed(
        lambda: shap_importance(model, X, max_rows=rows, return_values=True), repeats
    )
    native = result.values.to_numpy()

    def via_tree_explainer() -> np.ndarray:
        return np.asarray(shap.TreeExplainer(model.booster).shap_values(arr))

    t_explainer, explained = _timed(via_tree_explainer, repeats)

    ensemble = shap.TreeExplainer(model.booster).model
    trees = [
        {
            "children_left": t.children_left,
            "children_right": t.children_right,
            "children_default": t.children_default,
            "features": t.features,
            "thresholds": t.thresholds,
            "values": t.values,
            "node_sample_weight": t.node_sample_weight,
        }
        for t in ensemble.trees
    ]

    def via_shap_internal() -> np.ndarray:
        explainer = shap.TreeExplainer({"trees": trees, "base_offset": ensemble.base_offset})
        return np.asarray(explainer.shap_values(arr, check_additivity=False))

    t_internal, internal = _timed(via_shap_internal, repeats)

    diff_explainer = float(np.abs(native - explained).max())
    diff_internal = float(np.abs(native - internal).max())
    print(f"native (pred_contrib)     {_fmt(t_native)}")
    print(f"shap.TreeExplainer        {_fmt(t_explainer)}   max |Δ| {diff_explainer:.2e}")
    print(f"shap internal C++         {_fmt(t_internal)}   max |Δ| {diff_internal:.2e}")
    base = statistics.median(t_native)
    print(
        f"speed ratio (median): TreeExplainer / native = "
        f"{statistics.median(t_explainer) / base:.2f}, "
        f"shap internal / native = {statistics.median(t_internal) / base:.2f}"
    )
    print(f"per row: native {base / rows * 1e6:.0f} µs")
    agree = diff_explainer <= 1e-6 and diff_internal <= 1e-6
    print(f"values agree within 1e-6: {agree}")
    if not agree:
        raise SystemExit("TreeSHAP values disagree")
    size = f"{rows:,}×{n_features}"
    measures = [
        measure(f"TreeSHAP {size}: native pred_contrib", seconds=base),
        measure(f"TreeSHAP {size}: shap.TreeExplainer", seconds=statistics.median(t_explainer)),
        measure(f"TreeSHAP {size}: shap internal C++", seconds=statistics.median(t_internal)),
        measure("TreeSHAP max |Δ| TreeExplainer", value=diff_explainer, unit=""),
        measure("TreeSHAP max |Δ| shap internal", value=diff_internal, unit=""),
    ]
    ratios = [
        ratio(
            f"TreeSHAP {size}: shap.TreeExplainer / native (|Δ| {diff_explainer:.0e})",
            brain=base,
            other=statistics.median(t_explainer),
            other_name="shap.TreeExplainer",
        ),
        ratio(
            f"TreeSHAP {size}: shap's own C++ / native (|Δ| {diff_internal:.0e})",
            brain=base,
            other=statistics.median(t_internal),
            other_name="shap TreeExplainer (parsed trees)",
        ),
    ]
    return measures, ratios


def bench_permutation(window: int, n_repeats: int, repeats: int) -> list[dict[str, Any]]:
    train_rows = 8760
    candles = _candles(train_rows + window + feature_warmup_bars() + 10)
    close = candles["close"]
    X, y = build_dataset(candles, label_horizon=1)
    X_train, y_train = X.iloc[:train_rows], y.iloc[:train_rows]
    X_test = X.iloc[train_rows : train_rows + window]
    y_test = y.iloc[train_rows : train_rows + window]
    k = X.shape[1]
    ppy = periods_per_year("1h")
    print(
        f"\n== permutation importance: {len(X_test):,} rows × {k} features, {n_repeats} repeats =="
    )
    models: list[LightGBMModel | XGBoostModel] = [LightGBMModel(), XGBoostModel()]
    measures: list[dict[str, Any]] = []
    for model in models:
        model.fit(X_train, y_train)

        def run(m: LightGBMModel | XGBoostModel = model) -> ImportanceResult:
            return permutation_importance(
                m, X_test, y_test, close, n_repeats=n_repeats, max_rows=window
            )

        def predict(m: LightGBMModel | XGBoostModel = model) -> np.ndarray:
            return m.predict(X_test)

        t_total, result = _timed(run, repeats)
        t_predict, pred = _timed(predict, max(repeats, 5))
        series = pd.Series(pred, index=X_test.index)

        def score(s: pd.Series = series) -> float:
            return sharpe_ratio(run_backtest(s, close, fee_bps=5.0).net_returns, ppy)

        t_score, _ = _timed(score, max(repeats, 5))
        per = statistics.median(t_total) / (len(result.table) * n_repeats)
        print(f"{model.model_type:9s} total {_fmt(t_total)}")
        print(
            f"{'':9s} per feature per repeat {per * 1e3:7.1f} ms  "
            f"(predict {statistics.median(t_predict) * 1e3:.1f} ms, "
            f"backtest + Sharpe {statistics.median(t_score) * 1e3:.1f} ms); "
            f"baseline Sharpe {result.details['baseline_sharpe']:.2f}, "
            f"top 3 {result.ranking[:3]}"
        )
        label = f"permutation {len(X_test):,}×{k}, {n_repeats} shuffles, {model.model_type}"
        measures.append(measure(label, seconds=statistics.median(t_total)))
        measures.append(measure(f"{label}, per feature per shuffle", seconds=per))
    return measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--window", type=int, default=5_000)
    parser.add_argument("--n-repeats", type=int, default=5, help="permutation shuffles")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats")
    add_report_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.window, args.n_repeats, args.repeats = 5_000, 1_000, 2, 1
    measures, ratios = bench_treeshap(args.rows, args.features, args.repeats)
    measures += bench_permutation(args.window, args.n_repeats, args.repeats)
    if args.json:
        write_report(args.json, "shap", measures, ratios)


if __name__ == "__main__":
    main()
