"""The model protocol and the registry of model types."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from brain_lib.errors import ConfigError

__all__ = [
    "MODEL_TYPES",
    "BoosterModel",
    "Model",
    "check_feature_columns",
    "get_model",
    "installed_model_types",
    "model_type_error",
    "register_model_type",
]


@runtime_checkable
class Model(Protocol):
    """What every model type provides.

    ``model_type`` names the adapter (``"lightgbm"``); ``params`` are the
    hyperparameters recorded in the manifest; ``artifact_name`` is the file
    ``save`` writes inside a version folder.
    """

    model_type: str
    artifact_name: str

    @property
    def params(self) -> dict[str, Any]: ...

    def fit(self, X: pd.DataFrame, y: pd.Series) -> Model: ...

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path, params: Mapping[str, Any] | None = None) -> Model: ...


MODEL_TYPES: dict[str, Callable[..., Model]] = {}


def check_feature_columns(expected: list[str], X: pd.DataFrame) -> None:
    """Refuse a frame whose columns are not exactly the features a model was trained on."""
    if list(X.columns) != list(expected):
        raise ValueError(
            "feature columns differ from the ones the model was trained on: "
            f"expected {list(expected)}, got {list(X.columns)}"
        )


def register_model_type(name: str, factory: Callable[..., Model]) -> None:
    """Make ``factory`` available as ``get_model(name)``."""
    MODEL_TYPES[name] = factory


class BoosterModel:
    """What the gradient-boosting adapters share: hyperparameters over the class's
    ``default_params``, the fitted booster and the feature names it was fit on."""

    default_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self._params = {**self.default_params, **params}
        self._booster: Any = None
        self.feature_names: list[str] = []

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def booster(self) -> Any:
        if self._booster is None:
            raise RuntimeError("the model is not fitted")
        return self._booster


def installed_model_types() -> list[str]:
    """The registered model types: the tree models first, then the sequence models,
    each group by name."""
    from brain_lib.models._sequence import is_sequence_model_type

    return sorted(MODEL_TYPES, key=lambda n: (is_sequence_model_type(MODEL_TYPES[n]), n))


def model_type_error(names: list[str]) -> str:
    """One line naming the model types in ``names`` that cannot be built, and why:
    unknown, or known but not installed here (the deep types without torch)."""
    from brain_lib.models._deep import UNAVAILABLE_MODEL_TYPES

    parts = []
    unknown = [n for n in names if n not in MODEL_TYPES and n not in UNAVAILABLE_MODEL_TYPES]
    if unknown:
        parts.append(f"unknown model type(s) {', '.join(unknown)}")
    parts += [
        f"model type {n} is not installed ({UNAVAILABLE_MODEL_TYPES[n]})"
        for n in names
        if n not in MODEL_TYPES and n in UNAVAILABLE_MODEL_TYPES
    ]
    installed = ", ".join(installed_model_types()) or "none"
    return f"{'; '.join(parts)} (installed: {installed})"


def get_model(name: str, **params: Any) -> Model:
    """A fresh, unfitted adapter of type ``name`` with ``params`` over its defaults."""
    try:
        factory = MODEL_TYPES[name]
    except KeyError:
        raise ConfigError(model_type_error([name])) from None
    return factory(**params)
