r"""The sequence pipeline the deep model types share (LSTM, Transformer, 1-D CNN).

A :class:`SequenceModel` turns the feature rows it is given into windows of the last
``window`` bars, standardises them with statistics of its own training rows, trains a
small PyTorch network with early stopping on a purged validation tail, and saves the
network's ``state_dict`` with ``safetensors`` (no pickle). The networks themselves are in
:mod:`brain_lib.models._networks`; torch is imported only when a model is fitted, used
or loaded, so importing :mod:`brain_lib.models` stays cheap.

The pipeline, in order (exact rules; ``X`` rows are bars in strictly increasing time):

* **Bar positions.** Each row sits at position
  :math:`p_i = (t_i - t_0) / \Delta` on the bar grid, :math:`\Delta` the most common
  spacing of the training index (stored with the artifact). A frame without a
  ``DatetimeIndex`` is taken as consecutive bars (:math:`p_i = i`).
* **Standardisation.** :math:`z_{ij} = \mathrm{clip}((x_{ij} - \mu_j) / \sigma_j, \pm c)`
  with :math:`\mu_j, \sigma_j` the mean and population standard deviation of feature
  :math:`j` over the rows the network is trained on (the training part, without the
  validation tail and its purge), NaN ignored; :math:`\sigma_j = 1` when it is 0 or
  undefined, :math:`\mu_j = 0` when undefined. A missing value becomes 0 (the mean).
  The target is standardised the same way (:math:`\mu_y, \sigma_y`) and predictions are
  mapped back: :math:`\hat y = \mu_y + \sigma_y f(\cdot)`. All of :math:`\mu, \sigma,
  \mu_y, \sigma_y, \Delta` are stored in the artifact.
* **Windows.** The input of row :math:`i` is the :math:`N \times (k + 1)` block of the
  bars at positions :math:`p_i - N + 1, \dots, p_i`: the standardised features and a
  last channel that is 1 where the bar is a row of ``X`` and 0 where it is not (a hole
  of the grid, or a bar before ``X`` starts), whose features are 0. No row after
  :math:`t_i` is ever read, so the prediction of a bar does not change when later bars
  are added, and the first :math:`N - 1` rows of a frame see fewer real bars: pass the
  :math:`N - 1` bars before the first one you need predicted.
* **Validation tail.** The last ``validation_fraction`` of the rows (at least one row)
  is held out and cut off like a walk-forward test fold
  (:class:`brain_lib.validation.PurgedWalkForward` with one split): the ``purge`` rows
  before it (their labels reach into it) and a further ``embargo`` rows are dropped from
  training. The pipeline sets ``purge`` and ``embargo`` to the training config's label
  horizon and embargo. Training stops after ``patience`` epochs without a lower
  validation loss (or after ``epochs``); the weights of the best epoch are kept. With
  ``validation_fraction = 0`` (or too few rows) it trains for ``epochs`` epochs.
* **Loss.** Huber with threshold ``huber_delta`` on the standardised target (robust to
  fat tails, as the boosters' Huber objectives), AdamW, gradient norm clipped at 1.
* **Determinism.** Weights, dropout and the batch order come from ``seed``, in a forked
  random state (the caller's torch random state is left alone); torch runs on
  ``num_threads`` threads while fitting and predicting. On the CPU the same inputs and
  parameters give the same weights, predictions and artifact bytes. On CUDA
  (``device="auto"`` picks it when available) results may differ in the last digits.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from brain_lib.models._base import check_feature_columns

__all__ = [
    "ARTIFACT_FORMAT",
    "RUNTIME_PARAMS",
    "SEQUENCE_DEFAULTS",
    "SequenceModel",
    "is_sequence_model_type",
]

ARTIFACT_FORMAT = 1
"""Version of the layout of a sequence artifact (tensors + the ``brain`` metadata)."""

SEQUENCE_DEFAULTS: dict[str, Any] = {
    "window": 24,  # bars per input window (one day of hourly bars)
    "epochs": 30,
    "patience": 5,  # epochs without a lower validation loss before stopping
    "batch_size": 256,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "validation_fraction": 0.15,
    "purge": 8,  # the pipeline sets the label horizon (DEFAULT_LABEL_HORIZON is 8)
    "embargo": 24,  # the pipeline sets the walk-forward's embargo
    "huber_delta": 1.0,  # in standard deviations of the target
    "clip": 5.0,  # standardised inputs are clipped to ±clip
    "seed": 42,
    "device": "auto",  # "auto": CUDA when available, else the CPU
    "num_threads": 2,
}

RUNTIME_PARAMS = frozenset({"device", "num_threads"})
"""Parameters that say where a model runs, not what it is: a loaded artifact takes them
from the caller; every other parameter comes from the artifact."""

_META_KEY = "brain"
_MEAN = "brain.feature_mean"
_STD = "brain.feature_std"
_NET = "net."
_PREDICT_BATCH = 512
"""Rows per prediction batch. Every batch is filled up to this size (the last one with
copies of its last window), so a row's prediction is computed with the same kernels
whatever follows it: float32 kernels give results that differ in the last bits with
the batch shape, and a bar's prediction must not change when later bars arrive."""


def is_sequence_model_type(factory: object) -> bool:
    """Whether a registered model-type factory builds a :class:`SequenceModel`."""
    return isinstance(factory, type) and issubclass(factory, SequenceModel)


def _check_params(params: Mapping[str, Any]) -> None:
    def bad(name: str, rule: str) -> ValueError:
        return ValueError(f"invalid hyperparameter {name}={params.get(name)!r}: {rule}")

    for name in ("window", "epochs", "patience", "batch_size", "num_threads"):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(name, "must be an int >= 1")
    for name in ("purge", "embargo", "seed"):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(name, "must be an int >= 0")
    fraction = params["validation_fraction"]
    if not isinstance(fraction, int | float) or not 0.0 <= fraction < 0.5:
        raise bad("validation_fraction", "must be a number in [0, 0.5)")
    for name in ("learning_rate", "huber_delta", "clip"):
        value = params[name]
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise bad(name, "must be a finite number > 0")
    if params["device"] not in ("auto", "cpu") and not str(params["device"]).startswith("cuda"):
        raise bad("device", "must be 'auto', 'cpu' or 'cuda[:N]'")


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` threads inside the block; restore the caller's count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bar_step(index: pd.Index) -> float | None:
    """The most common spacing of a time index, in seconds (None: not a time index)."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return None
    diffs = np.diff(index.asi8)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        return None
    values, counts = np.unique(diffs, return_counts=True)
    return float(values[np.argmax(counts)]) / 1e9


def _full_batch(starts: np.ndarray) -> np.ndarray:
    """``starts`` filled up to :data:`_PREDICT_BATCH` with copies of its last entry."""
    missing = _PREDICT_BATCH - len(starts)
    return np.concatenate([starts, np.repeat(starts[-1:], missing)]) if missing > 0 else starts


class SequenceModel:
    """A PyTorch network on windows of the last ``window`` bars (see the module notes).

    Subclasses set ``model_type``, ``network_params`` (the architecture's defaults) and
    :meth:`_network`. The artifact is one ``.safetensors`` file: the network's
    ``state_dict`` under ``net.*``, the feature means and standard deviations, and a
    JSON config in the file's metadata (model type, parameters, feature names, target
    scale, bar spacing, training summary). ``safetensors`` holds tensors and strings
    only: loading runs no code.
    """

    model_type: str = ""
    artifact_name: str = "model.safetensors"
    network_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        merged = {**SEQUENCE_DEFAULTS, **self.network_params, **params}
        unknown = sorted(set(merged) - set(SEQUENCE_DEFAULTS) - set(self.network_params))
        if unknown:
            known = ", ".join(sorted({*SEQUENCE_DEFAULTS, *self.network_params}))
            raise ValueError(
                f"unknown hyperparameter(s) for {self.model_type}: {', '.join(unknown)} "
                f"(known: {known})"
            )
        _check_params(merged)
        self._params = merged
        self._net: Any = None
        self.feature_names: list[str] = []
        self._mean = np.zeros(0)
        self._std = np.ones(0)
        self._y_mean = 0.0
        self._y_std = 1.0
        self._step: float | None = None
        self.training_summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ protocol
    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def window(self) -> int:
        return int(self._params["window"])

    @property
    def context_rows(self) -> int:
        """Rows before the first one to predict that its window reads: a caller that
        has them (the walk-forward: the bars before a test fold) passes them along and
        drops their predictions, so a fold's first bars get full windows."""
        return self.window - 1

    @property
    def network(self) -> Any:
        if self._net is None:
            raise RuntimeError("the model is not fitted")
        return self._net

    def _network(self, n_inputs: int) -> Any:
        """A fresh, untrained network for inputs of ``n_inputs`` channels."""
        raise NotImplementedError

    def _device(self) -> Any:
        import torch

        wanted = str(self._params["device"])
        if wanted == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(wanted)

    def fit(self, X: pd.DataFrame, y: pd.Series) -> SequenceModel:
        """Train on ``X`` (rows = bars in time order) and the labels ``y``."""
        import torch

        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows and y {len(y)}")
        if not (X.index.is_monotonic_increasing and X.index.is_unique):
            raise ValueError("X must be indexed by bar in strictly increasing time order")
        p = self._params
        values = X.to_numpy(dtype=float)
        target = y.to_numpy(dtype=float)
        train_idx, val_idx = self._split(len(X))
        train_idx = train_idx[np.isfinite(target[train_idx])]
        val_idx = val_idx[np.isfinite(target[val_idx])]
        if train_idx.size == 0:
            raise ValueError("no training row with a finite label")
        self.feature_names = list(X.columns)
        self._step = _bar_step(X.index)
        with np.errstate(all="ignore"):
            mean = np.nanmean(values[train_idx], axis=0)
            std = np.nanstd(values[train_idx], axis=0)
        self._mean = np.where(np.isfinite(mean), mean, 0.0)
        self._std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        y_std = float(np.std(target[train_idx]))
        self._y_mean = float(np.mean(target[train_idx]))
        self._y_std = y_std if math.isfinite(y_std) and y_std > 0 else 1.0
        z_target = (target - self._y_mean) / self._y_std

        device = self._device()
        padded, starts = self._padded(X)
        with _torch_threads(int(p["num_threads"])), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(p["seed"]))
            net = self._network(len(self.feature_names) + 1).to(device)
            self._net = net
            self.training_summary = self._train(
                net, padded, starts, z_target, train_idx, val_idx, device
            )
        net.eval()
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The predicted label of every row of ``X``, each from its own window."""
        import torch

        check_feature_columns(self.feature_names, X)
        net = self.network
        if len(X) == 0:
            return np.zeros(0)
        device = next(net.parameters()).device
        padded, starts = self._padded(X)
        out = np.empty(len(X))
        net.eval()
        with _torch_threads(int(self._params["num_threads"])), torch.no_grad():
            source = torch.from_numpy(padded).to(device)
            for lo in range(0, len(X), _PREDICT_BATCH):
                rows = starts[lo : lo + _PREDICT_BATCH]
                batch = self._windows(source, _full_batch(rows), device)
                out[lo : lo + len(rows)] = net(batch)[: len(rows)].double().cpu().numpy()
        return self._y_mean + self._y_std * out

    def save(self, path: Path) -> None:
        """Write the artifact: one ``.safetensors`` file (tensors + JSON metadata)."""
        from safetensors.torch import save_file

        net = self.network
        tensors = {
            f"{_NET}{name}": value.detach().cpu().contiguous()
            for name, value in net.state_dict().items()
        }
        import torch

        tensors[_MEAN] = torch.from_numpy(self._mean.astype(np.float64))
        tensors[_STD] = torch.from_numpy(self._std.astype(np.float64))
        config = {
            "artifact_format": ARTIFACT_FORMAT,
            "model_type": self.model_type,
            "params": self._params,
            "feature_names": self.feature_names,
            "target_mean": self._y_mean,
            "target_std": self._y_std,
            "bar_seconds": self._step,
            "training": self.training_summary,
        }
        save_file(tensors, str(path), metadata={_META_KEY: json.dumps(config, sort_keys=True)})

    @classmethod
    def load(cls, path: Path, params: Mapping[str, Any] | None = None) -> SequenceModel:
        """Read an artifact written by :meth:`save`.

        ``params`` (the manifest's hyperparameters) must agree with the artifact's on
        everything but the run-time settings (``device``, ``num_threads``), which they
        override; a disagreement raises :class:`ValueError`."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if _META_KEY not in metadata:
            raise ValueError(f"{path.name} is not a Brain sequence artifact (no config)")
        config = json.loads(metadata[_META_KEY])
        if config.get("artifact_format") != ARTIFACT_FORMAT:
            raise ValueError(f"unknown sequence artifact format {config.get('artifact_format')!r}")
        if config.get("model_type") != cls.model_type:
            raise ValueError(
                f"artifact is a {config.get('model_type')!r} model, not {cls.model_type!r}"
            )
        stored = dict(config["params"])
        given = dict(params or {})
        differ = sorted(
            k for k in given if k not in RUNTIME_PARAMS and given[k] != stored.get(k, given[k])
        )
        if differ:
            raise ValueError(
                f"hyperparameters differ between the manifest and the artifact: {', '.join(differ)}"
            )
        runtime = {k: given[k] for k in RUNTIME_PARAMS if k in given}
        model = cls(**{**stored, **runtime})
        tensors = load_file(str(path))
        model.feature_names = list(config["feature_names"])
        model._mean = tensors.pop(_MEAN).numpy()
        model._std = tensors.pop(_STD).numpy()
        model._y_mean = float(config["target_mean"])
        model._y_std = float(config["target_std"])
        model._step = config["bar_seconds"]
        model.training_summary = dict(config.get("training", {}))
        state = {k[len(_NET) :]: v for k, v in tensors.items() if k.startswith(_NET)}
        net = model._network(len(model.feature_names) + 1)
        net.load_state_dict(state, strict=True)
        net.to(model._device())
        net.eval()
        model._net = net
        return model

    # ------------------------------------------------------------------ importance
    def gradient_x_input(self, X: pd.DataFrame) -> pd.Series:
        r"""Native importance: mean absolute gradient × input per feature.

        :math:`I_j = \frac{1}{nN}\sum_i \sum_s |z_{isj}\, \partial f(z_i) / \partial
        z_{isj}|` over the rows :math:`i` of ``X`` and the time steps :math:`s` of their
        windows, on the standardised inputs (so features of different scales compare),
        in units of the standardised prediction. One backward pass per batch."""
        import torch

        check_feature_columns(self.feature_names, X)
        net = self.network
        device = next(net.parameters()).device
        padded, starts = self._padded(X)
        total = np.zeros(len(self.feature_names))
        net.eval()
        # cuDNN's LSTM has no backward pass in eval mode: use the plain kernels here
        with (
            _torch_threads(int(self._params["num_threads"])),
            torch.backends.cudnn.flags(enabled=False),
        ):
            source = torch.from_numpy(padded).to(device)
            for lo in range(0, len(X), _PREDICT_BATCH):
                rows = starts[lo : lo + _PREDICT_BATCH]
                batch = self._windows(source, _full_batch(rows), device)
                batch.requires_grad_(True)
                net(batch)[: len(rows)].sum().backward()
                grad = batch.grad
                assert grad is not None
                contrib = (grad * batch)[: len(rows)].abs().sum(dim=(0, 1))[:-1]
                total += contrib.detach().double().cpu().numpy()
        net.zero_grad(set_to_none=True)
        scale = max(len(X), 1) * self.window
        return pd.Series(total / scale, index=pd.Index(self.feature_names, name="feature"))

    # ------------------------------------------------------------------ pipeline
    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Training rows and validation tail (purged and embargoed like a test fold)."""
        from brain_lib.validation import PurgedWalkForward

        p = self._params
        val = round(float(p["validation_fraction"]) * n)
        gap = int(p["purge"]) + int(p["embargo"])
        if val < 1 or n - val - gap < max(val, 1):
            return np.arange(n), np.zeros(0, dtype=int)
        splitter = PurgedWalkForward(
            n_splits=1, test_size=val, purge=int(p["purge"]), embargo=int(p["embargo"])
        )
        train_idx, val_idx = next(splitter.split(np.zeros(n)))
        return np.asarray(train_idx), np.asarray(val_idx)

    def _positions(self, index: pd.Index) -> np.ndarray:
        """Position of every row on the bar grid, the first row at 0."""
        n = len(index)
        if self._step is None or not isinstance(index, pd.DatetimeIndex) or n == 0:
            return np.arange(n)
        if not (index.is_monotonic_increasing and index.is_unique):
            raise ValueError("X must be indexed by bar in strictly increasing time order")
        seconds = (index.asi8 - index.asi8[0]) / 1e9
        pos = np.floor(seconds / self._step + 1e-9).astype(np.int64)
        # bars off the grid spacing keep their order: positions strictly increase
        steps = np.arange(n)
        return np.maximum.accumulate(pos - steps) + steps

    def _padded(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Standardised rows laid on the bar grid with ``window - 1`` empty bars in front,
        and the start of every row's window in it."""
        clip = float(self._params["clip"])
        with np.errstate(all="ignore"):
            z = (X.to_numpy(dtype=float) - self._mean) / self._std
        z = np.clip(np.nan_to_num(z, nan=0.0, posinf=clip, neginf=-clip), -clip, clip)
        pos = self._positions(X.index)
        lead = self.window - 1
        length = int(pos[-1]) + 1 + lead if len(pos) else lead
        padded = np.zeros((length, z.shape[1] + 1), dtype=np.float32)
        padded[pos + lead, :-1] = z
        padded[pos + lead, -1] = 1.0
        return padded, pos

    def _windows(self, source: Any, starts: np.ndarray, device: Any) -> Any:
        """The ``(len(starts), window, k + 1)`` input block of the given rows."""
        import torch

        offsets = torch.arange(self.window, device=device)
        rows = torch.as_tensor(starts, device=device).unsqueeze(1) + offsets
        return source[rows]

    def _train(
        self,
        net: Any,
        padded: np.ndarray,
        starts: np.ndarray,
        z_target: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        device: Any,
    ) -> dict[str, Any]:
        import torch

        p = self._params
        source = torch.from_numpy(padded).to(device)
        target = torch.from_numpy(z_target.astype(np.float32)).to(device)
        loss_fn = torch.nn.HuberLoss(delta=float(p["huber_delta"]))
        optimiser = torch.optim.AdamW(
            net.parameters(), lr=float(p["learning_rate"]), weight_decay=float(p["weight_decay"])
        )
        order = torch.Generator().manual_seed(int(p["seed"]))
        batch_size = int(p["batch_size"])
        best_loss, best_epoch, best_state = math.inf, 0, None
        epochs_run, stale = 0, 0
        for epoch in range(1, int(p["epochs"]) + 1):
            net.train()
            perm = train_idx[torch.randperm(len(train_idx), generator=order).numpy()]
            for lo in range(0, len(perm), batch_size):
                rows = perm[lo : lo + batch_size]
                optimiser.zero_grad()
                out = net(self._windows(source, starts[rows], device))
                loss = loss_fn(out, target[torch.as_tensor(rows, device=device)])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
            epochs_run = epoch
            if val_idx.size == 0:
                continue
            net.eval()
            with torch.no_grad():
                pred = net(self._windows(source, starts[val_idx], device))
                val_loss = float(loss_fn(pred, target[torch.as_tensor(val_idx, device=device)]))
            if val_loss < best_loss - 1e-9:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= int(p["patience"]):
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        return {
            "epochs_run": epochs_run,
            "best_epoch": best_epoch if best_state is not None else epochs_run,
            "validation_loss": best_loss if math.isfinite(best_loss) else None,
            "train_rows": len(train_idx),
            "validation_rows": len(val_idx),
            "device": str(device),
        }
