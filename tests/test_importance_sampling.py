"""A new version's SHAP explains a sample of its out-of-sample rows, not all of them:
the sample must rank the leading features as the full computation does."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from markets import PLANTED_TREND, planted

from brain_lib import importance as imp
from brain_lib.training import (
    CALIBRATION_FOLDS,
    SHAP_ROWS,
    TrainingConfig,
    build_dataset,
    evaluate_walk_forward,
    version_importance,
    walk_forward_predictions,
)

pytestmark = pytest.mark.slow


def _result(importance: dict[str, float]) -> imp.ImportanceResult:
    table = pd.DataFrame({"importance": pd.Series(importance, dtype=float)})
    return imp.ImportanceResult(method="shap", table=table, skipped={}, window=None, n_rows=1)


def test_top_rank_agreement_by_hand() -> None:
    full = _result({f"f{i}": float(20 - i) for i in range(12)})  # f0 first ... f11 last
    assert imp.top_rank_agreement(full, full) == pytest.approx(1.0)
    reversed_ = _result({f"f{i}": float(i) for i in range(12)})
    assert imp.top_rank_agreement(full, reversed_) == pytest.approx(-1.0)
    # f0 and f1 swapped among the top 10: 1 - 6 * (1 + 1) / (10 * 99)
    swapped = _result({**{f"f{i}": float(20 - i) for i in range(12)}, "f0": 18.5})
    assert imp.top_rank_agreement(full, swapped) == pytest.approx(1 - 12 / 990)
    # the lower two (outside the top 10) do not count; a missing leader ranks last
    tail = _result({**{f"f{i}": float(20 - i) for i in range(12)}, "f10": 99.0})
    assert imp.top_rank_agreement(full, tail) == pytest.approx(1.0)
    missing = _result({f"f{i}": float(20 - i) for i in range(1, 12)})
    assert imp.top_rank_agreement(full, missing, top=3) == pytest.approx(-0.5)
    assert math.isnan(imp.top_rank_agreement(full, _result({"f0": 1.0}), top=1))


def test_a_versions_sampled_shap_ranks_the_top_ten_as_every_oos_row_does() -> None:
    config = TrainingConfig()
    candles = planted(7, periods=8760, trend=PLANTED_TREND)
    X, y = build_dataset(candles, config.label_horizon, config.timeframe)
    wf = walk_forward_predictions(X, y, config)
    evaluation = evaluate_walk_forward(wf, X, y, candles, config)
    folds = [
        (wf.models[i], X.iloc[start:stop])
        for i, (_, _, start, stop) in enumerate(wf.bounds)
        if i >= CALIBRATION_FOLDS
    ]
    every_row = sum(len(rows) for _, rows in folds)
    assert every_row > 4 * SHAP_ROWS  # the sample is a real cut

    rows = version_importance(wf, evaluation, X, y, candles, config)
    shap_rows = [r for r in rows if r["method"] == "shap"]
    assert {r["n_rows"] for r in shap_rows} == {SHAP_ROWS}

    full = imp.shap_importance_folds(folds, max_rows=every_row)
    assert full.n_rows == every_row
    agreement = {
        seed: imp.top_rank_agreement(
            full, imp.shap_importance_folds(folds, max_rows=SHAP_ROWS, seed=seed)
        )
        for seed in range(3)
    }
    print(f"top-10 Spearman of {SHAP_ROWS} sampled rows vs all {every_row}: {agreement}")
    assert min(agreement.values()) >= 0.95, agreement
    # what was stored is the seed-0 sample's ranking
    stored = {r["feature"]: r["rank"] for r in shap_rows if r["rank"] is not None}
    sample = imp.shap_importance_folds(folds, max_rows=SHAP_ROWS, seed=0)
    assert stored == {str(k): int(v) for k, v in sample.table["rank"].items()}
