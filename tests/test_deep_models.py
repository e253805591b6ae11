"""The deep model types (LSTM with attention, Transformer, 1-D CNN) and their shared
sequence pipeline: artifacts, skill on a planted pattern, no look-ahead, determinism,
and one run through training and the registry. Tiny networks, few epochs: CI's budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from markets import STRONG_TREND, planted, random_walk

from brain_lib.errors import ConfigError
from brain_lib.models import (
    DEEP_MODEL_TYPES,
    MODEL_TYPES,
    SequenceModel,
    get_model,
)

DEEP = sorted(DEEP_MODEL_TYPES)
COMMON: dict[str, Any] = {
    "window": 8,
    "epochs": 8,
    "batch_size": 32,
    "purge": 1,
    "embargo": 0,
    "dropout": 0.0,
}
TINY: dict[str, dict[str, Any]] = {
    "lstm": {**COMMON, "hidden": 12, "learning_rate": 1e-2},
    "transformer": {**COMMON, "d_model": 16, "layers": 1, "learning_rate": 3e-3},
    "cnn": {**COMMON, "channels": 12, "learning_rate": 1e-2},
}


def _tiny(name: str, **params: Any) -> SequenceModel:
    model = get_model(name, **{**TINY[name], **params})
    assert isinstance(model, SequenceModel)
    return model


def _index(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="ts")


def _planted_sequence(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Three noise features; the label is a pattern of *earlier* bars only
    (y_t = a_{t-2} - 0.5 b_{t-4} + noise), which one row alone cannot show."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), index=_index(n), columns=["a", "b", "c"])
    a, b = X["a"].to_numpy(), X["b"].to_numpy()
    y = np.zeros(n)
    y[4:] = a[2:-2] - 0.5 * b[:-4]
    return X, pd.Series(y + 0.1 * rng.normal(size=n), index=X.index)


def _random_walk_rows(seed: int, n: int = 700) -> tuple[pd.DataFrame, pd.Series]:
    """Lagged log returns of a random walk as features, the next return as the label."""
    close = random_walk(seed, periods=n + 4)["close"]
    ret = np.log(close).diff()
    X = pd.DataFrame({"ret_1": ret, "ret_2": ret.shift(1), "ret_3": ret.shift(2)}).iloc[3:-1]
    return X, ret.shift(-1).iloc[3:-1]


def _holdout_skill(model: SequenceModel, X: pd.DataFrame, y: pd.Series) -> tuple[float, float]:
    """Correlation and sign hit ratio on the last quarter (history passed along, as the
    docs ask: the held-out rows' windows are full)."""
    cut = len(X) * 3 // 4
    model.fit(X.iloc[:cut], y.iloc[:cut])
    pred = model.predict(X)[cut:]
    truth = y.to_numpy()[cut:]
    return float(np.corrcoef(pred, truth)[0, 1]), float(np.mean(np.sign(pred) == np.sign(truth)))


def test_the_deep_types_are_installed_and_import_torch_lazily() -> None:
    assert {"lstm", "transformer", "cnn"} <= set(MODEL_TYPES)
    code = "import sys, brain_lib.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", DEEP)
def test_save_and_load_give_identical_predictions(name: str, tmp_path: Path) -> None:
    X, y = _planted_sequence(300)
    model = _tiny(name, epochs=2).fit(X.iloc[:200], y.iloc[:200])
    path = tmp_path / model.artifact_name
    model.save(path)
    assert path.suffix == ".safetensors"
    loaded = MODEL_TYPES[name].load(path, model.params)  # type: ignore[attr-defined]
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert loaded.params == model.params and loaded.feature_names == ["a", "b", "c"]
    # the manifest's hyperparameters must be the artifact's (run-time settings aside)
    MODEL_TYPES[name].load(path, {**model.params, "num_threads": 1})  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="differ between the manifest and the artifact: window"):
        MODEL_TYPES[name].load(path, {**model.params, "window": 9})  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", DEEP)
def test_learns_a_planted_sequence_pattern(name: str) -> None:
    corr, hit = _holdout_skill(_tiny(name), *_planted_sequence())
    assert corr > 0.5 and hit > 0.65, (corr, hit)


@pytest.mark.parametrize("name", DEEP)
def test_finds_nothing_on_a_random_walk(name: str) -> None:
    corr, hit = _holdout_skill(_tiny(name), *_random_walk_rows(3))
    assert abs(corr) < 0.2 and abs(hit - 0.5) < 0.1, (corr, hit)


@pytest.mark.parametrize("name", DEEP)
def test_no_look_ahead_in_windows_and_standardisation(name: str) -> None:
    X, y = _planted_sequence(400)
    model = _tiny(name, epochs=2).fit(X.iloc[:250], y.iloc[:250])
    full = model.predict(X)
    # bars up to t predict the same whether or not later bars exist, or what they hold
    for t in (260, 330):
        assert np.array_equal(model.predict(X.iloc[: t + 1]), full[: t + 1])
    wild = X.copy()
    wild.iloc[300:] = 1e6
    assert np.array_equal(model.predict(wild)[:300], full[:300])
    # the statistics come from the rows trained on: not the validation tail, not later rows
    train_rows = model.training_summary["train_rows"]
    assert np.allclose(model._mean, X.iloc[:train_rows].mean().to_numpy())
    assert np.allclose(model._std, X.iloc[:train_rows].std(ddof=0).to_numpy())
    tail = X.iloc[:250].copy()
    tail.iloc[train_rows:] = 1e6
    other = _tiny(name, epochs=2).fit(tail, y.iloc[:250])
    assert np.array_equal(other._mean, model._mean) and np.array_equal(other._std, model._std)


def test_a_fold_is_predicted_with_the_bars_before_it_as_context() -> None:
    """The walk-forward passes the bars before a test fold along: a fold's first bars
    are predicted from full windows, exactly as with the whole history before them,
    and nothing after the fold is read."""
    from brain_lib.training import predict_fold

    X, y = _planted_sequence(400)
    model = _tiny("lstm", epochs=2).fit(X.iloc[:250], y.iloc[:250])
    test_idx = np.arange(300, 350)
    fold = predict_fold(model, X, test_idx)
    assert np.array_equal(fold, model.predict(X.iloc[:350])[300:350])
    assert not np.array_equal(fold[:5], model.predict(X.iloc[300:350])[:5])  # cold windows
    wild = X.copy()
    wild.iloc[350:] = 1e6
    assert np.array_equal(predict_fold(model, wild, test_idx), fold)


def test_a_missing_bar_is_a_hole_in_the_window_not_a_seam() -> None:
    X, y = _planted_sequence(300)
    model = _tiny("cnn", epochs=2).fit(X.iloc[:200], y.iloc[:200])
    full = pd.Series(model.predict(X), index=X.index)
    holed = X.drop(X.index[250])
    pred = pd.Series(model.predict(holed), index=holed.index)
    window = model.window
    # only the bars whose window held the missing one change
    assert pred.iloc[:250].equals(full.iloc[:250])
    # (the later rows sit one place earlier in their batch: equal up to float32 rounding)
    after = X.index[250 + window]
    assert np.allclose(pred.loc[after:], full.loc[after:], rtol=1e-5, atol=1e-7)
    assert not np.allclose(pred.loc[X.index[251]], full.loc[X.index[251]])


def test_validation_tail_is_purged_and_embargoed_like_a_test_fold() -> None:
    X, y = _planted_sequence(400)
    model = _tiny("cnn", epochs=2, validation_fraction=0.2, purge=5, embargo=3).fit(X, y)
    summary = model.training_summary
    assert summary["validation_rows"] == 80
    assert summary["train_rows"] == 400 - 80 - 5 - 3


def test_early_stopping_keeps_the_best_epoch_on_noise() -> None:
    X, y = _random_walk_rows(5, 500)
    model = _tiny("lstm", epochs=40, patience=2).fit(X, y)
    summary = model.training_summary
    assert summary["epochs_run"] < 40
    assert summary["best_epoch"] == summary["epochs_run"] - 2


@pytest.mark.parametrize("name", DEEP)
def test_deterministic_on_cpu_with_a_seed(name: str, tmp_path: Path) -> None:
    import torch

    X, y = _planted_sequence(250)
    state = torch.random.get_rng_state()
    first = _tiny(name, epochs=2, dropout=0.2, device="cpu").fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    second = _tiny(name, epochs=2, dropout=0.2, device="cpu").fit(X, y)
    assert np.array_equal(first.predict(X), second.predict(X))
    first.save(tmp_path / "a.safetensors")
    second.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    other = _tiny(name, epochs=2, dropout=0.2, device="cpu", seed=7).fit(X, y)
    assert not np.array_equal(first.predict(X), other.predict(X))


def test_gradient_x_input_ranks_the_features_the_pattern_uses() -> None:
    X, y = _planted_sequence()
    model = _tiny("cnn").fit(X, y)
    importance = model.gradient_x_input(X)
    assert list(importance.index) == ["a", "b", "c"]
    assert importance["a"] > importance["b"] > importance["c"]


def test_bad_hyperparameters_and_model_types_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        get_model("lstm", hiden=8)
    with pytest.raises(ValueError, match="invalid hyperparameter window=0"):
        get_model("cnn", window=0)
    with pytest.raises(ConfigError, match=r"unknown model type\(s\) gru \(installed: lightgbm"):
        get_model("gru")
    from brain_lib.models import _deep

    monkeypatch.delitem(MODEL_TYPES, "lstm")
    monkeypatch.setitem(_deep.UNAVAILABLE_MODEL_TYPES, "lstm", "needs torch, which is not here")
    with pytest.raises(ConfigError, match="model type lstm is not installed \\(needs torch"):
        get_model("lstm")


@pytest.mark.slow
def test_a_deep_type_goes_through_training_importance_and_the_registry(
    fresh_warehouse: str, tmp_path: Path
) -> None:
    from brain_lib.errors import ArtifactError
    from brain_lib.registry import load_model, register_version
    from brain_lib.training import (
        TrainingConfig,
        build_dataset,
        train_symbol,
        version_importance,
    )
    from brain_lib.warehouse import connect

    candles = planted(5, 2000, symbol="SOL/USDT", trend=STRONG_TREND)
    params = {"window": 12, "epochs": 3, "channels": 8, "layers": 2, "batch_size": 128}
    config = TrainingConfig(model_type="cnn", params=params, n_splits=3, embargo=12, min_rows=300)
    result = train_symbol(candles, exchange="synthetic", symbol="SOL/USDT", config=config)
    manifest = result.manifest
    assert manifest["model_type"] == "cnn"
    # the validation tail is purged by the label horizon and embargoed like the folds
    assert manifest["hyperparameters"]["purge"] == config.label_horizon
    assert manifest["hyperparameters"]["embargo"] == config.embargo
    assert np.isfinite(result.metrics["sharpe"]) or result.metrics["exposure"] == 0

    features, labels = build_dataset(candles, config.label_horizon)
    rows = version_importance(
        result.walk_forward, result.evaluation, features, labels, candles, config
    )
    by_method = {r["method"] for r in rows if r["importance"] is not None}
    assert {"permutation", "correlation"} <= by_method
    (shap,) = [r for r in rows if r["method"] == "shap"]
    assert shap["feature"] == "*" and "sequence model cnn" in shap["skipped_reason"]

    with connect(fresh_warehouse) as conn:
        stored, _ = register_version(
            conn,
            result,
            artifact_root=str(tmp_path),
            candles=candles,
            config=config,
            importance=rows,
        )
    assert stored.artifact_uri.endswith("model.safetensors")
    where = (stored.artifact_uri, stored.artifact_sha256, stored.manifest, stored.version_id)
    loaded = load_model(*where)
    assert np.array_equal(loaded.predict(features), result.model.predict(features))
    artifact = Path(stored.artifact_uri)
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="refusing to load a changed artifact"):
        load_model(*where)
