"""XGBoost regression adapter; artifacts are XGBoost's own Universal Binary JSON format."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brain_lib.models._base import BoosterModel, check_feature_columns, register_model_type

__all__ = ["DEFAULT_PARAMS", "XGBoostModel"]

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "reg:pseudohubererror",  # smooth huber: robust to fat-tailed returns
    "huber_slope": 0.005,  # transition, in return units (0.5% per bar), as LightGBM's alpha
    "num_boost_round": 200,
    "eta": 0.03,
    "max_depth": 4,  # at most 16 leaves, as LightGBM's num_leaves=15
    # a leaf needs this much hessian; pseudo-Huber weighs a row 1 / (1 + (r/δ)²)^1.5,
    # about 0.6 for typical hourly returns, so ≈ 170 rows (LightGBM: min_data_in_leaf=200)
    "min_child_weight": 100.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "tree_method": "hist",
    "nthread": 2,
    "seed": 42,
    "verbosity": 0,
}


class XGBoostModel(BoosterModel):
    """Gradient-boosted trees (XGBoost) predicting the forward return.

    Uses XGBoost's native ``xgboost.train`` (its parameter names; ``num_boost_round``
    is the number of trees). Training is deterministic for a given ``seed``: the
    ``hist`` tree method on the CPU with a fixed ``nthread`` gives the same trees on
    every run. The fitted booster is saved with ``Booster.save_model`` as Universal
    Binary JSON (``model.ubj``, loaded with ``xgboost.Booster(model_file=...)``); the
    file holds the trees and the feature names, no code — no pickle.
    """

    model_type = "xgboost"
    artifact_name = "model.ubj"
    default_params = DEFAULT_PARAMS

    def fit(self, X: pd.DataFrame, y: pd.Series) -> XGBoostModel:
        import xgboost as xgb

        params = dict(self._params)
        rounds = int(params.pop("num_boost_round"))
        data = xgb.DMatrix(
            X.to_numpy(dtype=float),
            label=y.to_numpy(dtype=float),
            feature_names=[str(c) for c in X.columns],
            nthread=int(params.get("nthread", 2)),
        )
        self._booster = xgb.train(params, data, num_boost_round=rounds)
        self.feature_names = list(X.columns)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        booster = self.booster
        check_feature_columns(self.feature_names, X)
        out = booster.inplace_predict(X.to_numpy(dtype=float), validate_features=False)
        return np.asarray(out, dtype=float)

    def save(self, path: Path) -> None:
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path, params: Mapping[str, Any] | None = None) -> XGBoostModel:
        import xgboost as xgb

        model = cls(**dict(params or {}))
        booster = xgb.Booster(model_file=str(path))
        # thread count is a run-time setting, not part of the saved model
        booster.set_param({"nthread": int(model._params.get("nthread", 2))})
        model._booster = booster
        model.feature_names = list(booster.feature_names or [])
        return model


register_model_type("xgboost", XGBoostModel)
