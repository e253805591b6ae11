"""Model adapters behind one small protocol (:class:`Model`).

Every model type Brain trains implements ``fit``, ``predict``, ``save`` and ``load``
with native, non-executable artifact formats (never pickle). ``get_model(name)``
builds an adapter by its registered ``model_type`` name.

The gradient-boosted trees (``lightgbm``, ``xgboost``) read one feature row per
prediction; the deep types (``lstm``, ``transformer``, ``cnn``) are sequence models
(:class:`SequenceModel`) that read the window of the last bars up to each row
(:mod:`brain_lib.models._sequence`). The deep types need torch and safetensors; torch
is imported only when one is fitted or loaded.
"""

from __future__ import annotations

from brain_lib.models._base import MODEL_TYPES, Model, get_model, register_model_type
from brain_lib.models._deep import (
    DEEP_MODEL_TYPES,
    UNAVAILABLE_MODEL_TYPES,
    CNNModel,
    LSTMModel,
    TransformerModel,
)
from brain_lib.models._lightgbm import LightGBMModel
from brain_lib.models._sequence import SequenceModel, is_sequence_model_type
from brain_lib.models._xgboost import XGBoostModel

__all__ = [
    "DEEP_MODEL_TYPES",
    "MODEL_TYPES",
    "UNAVAILABLE_MODEL_TYPES",
    "CNNModel",
    "LSTMModel",
    "LightGBMModel",
    "Model",
    "SequenceModel",
    "TransformerModel",
    "XGBoostModel",
    "get_model",
    "is_sequence_model_type",
    "register_model_type",
]
