"""The per-symbol training pipeline as one plain function.

``train_symbol`` takes candles and returns everything a model version needs:
features → labels → purged walk-forward (fit on each training fold, predict its
test fold) → backtest of the out-of-sample predictions with fees → metrics → final
fit on the whole window → manifest. It does no I/O: flows wrap it as a task,
notebooks call it directly, and ``brain_lib.registry`` stores its result.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brain_lib import metrics as m
from brain_lib.backtest import BacktestResult, run_backtest
from brain_lib.errors import DataError
from brain_lib.features import OHLCV_COLUMNS, build_features, feature_warmup_bars
from brain_lib.labels import forward_return
from brain_lib.models import Model, get_model
from brain_lib.validation import PurgedWalkForward

__all__ = [
    "MANIFEST_FORMAT",
    "TrainingConfig",
    "TrainingResult",
    "assemble_result",
    "build_dataset",
    "check_enough_rows",
    "code_version",
    "dataset_fingerprint",
    "evaluate_predictions",
    "exogenous_columns",
    "feature_frame",
    "feature_set_hash",
    "feature_sets",
    "fit_final",
    "load_training_candles",
    "recipe_key",
    "train_symbol",
    "version_importance",
    "walk_forward_predictions",
]

MANIFEST_FORMAT = 1
_LIBRARIES = (
    "brain",
    "lightgbm",
    "xgboost",
    "xgboost-cpu",
    "shap",
    "numpy",
    "pandas",
    "prefect",
    "dbt-core",
)


@dataclass(frozen=True)
class TrainingConfig:
    """How one symbol is trained and judged."""

    model_type: str = "lightgbm"
    params: dict[str, Any] = field(default_factory=dict)
    label_horizon: int = 1
    n_splits: int = 5
    test_size: int | None = None
    train_size: int | None = None
    embargo: int = 24
    fee_bps: float = 5.0
    threshold: float = 0.0
    timeframe: str = "1h"
    risk_free_rate: float = 0.0
    min_rows: int = 500

    def splitter(self) -> PurgedWalkForward:
        return PurgedWalkForward(
            n_splits=self.n_splits,
            test_size=self.test_size,
            train_size=self.train_size,
            purge=self.label_horizon,
            embargo=self.embargo,
        )


@dataclass
class TrainingResult:
    """What ``train_symbol`` produced for one symbol."""

    exchange: str
    symbol: str
    timeframe: str
    model: Model
    metrics: dict[str, float]
    backtest: BacktestResult
    oos_predictions: pd.Series
    folds: list[dict[str, Any]]
    feature_names: list[str]
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    n_rows: int
    fingerprint: str
    manifest: dict[str, Any]

    @property
    def oos_window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        index = self.backtest.frame.index
        return index[0], index[-1]


def dataset_fingerprint(candles: pd.DataFrame) -> str:
    """sha256 over the timestamps and OHLCV values, in order (content identity)."""
    digest = hashlib.sha256()
    index = pd.DatetimeIndex(candles.index)
    digest.update(index.asi8.tobytes())
    for col in ("open", "high", "low", "close", "volume"):
        digest.update(np.ascontiguousarray(candles[col].to_numpy(dtype="float64")).tobytes())
    return digest.hexdigest()


def feature_set_hash(feature_names: list[str]) -> str:
    """sha256 of the ordered feature names: the identity of a feature set."""
    return hashlib.sha256("\n".join(feature_names).encode("utf-8")).hexdigest()


def exogenous_columns(candles: pd.DataFrame) -> list[str]:
    """The derivatives and sentiment feature columns that ``candles`` carries.

    Only the known columns of ``marts.fct_features_hourly``
    (:data:`brain_lib.market.data.FEATURE_COLUMNS`) count: any other extra column (a
    simulator's ``regime``, say) is never turned into a feature by accident.
    """
    from brain_lib.market.data import FEATURE_COLUMNS

    return [c for c in FEATURE_COLUMNS if c in candles.columns]


def feature_sets(feature_names: list[str]) -> list[str]:
    """Which families a feature list draws on: ``ohlcv`` and, when present, ``derivatives``."""
    from brain_lib.market.data import FEATURE_COLUMNS

    extra = set(FEATURE_COLUMNS)
    sets = ["ohlcv"] if any(n not in extra for n in feature_names) else []
    return sets + (["derivatives"] if any(n in extra for n in feature_names) else [])


def load_training_candles(
    conn: Any,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """Candles ``start <= ts < end`` with the symbol's derivatives features joined on.

    Candles kept in ``raw.quarantine_ohlcv`` (a failed data-quality rule,
    :mod:`brain_lib.quality`) are left out: the raw rows stay, nothing learns from them.

    The features of ``marts.fct_features_hourly`` (funding, open interest,
    liquidations, sentiment; point-in-time: bar ``ts`` only sees data stamped at or
    before its close) are added as columns when the timeframe is 1h and the symbol has
    any of them in the window. Otherwise — no derivatives data, another timeframe, the
    mart not built yet — the candles come alone and the model trains on OHLCV features.
    """
    from brain_lib.errors import MartNotBuiltError
    from brain_lib.market.data import load_derivative_features
    from brain_lib.quality import exclude_quarantined
    from brain_lib.warehouse import load_ohlcv

    candles = load_ohlcv(
        conn, exchange=exchange, symbol=symbol, timeframe=timeframe, start=start, end=end
    )
    candles = exclude_quarantined(
        conn, candles, exchange=exchange, symbol=symbol, timeframe=timeframe
    )
    if timeframe != "1h":
        return candles
    try:
        extra = load_derivative_features(conn, exchange, symbol, start, end)
    except MartNotBuiltError:
        return candles
    extra = extra.reindex(candles.index)
    if extra.empty or not extra.notna().any().any():
        return candles
    return candles.join(extra)


def feature_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """Every feature of every bar (warm-up rows included): the OHLCV features of
    :func:`~brain_lib.features.build_features` followed by the derivatives columns the
    candles carry (:func:`exogenous_columns`, from :func:`load_training_candles`)."""
    features = build_features(candles[list(OHLCV_COLUMNS)])
    extra = exogenous_columns(candles)
    if extra:
        features = features.join(candles[extra].astype(float))
    return features


def build_dataset(candles: pd.DataFrame, label_horizon: int) -> tuple[pd.DataFrame, pd.Series]:
    """Features (:func:`feature_frame`) and label, without the warm-up rows and the rows
    with no label yet."""
    features = feature_frame(candles)
    label = forward_return(candles, horizon=label_horizon)
    keep = np.ones(len(candles), dtype=bool)
    keep[: feature_warmup_bars()] = False
    keep &= label.notna().to_numpy()
    return features[keep], label[keep]


def walk_forward_predictions(
    X: pd.DataFrame, y: pd.Series, config: TrainingConfig
) -> tuple[pd.Series, list[dict[str, Any]]]:
    """Out-of-sample predictions of every test fold, each from a model fit on its own
    purged, embargoed training fold only."""
    splitter = config.splitter()
    parts: list[pd.Series] = []
    folds = splitter.describe(len(X))
    for i, (train_idx, test_idx) in enumerate(splitter.split(X)):
        model = get_model(config.model_type, **config.params)
        model.fit(X.iloc[train_idx], y.iloc[train_idx])
        parts.append(pd.Series(model.predict(X.iloc[test_idx]), index=X.index[test_idx]))
        folds[i]["train_rows"] = len(train_idx)
        folds[i]["test_rows"] = len(test_idx)
        folds[i]["test_from"] = X.index[test_idx[0]].isoformat()
        folds[i]["test_to"] = X.index[test_idx[-1]].isoformat()
    return pd.concat(parts).sort_index(), folds


@functools.cache
def code_version() -> str:
    """``<package version>+g<git commit>`` when running from a git checkout, else the
    package version alone."""
    import brain_lib

    version = brain_lib.__version__
    root = Path(brain_lib.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}" if commit else version


def recipe_key(manifest: dict[str, Any]) -> str:
    """Identity of what a version was made by: model type, hyperparameters, features,
    label and code version. Two versions with the same key, evaluated on the same
    window with the same walk-forward, give identical predictions."""
    recipe = {
        "model_type": manifest["model_type"],
        "hyperparameters": manifest["hyperparameters"],
        "features": manifest["features"],
        "label": manifest["label"],
        "code_version": manifest.get("code_version"),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def evaluate_predictions(
    oos: pd.Series, candles: pd.DataFrame, config: TrainingConfig
) -> tuple[BacktestResult, dict[str, float]]:
    """Backtest out-of-sample predictions with fees and compute their metrics."""
    bt = run_backtest(oos, candles["close"], fee_bps=config.fee_bps, threshold=config.threshold)
    ppy = m.periods_per_year(config.timeframe)
    metrics = m.compute_all(bt.net_returns, bt.positions, periods_per_year=ppy)
    metrics["turnover"] = bt.turnover
    metrics["gross_sharpe"] = m.sharpe_ratio(bt.frame["gross_return"], periods_per_year=ppy)
    return bt, metrics


def fit_final(X: pd.DataFrame, y: pd.Series, config: TrainingConfig) -> Model:
    """The model of the version: refit on the whole training window."""
    return get_model(config.model_type, **config.params).fit(X, y)


def version_importance(
    model: Model,
    X: pd.DataFrame,
    y: pd.Series,
    oos: pd.Series,
    candles: pd.DataFrame,
    config: TrainingConfig,
    *,
    max_rows: int = 2000,
    n_repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Feature importance of a new version, as rows for ``raw.feature_importance``.

    * SHAP: the version's model on (a seeded sample of) the out-of-sample rows;
    * correlation: Spearman of each feature with the label and with the out-of-sample
      prediction, on the out-of-sample rows;
    * permutation: needs a model that never saw the rows it is scored on, so a model
      is fit on the last walk-forward fold's (purged, embargoed) training rows and
      scored on that fold's test rows — one extra fit.
    """
    from brain_lib import importance as imp

    rows_oos = X.loc[oos.index]
    results = [
        imp.shap_importance(model, rows_oos, max_rows=max_rows, seed=seed),
        imp.correlation_importance(rows_oos, y.loc[oos.index], predictions=oos),
    ]
    train_idx, test_idx = list(config.splitter().split(X))[-1]
    fold_model = get_model(config.model_type, **config.params).fit(
        X.iloc[train_idx], y.iloc[train_idx]
    )
    results.append(
        imp.permutation_importance(
            fold_model,
            X.iloc[test_idx],
            y.iloc[test_idx],
            candles["close"],
            n_repeats=n_repeats,
            seed=seed,
            max_rows=max_rows,
            fee_bps=config.fee_bps,
            threshold=config.threshold,
            timeframe=config.timeframe,
        )
    )
    return [row for result in results for row in imp.importance_rows(result)]


def check_enough_rows(
    candles: pd.DataFrame, exchange: str, symbol: str, config: TrainingConfig
) -> None:
    """Raise :class:`DataError` when the window is too short to train."""
    if len(candles) < config.min_rows:
        raise DataError(
            f"{exchange}:{symbol}: only {len(candles)} candles in the window, "
            f"at least {config.min_rows} are needed to train"
        )


def assemble_result(
    *,
    candles: pd.DataFrame,
    exchange: str,
    symbol: str,
    config: TrainingConfig,
    X: pd.DataFrame,
    oos: pd.Series,
    folds: list[dict[str, Any]],
    backtest: BacktestResult,
    metrics: dict[str, float],
    model: Model,
) -> TrainingResult:
    """Bundle the stages' outputs with the manifest of the version."""
    fingerprint = dataset_fingerprint(candles)
    names = list(X.columns)
    manifest: dict[str, Any] = {
        "manifest_format": MANIFEST_FORMAT,
        "model_type": config.model_type,
        "hyperparameters": model.params,
        "features": names,
        "feature_sets": feature_sets(names),
        "feature_set_hash": feature_set_hash(names),
        "dataset": {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": config.timeframe,
            "start": candles.index[0].isoformat(),
            "end": candles.index[-1].isoformat(),
            "candles": len(candles),
            "training_rows": len(X),
            "fingerprint_sha256": fingerprint,
        },
        "label": {"kind": "forward_return", "horizon": config.label_horizon},
        "walk_forward": {
            "n_splits": config.n_splits,
            "test_size": config.test_size,
            "train_size": config.train_size,
            "purge": config.label_horizon,
            "embargo": config.embargo,
            "folds": folds,
        },
        "backtest": {
            "fee_bps": config.fee_bps,
            "threshold": config.threshold,
            "periods_per_year": m.periods_per_year(config.timeframe),
            "oos_start": backtest.frame.index[0].isoformat(),
            "oos_end": backtest.frame.index[-1].isoformat(),
        },
        "libraries": _library_versions(),
        "code_version": code_version(),
    }
    return TrainingResult(
        exchange=exchange,
        symbol=symbol,
        timeframe=config.timeframe,
        model=model,
        metrics=metrics,
        backtest=backtest,
        oos_predictions=oos,
        folds=folds,
        feature_names=names,
        train_start=candles.index[0],
        train_end=candles.index[-1],
        n_rows=len(X),
        fingerprint=fingerprint,
        manifest=manifest,
    )


def train_symbol(
    candles: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    config: TrainingConfig | None = None,
) -> TrainingResult:
    """Train and judge one model for one symbol (every stage, in order).

    Parameters
    ----------
    candles : pandas.DataFrame
        OHLCV indexed by bar open time (UTC), ascending, as ``warehouse.load_ohlcv``
        returns it.
    exchange, symbol : str
        Where the candles come from (recorded in the manifest).
    config : TrainingConfig
        Model type, hyperparameters, label horizon, walk-forward and fee settings.

    Returns
    -------
    TrainingResult
        The model refit on the whole window, out-of-sample metrics and backtest, and
        the manifest (without the artifact hash, which the registry adds).
    """
    config = config or TrainingConfig()
    check_enough_rows(candles, exchange, symbol, config)
    X, y = build_dataset(candles, config.label_horizon)
    oos, folds = walk_forward_predictions(X, y, config)
    backtest, metrics = evaluate_predictions(oos, candles, config)
    model = fit_final(X, y, config)
    return assemble_result(
        candles=candles,
        exchange=exchange,
        symbol=symbol,
        config=config,
        X=X,
        oos=oos,
        folds=folds,
        backtest=backtest,
        metrics=metrics,
        model=model,
    )
