"""Model adapters behind one small protocol (:class:`Model`).

Every model type Brain trains implements ``fit``, ``predict``, ``save`` and ``load``
with native, non-executable artifact formats (never pickle). ``get_model(name)``
builds an adapter by its registered ``model_type`` name.
"""

from __future__ import annotations

from brain_lib.models._base import MODEL_TYPES, Model, get_model, register_model_type
from brain_lib.models._lightgbm import LightGBMModel
from brain_lib.models._xgboost import XGBoostModel

__all__ = [
    "MODEL_TYPES",
    "LightGBMModel",
    "Model",
    "XGBoostModel",
    "get_model",
    "register_model_type",
]
