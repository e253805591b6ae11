"""The deep model types: LSTM with attention, Transformer encoder, 1-D CNN.

Each is a :class:`~brain_lib.models._sequence.SequenceModel` (the shared windows,
standardisation, early stopping, safetensors artifact) with its own network
(:mod:`brain_lib.models._networks`) and architecture defaults. They are registered
only when torch and safetensors are installed (:data:`UNAVAILABLE_MODEL_TYPES` says why
not otherwise); neither is imported until a model is fitted or loaded.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

from brain_lib.models._base import register_model_type
from brain_lib.models._sequence import SequenceModel

__all__ = [
    "DEEP_MODEL_TYPES",
    "UNAVAILABLE_MODEL_TYPES",
    "CNNModel",
    "LSTMModel",
    "TransformerModel",
]


class LSTMModel(SequenceModel):
    """An LSTM with additive attention over the window
    (:class:`~brain_lib.models._networks.LSTMAttention`)."""

    model_type = "lstm"
    network_params: ClassVar[dict[str, Any]] = {"hidden": 32, "layers": 1, "dropout": 0.1}

    def _network(self, n_inputs: int) -> Any:
        from brain_lib.models._networks import LSTMAttention

        p = self._params
        return LSTMAttention(n_inputs, int(p["hidden"]), int(p["layers"]), float(p["dropout"]))


class TransformerModel(SequenceModel):
    """A small Transformer encoder over the window
    (:class:`~brain_lib.models._networks.TransformerEncoderNet`)."""

    model_type = "transformer"
    network_params: ClassVar[dict[str, Any]] = {
        "d_model": 32,
        "heads": 2,
        "layers": 2,
        "dropout": 0.1,
        "learning_rate": 5e-4,
    }

    def _network(self, n_inputs: int) -> Any:
        from brain_lib.models._networks import TransformerEncoderNet

        p = self._params
        return TransformerEncoderNet(
            n_inputs,
            self.window,
            int(p["d_model"]),
            int(p["heads"]),
            int(p["layers"]),
            float(p["dropout"]),
        )


class CNNModel(SequenceModel):
    """Dilated causal temporal convolutions over the window
    (:class:`~brain_lib.models._networks.TemporalCNN`)."""

    model_type = "cnn"
    network_params: ClassVar[dict[str, Any]] = {
        "channels": 32,
        "kernel_size": 3,
        "layers": 3,
        "dropout": 0.1,
    }

    def _network(self, n_inputs: int) -> Any:
        from brain_lib.models._networks import TemporalCNN

        p = self._params
        return TemporalCNN(
            n_inputs,
            int(p["channels"]),
            int(p["kernel_size"]),
            int(p["layers"]),
            float(p["dropout"]),
        )


DEEP_MODEL_TYPES: dict[str, type[SequenceModel]] = {
    "lstm": LSTMModel,
    "transformer": TransformerModel,
    "cnn": CNNModel,
}

UNAVAILABLE_MODEL_TYPES: dict[str, str] = {}
"""Model types Brain knows but cannot train here, with the reason."""

_missing = [name for name in ("torch", "safetensors") if importlib.util.find_spec(name) is None]
for _name, _cls in DEEP_MODEL_TYPES.items():
    if _missing:
        UNAVAILABLE_MODEL_TYPES[_name] = f"needs {' and '.join(_missing)}, which is not installed"
    else:
        register_model_type(_name, _cls)
