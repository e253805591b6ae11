"""LightGBM regression adapter; artifacts are LightGBM's own model text format."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brain_lib.models._base import BoosterModel, check_feature_columns, register_model_type

__all__ = ["DEFAULT_PARAMS", "LightGBMModel"]

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "huber",  # robust to the fat tails of crypto returns
    "alpha": 0.005,  # huber transition, in return units (0.5% per bar)
    "num_boost_round": 200,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 200,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "num_threads": 2,
    "seed": 42,
    "deterministic": True,
    "verbosity": -1,
}


class LightGBMModel(BoosterModel):
    """Gradient-boosted trees (LightGBM) predicting the forward return.

    Uses LightGBM's native ``lightgbm.train`` (its parameter names; ``num_boost_round``
    is the number of trees). The fitted booster is saved with ``Booster.save_model``
    (plain text, loaded with
    ``lightgbm.Booster(model_file=...)``) — no pickle.
    """

    model_type = "lightgbm"
    artifact_name = "model.txt"
    default_params = DEFAULT_PARAMS

    def fit(self, X: pd.DataFrame, y: pd.Series) -> LightGBMModel:
        import lightgbm as lgb

        params = dict(self._params)
        rounds = int(params.pop("num_boost_round"))
        data = lgb.Dataset(
            X.to_numpy(dtype=float),
            label=y.to_numpy(dtype=float),
            feature_name=list(X.columns),
            free_raw_data=True,
        )
        self._booster = lgb.train(params, data, num_boost_round=rounds)
        self.feature_names = list(X.columns)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_feature_columns(self.feature_names, X)
        return np.asarray(self.booster.predict(X.to_numpy(dtype=float)), dtype=float)

    def save(self, path: Path) -> None:
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path, params: Mapping[str, Any] | None = None) -> LightGBMModel:
        import lightgbm as lgb

        model = cls(**dict(params or {}))
        model._booster = lgb.Booster(model_file=str(path))
        model.feature_names = list(model._booster.feature_name())
        return model


register_model_type("lightgbm", LightGBMModel)
