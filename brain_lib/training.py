"""The per-symbol training pipeline as one plain function.

``train_symbol`` takes candles and returns everything a model version needs:
candles on the bar grid → features → labels → purged walk-forward (fit on each
training fold, predict its test fold) → a position policy per fold, fitted on that
fold's training rows only → backtest of the positions with fees, slippage and funding
→ metrics, trading statistics and baselines → final fit on the whole window →
manifest. It does no I/O (but :func:`load_training_candles`, the one loader of both the
live and the spooled path): flows wrap it as tasks, notebooks call it directly, and
``brain_lib.registry`` stores its result.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brain_lib import metrics as m
from brain_lib.backtest import BacktestResult, backtest_positions, baselines
from brain_lib.errors import ConfigError, DataError
from brain_lib.features import OHLCV_COLUMNS, build_features, feature_warmup_bars
from brain_lib.labels import forward_return
from brain_lib.models import MODEL_TYPES, Model, get_model, is_sequence_model_type
from brain_lib.policy import (
    FittedPolicy,
    PolicyContext,
    PolicySpec,
    apply_policies,
    get_policy,
    trailing_volatility,
)
from brain_lib.validation import PurgedWalkForward

__all__ = [
    "CALIBRATION_FOLDS",
    "DEFAULT_LABEL_HORIZON",
    "FUNDING_COLUMN",
    "MANIFEST_FORMAT",
    "Evaluation",
    "TrainingConfig",
    "TrainingResult",
    "WalkForward",
    "assemble_result",
    "bar_length",
    "build_dataset",
    "candles_on_grid",
    "check_enough_rows",
    "code_version",
    "dataset_fingerprint",
    "evaluate_walk_forward",
    "exogenous_columns",
    "feature_frame",
    "feature_set_hash",
    "feature_sets",
    "fit_final",
    "load_training_candles",
    "new_model",
    "prediction_center",
    "recipe_key",
    "train_symbol",
    "trial_key",
    "version_importance",
    "walk_forward_predictions",
]

MANIFEST_FORMAT = 2
"""2: the manifest records the position policy (spec, per-fold and serving parameters);
a format-1 manifest traded the sign of the prediction (``PolicySpec(kind="sign")``)."""

DEFAULT_LABEL_HORIZON = 8
"""Bars ahead the label looks (and the purge, and the policy's minimum holding period).
Why 8 on hourly bars: docs/backtest.md, "Choosing the defaults"."""

FUNDING_COLUMN = "funding_charge"
"""Column of :func:`load_training_candles`: the funding rate a unit long pays over the
bar (the prints stamped in the bar's (open, close]); never a feature."""

_LIBRARIES = (
    "brain",
    "lightgbm",
    "xgboost",
    "xgboost-cpu",
    "torch",
    "safetensors",
    "shap",
    "numpy",
    "pandas",
    "prefect",
    "dbt-core",
)


CALIBRATION_FOLDS = 1
"""Leading walk-forward folds whose out-of-sample predictions only calibrate the policy
of the later folds; they are never scored."""


@dataclass(frozen=True)
class TrainingConfig:
    """How one symbol is trained and judged.

    Every setting is checked when the config is made: a bad value raises
    :class:`~brain_lib.errors.ConfigError` naming it, before anything is trained.
    """

    model_type: str = "lightgbm"
    params: dict[str, Any] = field(default_factory=dict)
    label_horizon: int = DEFAULT_LABEL_HORIZON
    n_splits: int = 5
    test_size: int | None = None
    train_size: int | None = None
    embargo: int = 24
    fee_bps: float = 5.0
    slippage_bps: float = 0.0
    policy: PolicySpec = field(default_factory=PolicySpec)
    charge_funding: bool = True
    timeframe: str = "1h"
    risk_free_rate: float = 0.0
    min_rows: int = 500

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ConfigError:
            return ConfigError(f"invalid setting {name}={getattr(self, name)!r}: {rule}")

        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not is_int(self.label_horizon) or self.label_horizon < 1:
            raise bad("label_horizon", "must be an int >= 1 (bars ahead the label looks)")
        if not is_int(self.n_splits) or self.n_splits < 1:
            raise bad("n_splits", "must be an int >= 1")
        if self.test_size is not None:
            if not is_int(self.test_size) or self.test_size < 1:
                raise bad("test_size", "must be an int >= 1 or None")
            if self.label_horizon > self.test_size:
                raise bad(
                    "label_horizon",
                    f"is longer than a test fold ({self.test_size} bars); "
                    "use a shorter horizon or larger folds",
                )
        if self.train_size is not None and (not is_int(self.train_size) or self.train_size < 1):
            raise bad("train_size", "must be an int >= 1 or None")
        if not is_int(self.embargo) or self.embargo < 0:
            raise bad("embargo", "must be an int >= 0")
        for name in ("fee_bps", "slippage_bps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(name, "must be a number >= 0")
            if not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0")
        if not isinstance(self.policy, PolicySpec):
            raise bad("policy", "must be a brain_lib.policy.PolicySpec")
        if not is_int(self.min_rows) or self.min_rows < 1:
            raise bad("min_rows", "must be an int >= 1")
        try:
            m.periods_per_year(self.timeframe)
        except ValueError as exc:
            raise ConfigError(f"invalid setting timeframe={self.timeframe!r}: {exc}") from None

    @property
    def cost_bps(self) -> float:
        """Cost per unit of position change: the fee plus the slippage."""
        return float(self.fee_bps) + float(self.slippage_bps)

    def splitter(self) -> PurgedWalkForward:
        """The walk-forward: :data:`CALIBRATION_FOLDS` unscored folds, then ``n_splits``
        scored ones (``test_size`` None: ``n // (n_splits + 2)`` rows each)."""
        return PurgedWalkForward(
            n_splits=self.n_splits + CALIBRATION_FOLDS,
            test_size=self.test_size,
            train_size=self.train_size,
            purge=self.label_horizon,
            embargo=self.embargo,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-able), for the spool."""
        out = dataclasses.asdict(self)
        out["policy"] = self.policy.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingConfig:
        """The config of :meth:`to_dict`; keys this version does not know are refused
        (``threshold`` of older spool files is dropped: the policy replaced it)."""
        values = {k: v for k, v in data.items() if k != "threshold"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        if isinstance(values.get("policy"), Mapping):
            values["policy"] = PolicySpec.from_dict(values["policy"])
        return cls(**values)


@dataclass
class WalkForward:
    """The out-of-sample predictions of every fold, with the fold models.

    ``predictions`` covers every test fold, the calibration fold(s) first; ``bounds``
    holds the half-open row positions ``(train_start, train_stop, test_start,
    test_stop)`` of each fold in the dataset; ``models[i]`` was fit on fold ``i``'s
    training rows only, and ``centers[i]`` is its mean prediction on those rows: the
    level at which that model has nothing to say beyond the drift it was trained on.
    """

    predictions: pd.Series
    folds: list[dict[str, Any]]
    bounds: list[tuple[int, int, int, int]]
    models: list[Model]
    centers: list[float]

    @property
    def scored(self) -> pd.Series:
        """Predictions of the scored folds (every fold after the calibration ones)."""
        first = self.bounds[CALIBRATION_FOLDS][2]
        last = self.bounds[-1][3]
        return self.predictions.iloc[first - self.bounds[0][2] : last - self.bounds[0][2]]

    def centred(self) -> pd.Series:
        """Every prediction minus the centre of the model that made it (policies trade
        the part of a forecast beyond its model's training drift: two fold models that
        learnt different average returns are put on one scale)."""
        out = self.predictions.copy()
        start = self.bounds[0][2]
        for (_, _, test_start, test_stop), center in zip(self.bounds, self.centers, strict=True):
            out.iloc[test_start - start : test_stop - start] -= center
        return out


@dataclass
class Evaluation:
    """The out-of-sample judgement of a recipe: its positions, backtest and metrics.

    ``fold_policies`` are the parameters each scored fold traded with (fitted on that
    fold's training rows only); ``policy`` is fitted on every out-of-sample prediction
    of the window and is the one the version serves with.
    """

    backtest: BacktestResult
    metrics: dict[str, float]
    fold_policies: list[dict[str, Any]]
    policy: FittedPolicy
    fitted: list[FittedPolicy] = field(default_factory=list)  # each scored fold's


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
    walk_forward: WalkForward | None = None
    evaluation: Evaluation | None = None

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
    """Which families a feature list draws on: ``ohlcv``; ``derivatives`` when any
    column of ``marts.fct_features_hourly`` is in it, followed by the mart's families
    it uses (``funding``, ``open_interest``, ``liquidations``, ``sentiment``)."""
    from brain_lib.market import data

    families = {
        "funding": data.FUNDING_COLUMNS,
        "open_interest": data.OPEN_INTEREST_COLUMNS,
        "liquidations": data.LIQUIDATION_COLUMNS,
        "sentiment": data.SENTIMENT_COLUMNS,
    }
    names = set(feature_names)
    extra = set(data.FEATURE_COLUMNS)
    sets = ["ohlcv"] if names - extra else []
    used = [family for family, cols in families.items() if names & set(cols)]
    return sets + (["derivatives", *used] if used else [])


def load_training_candles(
    conn: Any,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """Candles ``start <= ts < end`` with the symbol's derivatives features and funding
    charges joined on: the one loader of daily-retrain, the spool replay and the
    nightly analysis, so a version is always judged on the data it was trained on.

    Candles kept in ``raw.quarantine_ohlcv`` (a failed data-quality rule,
    :mod:`brain_lib.quality`) are left out: the raw rows stay, nothing learns from them
    (:func:`candles_on_grid` then makes the hole explicit).

    The features of ``marts.fct_features_hourly`` (funding, open interest,
    liquidations, sentiment; point-in-time: bar ``ts`` only sees data stamped at or
    before its close) are added as columns when the timeframe is 1h and the symbol has
    any of them in the window; a column with no value in the window is left out.
    Otherwise — no derivatives data, another timeframe, the mart not built yet — the
    candles come alone and the model trains on OHLCV features.

    :data:`FUNDING_COLUMN` is added when the symbol has funding prints in
    ``raw.funding_rates`` (a perpetual): the rate a unit long pays over each bar, i.e.
    the sum of the prints stamped in the bar's ``(open, close]`` (0 for other bars). The
    backtest charges it; it is a cost booked at the bar's close, never an input of a
    decision or a feature.
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
    charges = _funding_charges(conn, exchange, symbol, timeframe, candles)
    if charges is not None:
        candles = candles.assign(**{FUNDING_COLUMN: charges})
    if timeframe != "1h":
        return candles
    try:
        extra = load_derivative_features(conn, exchange, symbol, start, end)
    except MartNotBuiltError:
        return candles
    extra = extra.reindex(candles.index)
    # a column with no value in the window carries nothing (and would make the
    # manifest claim a family the model never saw): left out
    extra = extra.loc[:, extra.notna().any()]
    if extra.empty or extra.shape[1] == 0:
        return candles
    return candles.join(extra)


def _funding_charges(
    conn: Any, exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame
) -> pd.Series | None:
    """Funding a unit long pays over each bar of ``candles``, or None without prints.

    Quarantined prints (``raw.quarantine_funding_rates``) are left out, as dbt's
    staging view does."""
    if candles.empty:
        return None
    bar = bar_length(timeframe)
    first = pd.Timestamp(candles.index[0])
    last = pd.Timestamp(candles.index[-1]) + bar
    rows = conn.execute(
        """
        select f.ts, f.funding_rate from raw.funding_rates f
        where f.exchange = %s and f.symbol = %s and f.ts > %s and f.ts <= %s
          and f.funding_rate = f.funding_rate
          and not exists (
              select 1 from raw.quarantine_funding_rates q
              where q.exchange = f.exchange and q.symbol = f.symbol and q.ts = f.ts
          )
        order by f.ts
        """,
        (exchange, symbol, first.to_pydatetime(), last.to_pydatetime()),
    ).fetchall()
    if not rows:
        return None
    stamps = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], utc=True))
    rates = pd.Series([float(r[1]) for r in rows], index=stamps)
    # a print at F is paid by the position held over the bar whose (open, close] holds F
    opens = (stamps - pd.Timedelta(1, "ns")).floor(bar)
    per_bar = rates.groupby(opens).sum()
    return per_bar.reindex(pd.DatetimeIndex(candles.index)).fillna(0.0)


_TIMEFRAME = re.compile(r"([0-9]+)([mhdw])")
_UNITS = {"m": "min", "h": "h", "d": "D", "w": "W"}


def bar_length(timeframe: str) -> pd.Timedelta:
    """Length of a ccxt-style timeframe (``5m``, ``1h``, ``1d``, ``1w``)."""
    match = _TIMEFRAME.fullmatch(timeframe) if isinstance(timeframe, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"unsupported timeframe {timeframe!r}: use e.g. 5m, 1h, 4h, 1d")
    amount, unit = int(match.group(1)), match.group(2)
    return pd.Timedelta(amount * 7, unit="D") if unit == "w" else pd.Timedelta(amount, _UNITS[unit])


def candles_on_grid(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``candles`` reindexed on the regular bar grid from their first to their last bar.

    A missing bar (an exchange outage, a quarantined candle) becomes a row of NaN, so
    that returns, rolling windows, labels, purge and embargo count bars, not rows:
    features whose window holds the hole are NaN (:mod:`brain_lib.features`), a label
    whose horizon ends in it is NaN (the row is not trained on), and the backtest holds
    no position over it (:func:`brain_lib.backtest.backtest_positions`). A stamp off the
    grid raises :class:`DataError`."""
    if candles.empty:
        return candles
    bar = bar_length(timeframe)
    index = pd.DatetimeIndex(candles.index)
    offsets = (index - index[0]) % bar
    if (offsets != pd.Timedelta(0)).any():
        stray = index[offsets != pd.Timedelta(0)][0]
        raise DataError(f"candle at {stray} is not on the {timeframe} grid of {index[0]}")
    grid = pd.date_range(index[0], index[-1], freq=bar, name=index.name or "ts")
    if len(grid) == len(index):
        return candles
    out = candles.reindex(grid)
    if FUNDING_COLUMN in out:
        out[FUNDING_COLUMN] = out[FUNDING_COLUMN].fillna(0.0)
    return out


def feature_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """Every feature of every bar (warm-up rows included): the OHLCV features of
    :func:`~brain_lib.features.build_features` followed by the derivatives columns the
    candles carry (:func:`exogenous_columns`, from :func:`load_training_candles`)."""
    features = build_features(candles[list(OHLCV_COLUMNS)])
    extra = exogenous_columns(candles)
    if extra:
        features = features.join(candles[extra].astype(float))
    return features


def build_dataset(
    candles: pd.DataFrame, label_horizon: int, timeframe: str = "1h"
) -> tuple[pd.DataFrame, pd.Series]:
    """Features (:func:`feature_frame`) and label on the bar grid
    (:func:`candles_on_grid`), without the warm-up rows, the rows with no label yet,
    and the rows of a missing bar or the bar after one (no one-bar return)."""
    grid = candles_on_grid(candles, timeframe)
    features = feature_frame(grid)
    label = forward_return(grid, horizon=label_horizon)
    keep = np.ones(len(grid), dtype=bool)
    keep[: feature_warmup_bars()] = False
    keep &= label.notna().to_numpy()
    keep &= features["ret_1"].notna().to_numpy()
    return features[keep], label[keep]


def walk_forward_predictions(X: pd.DataFrame, y: pd.Series, config: TrainingConfig) -> WalkForward:
    """Out-of-sample predictions of every test fold (the calibration fold included),
    each from a model fit on its own purged, embargoed training fold only.

    Raises :class:`ConfigError` when the label horizon is longer than a test fold."""
    splitter = config.splitter()
    size = config.test_size or len(X) // (splitter.n_splits + 1)
    if config.label_horizon > size:
        raise ConfigError(
            f"invalid setting label_horizon={config.label_horizon}: longer than a test fold "
            f"({size} rows of {len(X)}); use a shorter horizon, fewer splits or more data"
        )
    folds: list[dict[str, Any]] = [dict(f) for f in splitter.describe(len(X))]
    parts: list[pd.Series] = []
    models: list[Model] = []
    centers: list[float] = []
    bounds: list[tuple[int, int, int, int]] = []
    for i, (train_idx, test_idx) in enumerate(splitter.split(X)):
        model = new_model(config)
        model.fit(X.iloc[train_idx], y.iloc[train_idx])
        parts.append(pd.Series(predict_fold(model, X, test_idx), index=X.index[test_idx]))
        models.append(model)
        centers.append(prediction_center(model, X.iloc[train_idx]))
        bounds.append(
            (int(train_idx[0]), int(train_idx[-1]) + 1, int(test_idx[0]), int(test_idx[-1]) + 1)
        )
        folds[i]["role"] = "calibration" if i < CALIBRATION_FOLDS else "scored"
        folds[i]["train_rows"] = len(train_idx)
        folds[i]["test_rows"] = len(test_idx)
        folds[i]["test_from"] = X.index[test_idx[0]].isoformat()
        folds[i]["test_to"] = X.index[test_idx[-1]].isoformat()
    return WalkForward(pd.concat(parts), folds, bounds, models, centers)


def predict_fold(model: Model, X: pd.DataFrame, test_idx: np.ndarray) -> np.ndarray:
    """``model``'s predictions of the rows ``test_idx`` of ``X``.

    A model that reads the bars before a row (a sequence model's ``context_rows``)
    gets that many rows before the fold along with it, and their predictions are
    dropped: features of earlier bars are known when a fold's first bar is predicted
    (no label is read), so the fold's first bars get full windows, as they would live.
    """
    context = int(getattr(model, "context_rows", 0))
    first = int(test_idx[0])
    lead = np.arange(max(0, first - context), first)
    if not len(lead):
        return np.asarray(model.predict(X.iloc[test_idx]))
    rows = np.concatenate([lead, np.asarray(test_idx)])
    return np.asarray(model.predict(X.iloc[rows]))[len(lead) :]


def prediction_center(model: Model, X_train: pd.DataFrame) -> float:
    """A model's mean prediction on the rows it was trained on (in sample: no row after
    its training window is read)."""
    return float(np.mean(model.predict(X_train)))


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


def _recipe(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model_type": manifest["model_type"],
        "hyperparameters": manifest["hyperparameters"],
        "features": manifest["features"],
        "label": manifest["label"],
        "policy": policy_spec_of(manifest).to_dict(),
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def recipe_key(manifest: Mapping[str, Any]) -> str:
    """Identity of what a version was made by: model type, hyperparameters, features,
    label, position policy and code version. Two versions with the same key, evaluated
    on the same window with the same walk-forward, give identical positions."""
    return _digest({**_recipe(manifest), "code_version": manifest.get("code_version")})


def trial_key(manifest: Mapping[str, Any]) -> str:
    """Identity of a *trial* for the deflated Sharpe ratio: the recipe without the code
    version. Retraining a recipe on new data, or under a new commit, is not a new trial;
    another model type, hyperparameter, feature set, horizon or policy is."""
    return _digest(_recipe(manifest))


def policy_spec_of(manifest: Mapping[str, Any]) -> PolicySpec:
    """The policy a manifest's recipe trades with: ``policy.spec``, or for a format-1
    manifest (no policy recorded) the sign of the prediction, which is what it traded."""
    policy = manifest.get("policy")
    if isinstance(policy, Mapping) and "spec" in policy:
        return PolicySpec.from_dict(policy["spec"])
    return PolicySpec(kind="sign")


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _trading_grid(
    candles: pd.DataFrame, config: TrainingConfig
) -> tuple[pd.DataFrame, pd.Series, pd.Series | None]:
    """What the policy and the backtest read, once: the candles on the bar grid, the
    trailing volatility of every bar, and the funding to charge (None: none)."""
    grid = candles_on_grid(candles, config.timeframe)
    vol = pd.Series(
        trailing_volatility(grid["close"].to_numpy(dtype=float), config.policy.vol_window),
        index=grid.index,
    )
    funding = grid[FUNDING_COLUMN] if config.charge_funding and FUNDING_COLUMN in grid else None
    return grid, vol, funding


def evaluate_walk_forward(
    wf: WalkForward,
    X: pd.DataFrame,
    y: pd.Series,
    candles: pd.DataFrame,
    config: TrainingConfig,
    *,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> Evaluation:
    """Trade the scored folds with their own fitted policies and measure the result.

    For scored fold ``k``, the policy (``config.policy``) is fitted on the calibration
    set of that fold: the out-of-sample predictions of the earlier folds at rows inside
    fold ``k``'s training part (position ``< train_stop``, so their labels end before
    the purge and the embargo), with their labels and trailing volatility. The test
    rows of fold ``k`` are never seen by its policy. Positions carry over from one fold
    to the next (:func:`brain_lib.policy.apply_policies`) and are booked by
    :func:`brain_lib.backtest.backtest_positions` with the fee, the slippage and — when
    the candles carry :data:`FUNDING_COLUMN` and ``charge_funding`` — the funding.

    Metrics (all on the same out-of-sample bars, docs/metrics.md):
    :func:`brain_lib.metrics.compute_all` of the net returns; ``gross_sharpe`` (before
    costs); :func:`brain_lib.metrics.trading_statistics` (``turnover_per_bar``,
    ``exposure``, ``round_trips``, ``avg_holding_bars``); ``cost_paid`` and
    ``funding_paid`` (sums, as fractions of capital); the buy-and-hold baseline's
    ``buy_hold_sharpe``, ``buy_hold_total_return``, ``buy_hold_max_drawdown`` and
    ``buy_hold_annualised_return``; the flat baseline's ``flat_total_return`` and
    ``flat_max_drawdown`` (0: its Sharpe is undefined); ``excess_sharpe`` = sharpe −
    buy_hold_sharpe; ``information_ratio`` = the Sharpe of the net returns in excess of
    buy-and-hold's; ``policy_flat_folds``, the scored folds whose policy found no skill.

    ``window`` (booking bars, inclusive) restricts the measured bars: the champion's
    replay is scored on exactly the challenger's bars (:mod:`brain_lib.registry`).
    """
    ppy = m.periods_per_year(config.timeframe)
    context = PolicyContext(cost=config.cost_bps / 10_000.0, horizon=config.label_horizon)
    policy = get_policy(config.policy)
    grid, grid_vol, funding = _trading_grid(candles, config)
    vol = grid_vol.reindex(X.index).to_numpy()
    row_of = X.index.get_indexer(wf.predictions.index)
    centred = wf.centred()
    pred_all = centred.to_numpy(dtype=float)
    label_all = y.to_numpy(dtype=float)[row_of]
    vol_all = vol[row_of]
    scored = centred.loc[wf.scored.index]
    # every bar of the scored span, on the grid: a bar with no prediction (a hole, or
    # the bar after one) is a NaN signal, which keeps the book flat
    span = grid.index[(grid.index >= scored.index[0]) & (grid.index <= scored.index[-1])]
    segments: list[tuple[int, int, FittedPolicy]] = []
    fold_policies: list[dict[str, Any]] = []
    scored_bounds = wf.bounds[CALIBRATION_FOLDS:]
    for i, (_, train_stop, test_start, _) in enumerate(scored_bounds):
        cal = row_of < train_stop
        fitted = policy.fit(pred_all[cal], label_all[cal], vol_all[cal], context)
        start = span.get_loc(X.index[test_start])
        stop = (
            span.get_loc(X.index[scored_bounds[i + 1][2]])
            if i + 1 < len(scored_bounds)
            else len(span)
        )
        segments.append((int(start), int(stop), fitted))
        fold_policies.append({"fold": i + CALIBRATION_FOLDS, **fitted.params})
    positions = apply_policies(
        scored.reindex(span).to_numpy(dtype=float), grid_vol.reindex(span).to_numpy(), segments
    )
    bt = backtest_positions(
        pd.Series(positions, index=span),
        grid["close"],
        cost_bps=config.cost_bps,
        funding=funding,
    )
    if window is not None:
        bt = BacktestResult(bt.frame.loc[window[0] : window[1]])
        if bt.frame.empty:
            raise DataError(f"no out-of-sample bar in the window {window[0]} .. {window[1]}")
    frame = bt.frame
    metrics = m.compute_all(
        frame["net_return"],
        frame["position"],
        periods_per_year=ppy,
        risk_free_rate=config.risk_free_rate,
    )
    metrics["gross_sharpe"] = m.sharpe_ratio(
        frame["gross_return"], periods_per_year=ppy, risk_free_rate=config.risk_free_rate
    )
    stats = m.trading_statistics(frame["position"])
    metrics["turnover_per_bar"] = stats["turnover"]
    metrics["exposure"] = stats["exposure"]
    metrics["round_trips"] = stats["round_trips"]
    metrics["avg_holding_bars"] = stats["avg_holding_bars"]
    metrics["cost_paid"] = float(frame["cost"].sum())
    metrics["funding_paid"] = float(frame["funding"].sum())
    base = baselines(bt, cost_bps=config.cost_bps)
    bh = base["buy_hold"]
    metrics["buy_hold_sharpe"] = m.sharpe_ratio(
        bh, periods_per_year=ppy, risk_free_rate=config.risk_free_rate
    )
    metrics["buy_hold_total_return"] = float(np.expm1(np.log1p(bh).sum()))
    metrics["buy_hold_max_drawdown"] = m.max_drawdown(bh)
    metrics["buy_hold_annualised_return"] = m.annualised_return(bh, periods_per_year=ppy)
    metrics["flat_total_return"] = 0.0
    metrics["flat_max_drawdown"] = 0.0
    metrics["excess_sharpe"] = metrics["sharpe"] - metrics["buy_hold_sharpe"]
    metrics["information_ratio"] = m.sharpe_ratio(frame["net_return"] - bh, periods_per_year=ppy)
    metrics["policy_flat_folds"] = float(sum(1 for p in fold_policies if p.get("entry") is None))
    final = policy.fit(pred_all, label_all, vol_all, context)
    return Evaluation(bt, metrics, fold_policies, final, [seg[2] for seg in segments])


def new_model(config: TrainingConfig) -> Model:
    """A fresh adapter of ``config.model_type`` with ``config.params``. A sequence model
    (:class:`~brain_lib.models.SequenceModel`) cuts its early-stopping validation tail
    like a test fold: its ``purge`` and ``embargo`` default to the config's label horizon
    and embargo (recorded with the other hyperparameters)."""
    params = dict(config.params)
    if is_sequence_model_type(MODEL_TYPES.get(config.model_type)):
        params.setdefault("purge", config.label_horizon)
        params.setdefault("embargo", config.embargo)
    return get_model(config.model_type, **params)


def fit_final(X: pd.DataFrame, y: pd.Series, config: TrainingConfig) -> Model:
    """The model of the version: refit on the whole training window."""
    return new_model(config).fit(X, y)


# rows of the walk-forward's out-of-sample windows a new version's SHAP explains
SHAP_ROWS = 1000


def version_importance(
    wf: WalkForward,
    evaluation: Evaluation,
    X: pd.DataFrame,
    y: pd.Series,
    candles: pd.DataFrame,
    config: TrainingConfig,
    *,
    max_rows: int = 2000,
    n_repeats: int = 3,
    seed: int = 0,
    shap_rows: int = SHAP_ROWS,
) -> list[dict[str, Any]]:
    """Feature importance of a new version, out of sample, as rows for
    ``raw.feature_importance``. No row is explained by a model that was trained on it:

    * SHAP: each scored fold's model on a seeded sample of its own test rows,
      ``shap_rows`` pooled over the folds
      (:func:`brain_lib.importance.shap_importance_folds`). TreeSHAP costs about 0.1 ms
      a row; on the demo market 1,000 sampled rows rank the top 10 features as all the
      out-of-sample rows do (Spearman >= 0.95, ``tests/test_importance_sampling.py``)
      at a sixth of the cost;
    * correlation: Spearman of each feature with the label and with the out-of-sample
      prediction, on the scored rows;
    * permutation: the last fold's model on its test rows, each shuffle scored by the
      Sharpe of the positions that fold's own fitted policy takes.
    """
    from brain_lib import importance as imp

    scored = wf.scored
    rows_oos = X.loc[scored.index]
    folds = [
        (wf.models[i], X.iloc[test_start:test_stop])
        for i, (_, _, test_start, test_stop) in enumerate(wf.bounds)
        if i >= CALIBRATION_FOLDS
    ]
    results = [
        imp.shap_importance_folds(folds, max_rows=shap_rows, seed=seed),
        imp.correlation_importance(rows_oos, y.loc[scored.index], predictions=scored),
    ]
    _, _, test_start, test_stop = wf.bounds[-1]
    last_policy = evaluation.fitted[-1]
    grid, grid_vol, funding = _trading_grid(candles, config)
    vol = grid_vol.reindex(X.index[test_start:test_stop]).to_numpy()

    center = wf.centers[-1]

    def positions(pred: np.ndarray) -> np.ndarray:
        return apply_policies(pred - center, vol[-len(pred) :], [(0, len(pred), last_policy)])

    results.append(
        imp.permutation_importance(
            wf.models[-1],
            X.iloc[test_start:test_stop],
            y.iloc[test_start:test_stop],
            grid["close"],
            n_repeats=n_repeats,
            seed=seed,
            max_rows=max_rows,
            positions=positions,
            cost_bps=config.cost_bps,
            funding=funding,
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
    walk_forward: WalkForward,
    evaluation: Evaluation,
    model: Model,
) -> TrainingResult:
    """Bundle the stages' outputs with the manifest of the version."""
    fingerprint = dataset_fingerprint(candles)
    names = list(X.columns)
    backtest = evaluation.backtest
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
            "missing_bars": len(candles_on_grid(candles, config.timeframe)) - len(candles),
            "training_rows": len(X),
            "fingerprint_sha256": fingerprint,
        },
        "label": {"kind": "forward_return", "horizon": config.label_horizon},
        "walk_forward": {
            "n_splits": config.n_splits,
            "calibration_folds": CALIBRATION_FOLDS,
            "test_size": config.test_size,
            "train_size": config.train_size,
            "purge": config.label_horizon,
            "embargo": config.embargo,
            "folds": walk_forward.folds,
        },
        "policy": {
            "spec": config.policy.to_dict(),
            "folds": evaluation.fold_policies,
            # to serve: position = policy(prediction - prediction_center), with the
            # parameters fitted on every out-of-sample prediction of the window
            "serving": evaluation.policy.params,
            "prediction_center": prediction_center(model, X),
        },
        "backtest": {
            "fee_bps": config.fee_bps,
            "slippage_bps": config.slippage_bps,
            "funding_charged": bool(config.charge_funding and FUNDING_COLUMN in candles),
            "periods_per_year": m.periods_per_year(config.timeframe),
            "oos_start": backtest.frame.index[0].isoformat(),
            "oos_end": backtest.frame.index[-1].isoformat(),
        },
        "libraries": _library_versions(),
        "code_version": code_version(),
    }
    manifest["trial_key"] = trial_key(manifest)
    return TrainingResult(
        exchange=exchange,
        symbol=symbol,
        timeframe=config.timeframe,
        model=model,
        metrics=evaluation.metrics,
        backtest=backtest,
        oos_predictions=walk_forward.scored,
        folds=walk_forward.folds,
        feature_names=names,
        train_start=candles.index[0],
        train_end=candles.index[-1],
        n_rows=len(X),
        fingerprint=fingerprint,
        manifest=manifest,
        walk_forward=walk_forward,
        evaluation=evaluation,
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
        OHLCV indexed by bar open time (UTC), ascending, as
        :func:`load_training_candles` returns it (a missing bar is allowed: it becomes
        an explicit hole on the bar grid).
    exchange, symbol : str
        Where the candles come from (recorded in the manifest).
    config : TrainingConfig
        Model type, hyperparameters, label horizon, walk-forward, policy and costs.

    Returns
    -------
    TrainingResult
        The model refit on the whole window, out-of-sample metrics and backtest, the
        walk-forward and its evaluation, and the manifest (without the artifact hash,
        which the registry adds).
    """
    config = config or TrainingConfig()
    check_enough_rows(candles, exchange, symbol, config)
    X, y = build_dataset(candles, config.label_horizon, config.timeframe)
    wf = walk_forward_predictions(X, y, config)
    evaluation = evaluate_walk_forward(wf, X, y, candles, config)
    model = fit_final(X, y, config)
    return assemble_result(
        candles=candles,
        exchange=exchange,
        symbol=symbol,
        config=config,
        X=X,
        walk_forward=wf,
        evaluation=evaluation,
        model=model,
    )
