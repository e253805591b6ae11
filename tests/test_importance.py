"""Feature importance: native TreeSHAP checked against shap and against exact Shapley
values, permutation and SHAP find a planted signal, Spearman matches scipy, and bad
input gives a skipped result with a reason instead of NaN or a crash."""

from __future__ import annotations

import json
import math
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import shap

from brain_lib.importance import (
    CONSTANT_REASON,
    NO_VALUES_REASON,
    STATUS_SKIPPED,
    ImportanceResult,
    correlation_importance,
    permutation_importance,
    shap_importance,
)
from brain_lib.models import LightGBMModel, XGBoostModel

SIGNAL = ["x0", "x1"]
NOISE = ["x2", "x3", "x4", "x5", "x6"]
FEATURES = SIGNAL + NOISE
N_ROWS = 3000
N_TRAIN = 2000

MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "lightgbm": {"num_boost_round": 100, "learning_rate": 0.1, "min_data_in_leaf": 50},
    "xgboost": {"num_boost_round": 100, "eta": 0.1, "min_child_weight": 10.0},
}
MODEL_CLASSES: dict[str, type[LightGBMModel] | type[XGBoostModel]] = {
    "lightgbm": LightGBMModel,
    "xgboost": XGBoostModel,
}


class LinearModel:
    """A model type with no native contributions: f(x) = w·x."""

    model_type = "linear-test"

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = pd.Series(weights)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(X[self.weights.index].to_numpy() @ self.weights.to_numpy(), dtype=float)


class Planted:
    """y = 2·x0 − 1.5·x1 + noise (in return units), 5 pure-noise features, and a price
    path whose return over the bar after t is exactly y[t], so a strategy trading the
    prediction sees the signal."""

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        index = pd.date_range("2025-01-01", periods=N_ROWS + 1, freq="h", tz="UTC", name="ts")
        X = pd.DataFrame(rng.normal(size=(N_ROWS, len(FEATURES))), columns=FEATURES)
        X.index = index[:N_ROWS]
        signal = 2.0 * X["x0"] - 1.5 * X["x1"] + rng.normal(size=N_ROWS)
        self.X = X
        self.y = (0.002 * signal).rename("fwd_return")
        self.close = pd.Series(100.0 * np.cumprod(np.r_[1.0, 1.0 + self.y.to_numpy()]), index)
        self.models = {
            name: MODEL_CLASSES[name](**params).fit(X.iloc[:N_TRAIN], self.y.iloc[:N_TRAIN])
            for name, params in MODEL_PARAMS.items()
        }

    @property
    def X_test(self) -> pd.DataFrame:
        return self.X.iloc[N_TRAIN:]

    @property
    def y_test(self) -> pd.Series:
        return self.y.iloc[N_TRAIN:]


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


def _check_table(result: ImportanceResult, k: int) -> None:
    table = result.table
    assert result.ok
    assert table.index.name == "feature"
    assert list(table.columns[:3]) == ["importance", "normalised", "rank"]
    assert list(table["rank"]) == list(range(1, k + 1))
    assert np.abs(table["normalised"]).sum() == pytest.approx(1.0, abs=1e-12)
    assert table["importance"].is_monotonic_decreasing
    assert not table[["importance", "normalised", "rank"]].isna().any().any()


# --------------------------------------------------------------------------- #
# Exact Shapley values of a tree ensemble by brute force over every feature subset
# (v(S) = cover-weighted expectation over the features not in S, as in TreeSHAP).
# Independent of both LightGBM's and XGBoost's C++ code and of shap.
# --------------------------------------------------------------------------- #
Node = dict[str, Any]  # leaf: value, cover; split: feature, threshold, strict, left, right


def _lightgbm_trees(model: LightGBMModel) -> list[Node]:
    def convert(node: dict[str, Any]) -> Node:
        if "leaf_value" in node:
            return {"value": node["leaf_value"], "cover": node.get("leaf_count", 1)}
        assert node["decision_type"] == "<="
        return {
            "feature": node["split_feature"],
            "threshold": node["threshold"],
            "strict": False,
            "left": convert(node["left_child"]),
            "right": convert(node["right_child"]),
            "cover": node["internal_count"],
        }

    return [convert(t["tree_structure"]) for t in model.booster.dump_model()["tree_info"]]


def _xgboost_trees(model: XGBoostModel) -> list[Node]:
    position = {name: i for i, name in enumerate(model.feature_names)}

    def convert(node: dict[str, Any]) -> Node:
        if "leaf" in node:
            return {"value": node["leaf"], "cover": node["cover"]}
        children = {child["nodeid"]: child for child in node["children"]}
        return {
            "feature": position[node["split"]],
            "threshold": np.float32(node["split_condition"]),
            "strict": True,  # XGBoost goes "yes" when x < threshold, in float32
            "left": convert(children[node["yes"]]),
            "right": convert(children[node["no"]]),
            "cover": node["cover"],
        }

    dumps = model.booster.get_dump(dump_format="json", with_stats=True)
    return [convert(json.loads(d)) for d in dumps]


def _expectation(node: Node, x: np.ndarray, known: frozenset[int]) -> float:
    if "value" in node:
        return float(node["value"])
    left, right = node["left"], node["right"]
    if node["feature"] in known:
        v = x[node["feature"]]
        goes_left = v < node["threshold"] if node["strict"] else v <= node["threshold"]
        return _expectation(left if goes_left else right, x, known)
    cl, cr = float(left["cover"]), float(right["cover"])
    return (cl * _expectation(left, x, known) + cr * _expectation(right, x, known)) / (cl + cr)


def _exact_shapley(trees: list[Node], x: np.ndarray, base: float) -> tuple[np.ndarray, float]:
    k = len(x)
    value = {
        frozenset(s): base + sum(_expectation(t, x, frozenset(s)) for t in trees)
        for size in range(k + 1)
        for s in combinations(range(k), size)
    }
    phi = np.zeros(k)
    for j in range(k):
        others = [i for i in range(k) if i != j]
        for size in range(k):
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            for s in combinations(others, size):
                phi[j] += weight * (value[frozenset(s) | {j}] - value[frozenset(s)])
    return phi, value[frozenset()]


@pytest.mark.parametrize("model_type", ["lightgbm", "xgboost"])
def test_native_contributions_are_exact_shapley_values(model_type: str) -> None:
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(600, 4)), columns=["a", "b", "c", "d"])
    y = pd.Series(0.003 * X["a"] * (1 + X["b"]) - 0.002 * X["c"] + 0.001 * rng.normal(size=600))
    if model_type == "lightgbm":
        model: Any = LightGBMModel(
            num_boost_round=15, num_leaves=6, min_data_in_leaf=20, learning_rate=0.2
        ).fit(X, y)
        trees, base = _lightgbm_trees(model), 0.0
    else:
        model = XGBoostModel(num_boost_round=15, max_depth=3, eta=0.2, min_child_weight=2.0)
        model.fit(X, y)
        config = json.loads(model.booster.save_config())
        base = float(config["learner"]["learner_model_param"]["base_score"].strip("[]"))
        trees = _xgboost_trees(model)
    rows = X.iloc[:12]
    if model_type == "xgboost":  # XGBoost compares in float32
        rows = rows.astype(np.float32).astype(np.float64)
    # min_rows=1: a dozen rows are enough for this exactness check
    result = shap_importance(model, rows, min_rows=1, return_values=True)
    assert result.values is not None
    for i in range(len(rows)):
        phi, phi0 = _exact_shapley(trees, rows.to_numpy()[i], base)
        np.testing.assert_allclose(result.values.to_numpy()[i], phi, rtol=0, atol=1e-6)
        assert result.details["base_value"] == pytest.approx(phi0, abs=1e-6)


@pytest.mark.parametrize("model_type", ["lightgbm", "xgboost"])
def test_native_shap_matches_tree_explainer_and_is_additive(
    planted: Planted, model_type: str
) -> None:
    model = planted.models[model_type]
    X = planted.X_test
    result = shap_importance(model, X, return_values=True)
    assert result.details["explainer"] == f"{model_type}_pred_contrib" + (
        "s" if model_type == "xgboost" else ""
    )
    assert result.values is not None
    values = result.values.to_numpy()
    explainer = shap.TreeExplainer(model.booster)
    reference = explainer.shap_values(X.to_numpy(dtype=float))
    np.testing.assert_allclose(values, reference, rtol=0, atol=1e-6)
    expected = float(np.ravel(explainer.expected_value)[0])
    assert result.details["base_value"] == pytest.approx(expected, abs=1e-6)
    # efficiency: each row sums to the prediction minus the base value
    np.testing.assert_allclose(
        values.sum(axis=1), model.predict(X) - result.details["base_value"], rtol=0, atol=1e-6
    )
    # the table is mean |SHAP| of those values
    np.testing.assert_allclose(
        result.table["importance"].to_numpy(),
        np.abs(result.values[result.table.index]).mean().to_numpy(),
        rtol=1e-12,
    )


@pytest.mark.parametrize("model_type", ["lightgbm", "xgboost"])
def test_shap_ranks_the_planted_signal_first(planted: Planted, model_type: str) -> None:
    result = shap_importance(planted.models[model_type], planted.X_test)
    _check_table(result, len(FEATURES))
    assert result.ranking[:2] == SIGNAL
    assert set(result.ranking[2:]) == set(NOISE)
    assert result.table.loc["x0", "mean_shap"] == pytest.approx(0.0, abs=1e-3)
    assert result.n_rows == len(planted.X_test)
    assert result.window == (planted.X_test.index[0], planted.X_test.index[-1])


@pytest.mark.parametrize("model_type", ["lightgbm", "xgboost"])
def test_permutation_ranks_the_planted_signal_first(planted: Planted, model_type: str) -> None:
    result = permutation_importance(
        planted.models[model_type], planted.X_test, planted.y_test, planted.close, n_repeats=3
    )
    _check_table(result, len(FEATURES))
    assert result.method == "permutation"
    assert result.ranking[:2] == SIGNAL
    assert set(result.ranking[2:]) == set(NOISE)
    table = result.table
    assert result.details["baseline_sharpe"] > 10  # the strategy sees the signal
    # shuffling the signal destroys most of the Sharpe and raises the error
    assert table.loc["x0", "importance"] > 0.5 * result.details["baseline_sharpe"]
    assert (table.loc[SIGNAL, "mse_increase"] > 0).all()
    assert table.loc[NOISE, "importance"].abs().max() < 0.2 * table.loc["x1", "importance"]
    assert list(table.columns) == [
        "importance",
        "normalised",
        "rank",
        "sharpe_drop_std",
        "mse_increase",
        "mse_increase_std",
    ]
    assert (table["sharpe_drop_std"] >= 0).all()


def test_permutation_is_seeded_and_uses_the_most_recent_block(planted: Planted) -> None:
    model = planted.models["lightgbm"]
    kwargs: dict[str, Any] = {"n_repeats": 2, "max_rows": 400}
    a = permutation_importance(model, planted.X, planted.y, planted.close, seed=3, **kwargs)
    b = permutation_importance(model, planted.X, planted.y, planted.close, seed=3, **kwargs)
    pd.testing.assert_frame_equal(a.table, b.table)
    c = permutation_importance(model, planted.X, planted.y, planted.close, seed=4, **kwargs)
    assert not a.table["importance"].equals(c.table.loc[a.table.index, "importance"])
    assert a.n_rows == 400
    assert a.window == (planted.X.index[-400], planted.X.index[-1])
    # a feature's shuffles do not depend on which other features are ranked or skipped
    # (a model that ignores x6, so that freezing x6 leaves its predictions unchanged)
    linear = LinearModel({"x0": 2.0, "x1": -1.5})
    e = permutation_importance(linear, planted.X, planted.y, planted.close, seed=3, **kwargs)
    d = permutation_importance(
        linear, planted.X.assign(x6=1.0), planted.y, planted.close, seed=3, **kwargs
    )
    assert d.skipped == {"x6": CONSTANT_REASON}
    assert "x6" in e.table.index
    pd.testing.assert_frame_equal(
        d.table.loc[["x0", "x1"]], e.table.loc[["x0", "x1"]], check_exact=False, rtol=1e-12
    )


def test_shap_samples_large_windows_with_a_seed(planted: Planted) -> None:
    model = planted.models["lightgbm"]
    a = shap_importance(model, planted.X, max_rows=500, seed=1, return_values=True)
    b = shap_importance(model, planted.X, max_rows=500, seed=1, return_values=True)
    c = shap_importance(model, planted.X, max_rows=500, seed=2, return_values=True)
    assert a.n_rows == 500
    assert a.values is not None and b.values is not None and c.values is not None
    assert a.values.index.equals(b.values.index)
    assert a.values.index.is_monotonic_increasing
    assert a.values.index.isin(planted.X.index).all()
    assert not a.values.index.equals(c.values.index)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.window == (a.values.index[0], a.values.index[-1])


def test_model_agnostic_shap_through_the_shap_package(planted: Planted) -> None:
    weights = dict.fromkeys(FEATURES, 0.0) | {"x0": 2.0, "x1": -1.5, "x2": 0.1}
    model = LinearModel(weights)
    X = planted.X_test
    np.random.seed(123)
    expected_draw = np.random.random()
    np.random.seed(123)
    result = shap_importance(model, X, agnostic_max_rows=40, return_values=True)
    # the caller's global random state is left alone
    assert np.random.random() == expected_draw
    again = shap_importance(model, X, agnostic_max_rows=40, return_values=True)
    pd.testing.assert_frame_equal(result.table, again.table)
    assert result.details["explainer"] == "shap_permutation"
    assert result.n_rows == 40
    assert result.values is not None
    values = result.values
    # efficiency holds exactly, and for a linear model the values are exact:
    # φ_j = w_j (x_j − mean of the background), i.e. φ_j / w_j − x_j is a constant
    rows = X.loc[values.index]
    np.testing.assert_allclose(
        values.sum(axis=1), model.predict(rows) - result.details["base_value"], atol=1e-12
    )
    for name in ("x0", "x1", "x2"):
        offset = values[name] / weights[name] - rows[name]
        assert offset.std() < 1e-9
    assert (values[NOISE[1:]] == 0).all().all()
    assert result.ranking[:3] == ["x0", "x1", "x2"]
    _check_table(result, len(FEATURES))


def test_correlation_matches_scipy_spearman(planted: Planted) -> None:
    X = planted.X.copy()
    X["x5"] = X["x5"].round(1)  # ties get their average rank
    X["x6"] = (X["x0"] > 0).astype(float)  # many ties
    predictions = planted.models["lightgbm"].predict(planted.X)
    result = correlation_importance(X, planted.y, predictions)
    _check_table(result, len(FEATURES))
    for name in FEATURES:
        rho_label = scipy.stats.spearmanr(X[name], planted.y).statistic
        rho_pred = scipy.stats.spearmanr(X[name], predictions).statistic
        assert abs(result.table.loc[name, "spearman_label"] - rho_label) < 1e-12
        assert abs(result.table.loc[name, "spearman_prediction"] - rho_pred) < 1e-12
        assert abs(result.table.loc[name, "importance"] - abs(rho_label)) < 1e-12
    assert result.ranking[0] in {"x0", "x6"}


def test_correlation_uses_pairwise_complete_rows(planted: Planted) -> None:
    X = planted.X.copy()
    X.loc[X.index[::7], "x0"] = np.nan
    y = planted.y.copy()
    y.iloc[-5:] = np.nan
    result = correlation_importance(X, y)
    assert result.n_rows == len(X) - 5
    keep = X["x0"].notna() & y.notna()
    expected = scipy.stats.spearmanr(X.loc[keep, "x0"], y[keep]).statistic
    assert abs(result.table.loc["x0", "spearman_label"] - expected) < 1e-12
    assert result.table["spearman_prediction"].isna().all()  # no predictions given


# --------------------------------------------------------------------------- #
# bad input
# --------------------------------------------------------------------------- #
def test_constant_and_empty_features_are_skipped_with_a_reason(planted: Planted) -> None:
    X = planted.X_test.assign(x5=3.0, x6=np.nan)
    model = planted.models["lightgbm"]
    expected = {"x5": CONSTANT_REASON, "x6": NO_VALUES_REASON}
    results = [
        shap_importance(model, X),
        permutation_importance(model, X, planted.y_test, planted.close, n_repeats=1),
        correlation_importance(X, planted.y_test),
    ]
    for result in results:
        assert result.skipped == expected, result.method
        assert "x5" not in result.table.index
        assert "x6" not in result.table.index
        _check_table(result, len(FEATURES) - 2)


@pytest.mark.parametrize("method", ["shap", "permutation", "correlation"])
def test_too_few_rows_gives_a_skipped_result(planted: Planted, method: str) -> None:
    X, y = planted.X_test.iloc[:150], planted.y_test.iloc[:150]
    model = planted.models["lightgbm"]
    if method == "shap":
        result = shap_importance(model, X)
    elif method == "permutation":
        result = permutation_importance(model, X, y, planted.close)
    else:
        result = correlation_importance(X, y)
    assert result.status == STATUS_SKIPPED
    assert not result.ok
    assert result.reason == "only 150 rows in the window, at least 200 are needed"
    assert result.table.empty
    assert list(result.table.columns[:3]) == ["importance", "normalised", "rank"]
    assert result.n_rows == 150
    # the threshold is configurable
    if method == "correlation":
        assert correlation_importance(X, y, min_rows=100).ok


def test_a_model_without_an_explainer_gives_a_skipped_result(planted: Planted) -> None:
    result = shap_importance(object(), planted.X_test)
    assert result.status == STATUS_SKIPPED
    assert result.reason is not None
    assert "no SHAP explainer for object" in result.reason
    assert result.table.empty


def test_all_zero_importance_normalises_to_zero_and_ranks_by_name(planted: Planted) -> None:
    class Flat:
        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return np.zeros(len(X))

    result = permutation_importance(
        Flat(), planted.X_test, planted.y_test, planted.close, n_repeats=2
    )
    assert result.ok
    assert (result.table["importance"] == 0).all()
    assert (result.table["normalised"] == 0).all()
    assert result.ranking == sorted(FEATURES)
    assert list(result.table["rank"]) == list(range(1, len(FEATURES) + 1))


def test_wrong_inputs_raise(planted: Planted) -> None:
    model = planted.models["lightgbm"]
    X, y = planted.X_test, planted.y_test
    with pytest.raises(ValueError, match="same index"):
        permutation_importance(model, X, y.iloc[1:], planted.close)
    with pytest.raises(ValueError, match="same index"):
        correlation_importance(X, y.reset_index(drop=True))
    with pytest.raises(ValueError, match="feature columns differ"):
        shap_importance(model, X[list(reversed(FEATURES))])
    with pytest.raises(ValueError, match="duplicate"):
        correlation_importance(pd.concat([X, X[["x0"]]], axis=1), y)
    with pytest.raises(ValueError, match="max_rows"):
        shap_importance(model, X, max_rows=10)
    with pytest.raises(ValueError, match="n_repeats"):
        permutation_importance(model, X, y, planted.close, n_repeats=0)
    with pytest.raises(ValueError, match="close has no price"):
        permutation_importance(model, X, y, planted.close.iloc[:10], n_repeats=1)
