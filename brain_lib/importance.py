r"""Feature importance of a fitted model: SHAP, permutation and rank correlation.

Three pure functions, each returning an :class:`ImportanceResult` (the formulas,
sampling rules and skipped cases are also in ``docs/importance.md``):

* :func:`shap_importance` — mean absolute SHAP value per feature. Tree models use the
  booster's own TreeSHAP (LightGBM ``pred_contrib``, XGBoost ``pred_contribs``); any
  other model with a ``predict`` method goes through the ``shap`` package's
  model-agnostic permutation explainer.
* :func:`permutation_importance` — how much the out-of-sample strategy Sharpe drops
  (and the squared error rises) when one feature's column is shuffled.
* :func:`correlation_importance` — Spearman rank correlation of each feature with the
  label (and with the model's prediction); model-free.

Conventions shared by all three:

* ``table`` is indexed by feature (index name ``"feature"``), sorted by ``rank``, with
  the columns ``importance`` (the method's raw value), ``normalised`` and ``rank``
  followed by method-specific columns.
* ``normalised = importance / Σ |importance|`` over the features in the table, so the
  normalised values of non-negative importances sum to 1 (a negative importance, e.g. a
  Sharpe that *rises* when a feature is shuffled, keeps its sign and the absolute
  values sum to 1). When every importance is 0, every normalised value is 0 (not NaN).
* ``rank`` is 1 for the most important feature, by ``importance`` descending; ties are
  broken by feature name, so ranks are always ``1..k`` with no repeats.
* A feature whose non-missing values in the rows used take fewer than two distinct
  values is left out of the table and listed in ``skipped`` with the reason
  ``"constant in the window"`` (``"no values in the window"`` when every value is
  missing); it never appears as NaN.
* A window with fewer than ``min_rows`` rows (default 200), or a model for which no
  SHAP explainer exists, does not raise: the result has ``status == "skipped"``, an
  empty table and a ``reason``, so a flow can record the skip. Inputs that are wrong
  by construction (mismatched index, duplicate columns, bad parameters) raise
  :class:`ValueError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from brain_lib.backtest import Booking, position_from_prediction
from brain_lib.metrics import periods_per_year, sharpe_ratio
from brain_lib.models import LightGBMModel, SequenceModel, XGBoostModel
from brain_lib.models._base import check_feature_columns

__all__ = [
    "CONSTANT_REASON",
    "DEFAULT_MIN_ROWS",
    "NO_VALUES_REASON",
    "STATUS_OK",
    "STATUS_SKIPPED",
    "ImportanceResult",
    "correlation_importance",
    "importance_rows",
    "permutation_importance",
    "shap_importance",
    "shap_importance_folds",
    "top_rank_agreement",
]

DEFAULT_MIN_ROWS = 200
"""Fewest rows a window needs before any importance is computed."""

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
CONSTANT_REASON = "constant in the window"
NO_VALUES_REASON = "no values in the window"

_BASE_COLUMNS = ("importance", "normalised", "rank")
_SHAP_COLUMNS = ("mean_shap",)
_PERMUTATION_COLUMNS = ("sharpe_drop_std", "mse_increase", "mse_increase_std")
_CORRELATION_COLUMNS = ("spearman_label", "spearman_prediction")

# model-agnostic SHAP (shap's permutation explainer): background rows that stand in for
# "feature unknown", and antithetic permutations per explained row
_AGNOSTIC_BACKGROUND_ROWS = 50
_AGNOSTIC_PERMUTATIONS = 5

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ImportanceResult:
    """Feature importance of one method on one window.

    Attributes
    ----------
    method : str
        ``"shap"``, ``"permutation"`` or ``"correlation"``.
    table : pandas.DataFrame
        One row per ranked feature, indexed by feature name and sorted by ``rank``:
        ``importance``, ``normalised``, ``rank`` and the method's own columns. Empty
        (with the same columns) when ``status == "skipped"``.
    skipped : dict of str to str
        Features left out of the table, with the reason (``"constant in the window"``).
    window : tuple or None
        Index labels of the first and last row used (``None`` for an empty input).
        For a random sample this is the span of the sample.
    n_rows : int
        Number of rows used (after sampling).
    status : str
        ``"ok"`` or ``"skipped"``.
    reason : str or None
        Why the whole computation was skipped; ``None`` when ``status == "ok"``.
    details : dict
        Method-specific scalars: the SHAP explainer and base value, the baseline
        Sharpe and MSE of a permutation run, ...
    values : pandas.DataFrame or None
        SHAP only, with ``return_values=True``: the contribution of every feature
        (skipped ones included) on every explained row; each row sums to the
        prediction minus ``details["base_value"]``.
    """

    method: str
    table: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    window: tuple[Any, Any] | None = None
    n_rows: int = 0
    status: str = STATUS_OK
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    values: pd.DataFrame | None = None

    @property
    def ok(self) -> bool:
        """True when the importance was computed."""
        return self.status == STATUS_OK

    @property
    def ranking(self) -> list[str]:
        """Feature names from the most to the least important."""
        return [str(name) for name in self.table.index]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _check_frame(X: pd.DataFrame) -> None:
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"X must be a pandas DataFrame, got {type(X).__name__}")
    if X.shape[1] == 0:
        raise ValueError("X has no feature columns")
    if X.columns.has_duplicates:
        dupes = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
        raise ValueError(f"X has duplicate feature columns: {dupes}")


def _check_min_rows(min_rows: int) -> None:
    if min_rows < 1:
        raise ValueError(f"min_rows must be >= 1, got {min_rows}")


def _check_rows(max_rows: int, min_rows: int) -> None:
    _check_min_rows(min_rows)
    if max_rows < min_rows:
        raise ValueError(f"max_rows ({max_rows}) must be >= min_rows ({min_rows})")


def _window(index: pd.Index) -> tuple[Any, Any] | None:
    return (index[0], index[-1]) if len(index) else None


def _screen(X: pd.DataFrame) -> dict[str, str]:
    """Features that carry no information in these rows, with the reason."""
    counts = X.count()
    lows = X.min(skipna=True)
    highs = X.max(skipna=True)
    skipped: dict[str, str] = {}
    for name in X.columns:
        if counts[name] == 0:
            skipped[name] = NO_VALUES_REASON
        elif lows[name] == highs[name]:
            skipped[name] = CONSTANT_REASON
    return skipped


def _too_few(n: int, min_rows: int) -> str | None:
    if n < min_rows:
        return f"only {n} rows in the window, at least {min_rows} are needed"
    return None


def _empty_table(extra: Sequence[str]) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            col: pd.Series(dtype="int64" if col == "rank" else "float64")
            for col in (*_BASE_COLUMNS, *extra)
        }
    )
    table.index = pd.Index([], dtype=object, name="feature")
    return table


def _skipped_result(
    method: str,
    reason: str,
    extra: Sequence[str],
    *,
    index: pd.Index,
    skipped: dict[str, str] | None = None,
) -> ImportanceResult:
    return ImportanceResult(
        method=method,
        table=_empty_table(extra),
        skipped=dict(skipped or {}),
        window=_window(index),
        n_rows=len(index),
        status=STATUS_SKIPPED,
        reason=reason,
    )


def _rank_table(importance: pd.Series, extra: pd.DataFrame) -> pd.DataFrame:
    """Add ``normalised`` and ``rank`` to the raw importances and sort by rank."""
    values = importance.to_numpy(dtype=float)
    total = float(np.abs(values).sum())
    normalised = values / total if total > 0.0 else np.zeros_like(values)
    order = sorted(range(len(values)), key=lambda i: (-values[i], str(importance.index[i])))
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(1, len(values) + 1)
    table = pd.DataFrame(
        {"importance": values, "normalised": normalised, "rank": rank},
        index=pd.Index(importance.index, name="feature"),
    )
    table = pd.concat([table, extra.reindex(table.index)], axis=1)
    return table.sort_values("rank")


# --------------------------------------------------------------------------- #
# SHAP
# --------------------------------------------------------------------------- #
def _lightgbm_contributions(model: Any, X: pd.DataFrame) -> FloatArray:
    """LightGBM's TreeSHAP: ``(n, k + 1)``, last column the expected value (raw score)."""
    check_feature_columns(model.feature_names, X)
    out = model.booster.predict(X.to_numpy(dtype=float), pred_contrib=True)
    return np.asarray(out, dtype=np.float64)


def _xgboost_contributions(model: Any, X: pd.DataFrame) -> FloatArray:
    """XGBoost's TreeSHAP: ``(n, k + 1)``, last column the bias (margin)."""
    import xgboost as xgb

    check_feature_columns(model.feature_names, X)
    data = xgb.DMatrix(X.to_numpy(dtype=float), feature_names=[str(c) for c in X.columns])
    out = model.booster.predict(data, pred_contribs=True)
    return np.asarray(out, dtype=np.float64)


_NATIVE_EXPLAINERS: tuple[tuple[type, str, Callable[[Any, pd.DataFrame], FloatArray]], ...] = (
    (LightGBMModel, "lightgbm_pred_contrib", _lightgbm_contributions),
    (XGBoostModel, "xgboost_pred_contribs", _xgboost_contributions),
)


def _agnostic_contributions(
    predict: Callable[[pd.DataFrame], Any],
    X: pd.DataFrame,
    background: pd.DataFrame,
    seed: int,
) -> FloatArray:
    """shap's permutation explainer over an independent masker on ``background``."""
    import shap

    columns = X.columns

    def f(rows: FloatArray) -> FloatArray:
        frame = pd.DataFrame(rows, columns=columns)
        return np.asarray(predict(frame), dtype=np.float64)

    masker = shap.maskers.Independent(background.to_numpy(dtype=float), max_samples=len(background))
    k = X.shape[1]
    # shap draws its permutations from NumPy's global state and seeds it: restore it
    # afterwards, so that calling this function leaves the caller's random state alone
    state = np.random.get_state()
    try:
        explainer = shap.PermutationExplainer(f, masker, seed=seed)
        explanation = explainer(
            X.to_numpy(dtype=float),
            max_evals=_AGNOSTIC_PERMUTATIONS * (2 * k + 1),
            silent=True,
        )
    finally:
        np.random.set_state(state)
    values = np.asarray(explanation.values, dtype=np.float64).reshape(len(X), k)
    base = np.asarray(explanation.base_values, dtype=np.float64).reshape(len(X), 1)
    return np.hstack([values, base])


def _random_rows(n: int, max_rows: int, seed: int) -> npt.NDArray[np.intp]:
    """Positions of a seeded random sample of at most ``max_rows`` of ``n`` rows, in order."""
    if n <= max_rows:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def shap_importance(
    model: object,
    X: pd.DataFrame,
    *,
    max_rows: int = 5000,
    seed: int = 0,
    min_rows: int = DEFAULT_MIN_ROWS,
    agnostic_max_rows: int = 500,
    return_values: bool = False,
) -> ImportanceResult:
    r"""Mean absolute SHAP value of every feature.

    Parameters
    ----------
    model : object
        A fitted model adapter (:class:`~brain_lib.models.LightGBMModel`,
        :class:`~brain_lib.models.XGBoostModel`, or any object with a
        ``predict(DataFrame)`` method for the model-agnostic path).
    X : pandas.DataFrame
        Feature rows to explain, with the columns the model was trained on.
    max_rows : int, default=5000
        Largest number of rows explained by the native tree explainers; a larger
        ``X`` is sampled (see Notes).
    seed : int, default=0
        Seed of the row sample, the background sample and shap's permutations.
    min_rows : int, default=200
        Fewer rows in ``X`` give a skipped result.
    agnostic_max_rows : int, default=500
        Largest number of rows explained by the model-agnostic path, which costs
        far more per row (see Notes).
    return_values : bool, default=False
        Also return the per-row contributions in ``result.values``.

    Returns
    -------
    ImportanceResult
        ``table`` columns: ``importance`` = :math:`\frac{1}{n}\sum_i |\phi_{ij}|`,
        ``normalised``, ``rank``, ``mean_shap`` = :math:`\frac{1}{n}\sum_i \phi_{ij}`
        (signed). ``details``: ``explainer`` (which path ran) and ``base_value``
        (the expected model output :math:`\phi_0`).

    Raises
    ------
    ValueError
        If ``X`` is not a DataFrame with unique columns, its columns differ from the
        model's, or ``max_rows < min_rows``.

    Notes
    -----
    Explainers, in order of preference:

    * LightGBM: ``booster.predict(X, pred_contrib=True)``, LightGBM's own TreeSHAP
      (path-dependent, exact). Contributions are in raw-score units, so for a
      regression objective each row satisfies
      :math:`\sum_j \phi_{ij} = f(x_i) - \phi_0`.
    * XGBoost: ``booster.predict(DMatrix, pred_contribs=True)``, the same algorithm in
      margin units (identical to the prediction for ``reg:*`` objectives).
    * Any other model with ``predict``: ``shap.PermutationExplainer`` with an
      independent masker over a seeded sample of 50 background rows from ``X`` and
      5 antithetic permutations per row, i.e. :math:`5(2k + 1) \times 50` model
      evaluations per explained row. Exact for additive models, an estimate
      otherwise; the efficiency property (rows sum to prediction minus base value)
      holds exactly. It explains at most ``min(max_rows, agnostic_max_rows)`` rows.
      shap draws from NumPy's global random state, seeded with ``seed``; the caller's
      global state is restored afterwards.
    * A sequence model (:class:`~brain_lib.models.SequenceModel`: LSTM, Transformer,
      CNN) → skipped result with the reason: its prediction of a row reads the bars
      before it, which a row-by-row explainer would mix up (and the permutation
      explainer would cost thousands of network passes per row). Its importance is the
      permutation importance, and :meth:`~brain_lib.models.SequenceModel.gradient_x_input`.
    * An object with neither → skipped result with the reason.

    Sampling: when ``X`` has more rows than the cap, a seeded random sample
    (``numpy.random.default_rng(seed)``, without replacement) of exactly the cap is
    explained, kept in time order. SHAP values need no consecutive bars, and a random
    sample covers the whole window. ``window`` is the span of the sample.

    Features constant in the explained rows are still passed to the model (it needs
    every column) and kept in ``values``, but they are left out of the table.
    """
    _check_frame(X)
    _check_rows(max_rows, min_rows)
    if agnostic_max_rows < 1:
        raise ValueError(f"agnostic_max_rows must be >= 1, got {agnostic_max_rows}")
    method = "shap"
    too_few = _too_few(len(X), min_rows)
    if too_few:
        return _skipped_result(method, too_few, _SHAP_COLUMNS, index=X.index)

    if isinstance(model, SequenceModel):
        reason = (
            f"no SHAP explainer for the sequence model {model.model_type}: its prediction "
            f"of a bar reads the {model.window - 1} bars before it, so rows cannot be "
            "explained one by one (its permutation importance is recorded)"
        )
        return _skipped_result(method, reason, _SHAP_COLUMNS, index=X.index)
    native = next(
        ((name, fn) for cls, name, fn in _NATIVE_EXPLAINERS if isinstance(model, cls)), None
    )
    predict = getattr(model, "predict", None)
    if native is not None:
        explainer, contrib_fn = native
        rows = X.iloc[_random_rows(len(X), max_rows, seed)]
        contributions = contrib_fn(model, rows)
    elif callable(predict):
        try:
            import shap  # noqa: F401
        except ImportError:
            reason = f"no SHAP explainer for {type(model).__name__}: shap is not installed"
            return _skipped_result(method, reason, _SHAP_COLUMNS, index=X.index)
        explainer = "shap_permutation"
        rows = X.iloc[_random_rows(len(X), min(max_rows, agnostic_max_rows), seed)]
        background = X.iloc[_random_rows(len(X), _AGNOSTIC_BACKGROUND_ROWS, seed + 1)]
        contributions = _agnostic_contributions(predict, rows, background, seed)
    else:
        reason = (
            f"no SHAP explainer for {type(model).__name__}: it is not a tree model with "
            "native contributions and has no predict method"
        )
        return _skipped_result(method, reason, _SHAP_COLUMNS, index=X.index)

    k = X.shape[1]
    phi = pd.DataFrame(contributions[:, :k], index=rows.index, columns=X.columns)
    details: dict[str, Any] = {
        "explainer": explainer,
        "base_value": float(np.mean(contributions[:, k])),
    }
    return _shap_result(phi, rows, details, values=phi if return_values else None)


def _shap_result(
    phi: pd.DataFrame,
    rows: pd.DataFrame,
    details: dict[str, Any],
    values: pd.DataFrame | None = None,
) -> ImportanceResult:
    """The SHAP table of the contributions ``phi`` of the explained ``rows``: features
    constant in the rows left out, the rest ranked by mean |SHAP|."""
    skipped = _screen(rows)
    kept = [c for c in phi.columns if c not in skipped]
    if not kept:
        return ImportanceResult(
            method="shap",
            table=_empty_table(_SHAP_COLUMNS),
            skipped=skipped,
            window=_window(rows.index),
            n_rows=len(rows),
            status=STATUS_SKIPPED,
            reason="every feature is constant in the window",
            details=details,
            values=values,
        )
    table = _rank_table(phi[kept].abs().mean(), pd.DataFrame({"mean_shap": phi[kept].mean()}))
    return ImportanceResult(
        method="shap",
        table=table,
        skipped=skipped,
        window=_window(rows.index),
        n_rows=len(rows),
        details=details,
        values=values,
    )


def shap_importance_folds(
    folds: Sequence[tuple[object, pd.DataFrame]],
    *,
    max_rows: int = 5000,
    seed: int = 0,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> ImportanceResult:
    r"""Mean absolute SHAP value, pooled over walk-forward folds: each fold's model
    explains only its own test rows, so no row is explained by a model trained on it.

    Parameters
    ----------
    folds : sequence of (model, X_test)
        The fitted model of each fold and that fold's out-of-sample feature rows.
    max_rows : int, default=5000
        Rows explained in all; each fold explains a seeded sample of its share,
        ``max_rows`` split in proportion to the folds' sizes.
    seed, min_rows
        As :func:`shap_importance` (``min_rows`` applies to the pooled rows).

    Returns
    -------
    ImportanceResult
        As :func:`shap_importance`, over the pooled rows: ``importance`` =
        :math:`\frac{1}{n}\sum_i |\phi_{ij}|` with each row's contributions from its own
        fold's model. ``details``: ``explainer``, ``n_folds``.
    """
    _check_rows(max_rows, min_rows)
    method = "shap"
    total = sum(len(X) for _, X in folds)
    if not folds or _too_few(total, min_rows):
        index = folds[0][1].index if folds else pd.Index([])
        reason = _too_few(total, min_rows) or "no folds to explain"
        return _skipped_result(method, reason, _SHAP_COLUMNS, index=index)
    parts: list[pd.DataFrame] = []
    explainers: set[str] = set()
    for i, (model, X) in enumerate(folds):
        share = max(1, round(max_rows * len(X) / total))
        result = shap_importance(
            model, X, max_rows=min(share, len(X)), seed=seed + i, min_rows=1, return_values=True
        )
        if result.values is None:
            return _skipped_result(
                method, result.reason or "no SHAP values", _SHAP_COLUMNS, index=X.index
            )
        parts.append(result.values)
        explainers.add(str(result.details.get("explainer")))
    phi = pd.concat(parts).sort_index()
    rows = pd.concat([X for _, X in folds]).loc[phi.index]
    details: dict[str, Any] = {"explainer": ",".join(sorted(explainers)), "n_folds": len(folds)}
    return _shap_result(phi, rows, details)


# --------------------------------------------------------------------------- #
# permutation
# --------------------------------------------------------------------------- #
# the shuffled copies of the window are predicted in batches of about this many rows
# (one model call each, not one per shuffle)
_PREDICT_BATCH_ROWS = 200_000


def permutation_importance(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series,
    close: pd.Series,
    *,
    n_repeats: int = 5,
    seed: int = 0,
    max_rows: int = 5000,
    positions: Callable[[FloatArray], FloatArray] | None = None,
    cost_bps: float = 5.0,
    funding: pd.Series | None = None,
    timeframe: str = "1h",
    risk_free_rate: float = 0.0,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> ImportanceResult:
    r"""Drop in out-of-sample Sharpe (and rise in MSE) when a feature is shuffled.

    Parameters
    ----------
    model : Model
        A fitted model adapter; only ``predict(DataFrame)`` is used.
    X : pandas.DataFrame
        Feature rows of an out-of-sample window (data the model was not trained on —
        the caller's duty), one row per consecutive bar, indexed by bar in time order.
    y : pandas.Series
        The label of every row of ``X`` (same index); NaN labels are ignored by the MSE.
    close : pandas.Series
        Close prices on the bar grid, covering every bar of the window and the bar after
        it (see :func:`brain_lib.backtest.backtest_positions`).
    n_repeats : int, default=5
        Shuffles per feature.
    seed : int, default=0
        Seed of the shuffles.
    max_rows : int, default=5000
        Largest window; a longer ``X`` is cut to its most recent ``max_rows`` rows.
    positions : callable, optional
        Maps the window's predictions (an array, in time order) to the positions held:
        the fitted policy of the model's recipe (:mod:`brain_lib.policy`). Default: the
        sign of the prediction.
    cost_bps : float, default=5.0
        Cost per unit of position change (fee plus slippage).
    funding : pandas.Series, optional
        Funding a unit long pays per bar (:func:`brain_lib.backtest.backtest_positions`).
    timeframe : str, default="1h"
        Bar length, for the annualisation of the Sharpe ratio.
    risk_free_rate : float, default=0.0
        Annual risk-free rate of the Sharpe ratio.
    min_rows : int, default=200
        Fewer rows in ``X`` give a skipped result.

    Returns
    -------
    ImportanceResult
        ``table`` columns: ``importance`` = mean Sharpe drop over the repeats,
        ``normalised``, ``rank``, ``sharpe_drop_std``, ``mse_increase`` (mean) and
        ``mse_increase_std``. ``details``: ``baseline_sharpe``, ``baseline_mse``,
        ``n_repeats``, ``cost_bps``.

    Raises
    ------
    ValueError
        If ``y`` is not indexed like ``X``, ``X``'s index is not increasing and
        unique, a parameter is out of range, or ``close`` misses a bar of the window.

    Notes
    -----
    With :math:`\hat y = f(X)` on the window and :math:`\hat y^{(j,r)}` the prediction
    after shuffling column :math:`j` (repeat :math:`r`),

    .. math:: \Delta SR_{j,r} = SR(\hat y) - SR(\hat y^{(j,r)}),\qquad
              \Delta MSE_{j,r} = MSE(\hat y^{(j,r)}) - MSE(\hat y)

    where :math:`SR` is the annualised Sharpe ratio
    (:func:`brain_lib.metrics.sharpe_ratio`) of the net returns of
    :func:`brain_lib.backtest.backtest_positions` on the positions the policy takes on
    the predictions, and
    :math:`MSE = \operatorname{mean}((\hat y - y)^2)` over rows with a label.
    ``importance`` is :math:`\operatorname{mean}_r \Delta SR_{j,r}`; the ``_std``
    columns are the population standard deviation (``ddof=0``) over the repeats.
    A Sharpe ratio that is undefined (NaN: flat the whole window, or too few bars)
    counts as 0, the Sharpe of doing nothing. ``mse_*`` columns are NaN when no row
    of the window has a label.

    Sampling: a backtest needs consecutive bars, so a long window is cut to one
    *contiguous* block, the most recent ``max_rows`` rows, never a random sample.

    Shuffles are seeded per feature with ``numpy.random.default_rng([seed, j])``
    (``j`` the column's position in ``X``), so a feature's result does not depend on
    which other features are present or skipped. Constant features are skipped
    (shuffling them changes nothing).
    """
    _check_frame(X)
    _check_rows(max_rows, min_rows)
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    if not y.index.equals(X.index):
        raise ValueError("y must have the same index as X (one label per feature row)")
    if not (X.index.is_monotonic_increasing and X.index.is_unique):
        raise ValueError("X must be indexed by bar in strictly increasing time order")
    ppy = periods_per_year(timeframe)
    method = "permutation"
    too_few = _too_few(len(X), min_rows)
    if too_few:
        return _skipped_result(method, too_few, _PERMUTATION_COLUMNS, index=X.index)

    Xw = X.iloc[-max_rows:]
    labels = y.iloc[-max_rows:].to_numpy(dtype=float)
    labelled = ~np.isnan(labels)

    to_positions = positions if positions is not None else position_from_prediction
    book = Booking.on(Xw.index, close, cost_bps=cost_bps, funding=funding)

    def score(pred: FloatArray) -> tuple[float, float]:
        held = np.asarray(to_positions(pred), dtype=float)
        net = book.net_returns(held)
        sharpe = sharpe_ratio(net, periods_per_year=ppy, risk_free_rate=risk_free_rate)
        err = pred[labelled] - labels[labelled]
        mse = float(np.mean(err**2)) if err.size else math.nan
        return (0.0 if math.isnan(sharpe) else sharpe), mse

    base_sharpe, base_mse = score(np.asarray(model.predict(Xw), dtype=float))
    details: dict[str, Any] = {
        "baseline_sharpe": base_sharpe,
        "baseline_mse": base_mse,
        "n_repeats": n_repeats,
        "cost_bps": cost_bps,
    }
    skipped = _screen(Xw)
    kept = [c for c in Xw.columns if c not in skipped]
    if not kept:
        return ImportanceResult(
            method=method,
            table=_empty_table(_PERMUTATION_COLUMNS),
            skipped=skipped,
            window=_window(Xw.index),
            n_rows=len(Xw),
            status=STATUS_SKIPPED,
            reason="every feature is constant in the window",
            details=details,
        )

    base = Xw.to_numpy(dtype=float)
    n = len(Xw)
    shuffles = [
        (name, j, r)
        for j, name in enumerate(Xw.columns)
        if name not in skipped
        for r in range(n_repeats)
    ]
    # one generator per feature, drawn in repeat order: the same shuffles as one at a time
    orders = {j: np.random.default_rng([seed, j]) for j in dict.fromkeys(j for _, j, _ in shuffles)}
    drops: dict[str, list[float]] = {}
    rises: dict[str, list[float]] = {}
    per_batch = max(1, _PREDICT_BATCH_ROWS // n)
    for first in range(0, len(shuffles), per_batch):
        batch = shuffles[first : first + per_batch]
        stacked = np.tile(base, (len(batch), 1))
        for b, (_, j, _) in enumerate(batch):
            block = slice(b * n, (b + 1) * n)
            stacked[block, j] = base[orders[j].permutation(n), j]
        preds = np.asarray(
            model.predict(pd.DataFrame(stacked, columns=Xw.columns)), dtype=float
        ).reshape(len(batch), n)
        for b, (name, _, _) in enumerate(batch):
            sharpe, mse = score(preds[b])
            drops.setdefault(name, []).append(base_sharpe - sharpe)
            rises.setdefault(name, []).append(mse - base_mse)
    rows: dict[Any, dict[str, float]] = {
        name: {
            "importance": float(np.mean(drops[name])),
            "sharpe_drop_std": float(np.std(drops[name])),
            "mse_increase": float(np.mean(rises[name])),
            "mse_increase_std": float(np.std(rises[name])),
        }
        for name in drops
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    table = _rank_table(frame["importance"], frame[list(_PERMUTATION_COLUMNS)])
    return ImportanceResult(
        method=method,
        table=table,
        skipped=skipped,
        window=_window(Xw.index),
        n_rows=n,
        details=details,
    )


# --------------------------------------------------------------------------- #
# rank correlation
# --------------------------------------------------------------------------- #
def _spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman's ρ on the rows where both are present: Pearson of average ranks."""
    both = a.notna() & b.notna()
    if int(both.sum()) < 2:
        return math.nan
    ra = a[both].rank(method="average").to_numpy(dtype=float)
    rb = b[both].rank(method="average").to_numpy(dtype=float)
    ra = ra - ra.mean()
    rb = rb - rb.mean()
    denom = math.sqrt(float(np.dot(ra, ra)) * float(np.dot(rb, rb)))
    if denom == 0.0:
        return math.nan
    return float(np.dot(ra, rb) / denom)


def _spearman_columns(frame: pd.DataFrame, target: pd.Series) -> pd.Series:
    """:func:`_spearman` of every column of ``frame`` with ``target``: the columns with
    a value wherever ``target`` has one are ranked together in one call, the rest one at
    a time on their own pairwise rows."""
    from scipy.stats import rankdata

    present = target.notna().to_numpy()
    values = frame.to_numpy(dtype=float)[present]
    whole = ~np.isnan(values).any(axis=0)
    out = pd.Series(math.nan, index=frame.columns, dtype=float)
    if int(present.sum()) >= 2 and whole.any():
        rt = rankdata(target.to_numpy(dtype=float)[present])
        rt = rt - rt.mean()
        ranks = rankdata(values[:, whole], axis=0)
        ranks = ranks - ranks.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = (ranks.T @ rt) / np.sqrt((ranks**2).sum(axis=0) * float(rt @ rt))
        out[frame.columns[whole]] = np.where(np.isfinite(rho), rho, math.nan)
    for column in frame.columns[~whole]:
        out[column] = _spearman(frame[column], target)
    return out


def correlation_importance(
    X: pd.DataFrame,
    y: pd.Series,
    predictions: pd.Series | npt.ArrayLike | None = None,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> ImportanceResult:
    r"""Spearman rank correlation of every feature with the label (and the prediction).

    Parameters
    ----------
    X : pandas.DataFrame
        Feature rows.
    y : pandas.Series
        Label of every row (same index as ``X``); rows with a NaN label are dropped.
    predictions : pandas.Series or array-like, optional
        The model's prediction for every row of ``X`` (a Series with ``X``'s index,
        or an array of the same length).
    min_rows : int, default=200
        Fewer labelled rows give a skipped result.

    Returns
    -------
    ImportanceResult
        ``table`` columns: ``importance`` = :math:`|\rho(x_j, y)|`, ``normalised``,
        ``rank``, ``spearman_label`` = :math:`\rho(x_j, y)` (signed) and
        ``spearman_prediction`` = :math:`\rho(x_j, \hat y)` (NaN when no predictions
        are given, or they are constant).

    Raises
    ------
    ValueError
        If ``y`` (or a Series of ``predictions``) is not indexed like ``X``, or
        ``predictions`` has the wrong length.

    Notes
    -----
    Spearman's :math:`\rho` is the Pearson correlation of the ranks, with ties given
    their average rank (as ``scipy.stats.spearmanr``):

    .. math:: \rho(a, b) = \frac{\sum_i (R_{a,i} - \bar R_a)(R_{b,i} - \bar R_b)}
              {\sqrt{\sum_i (R_{a,i} - \bar R_a)^2 \sum_i (R_{b,i} - \bar R_b)^2}}

    computed, per feature, on the rows where both values are present (pairwise). It is
    model-free and uses every labelled row: no sampling. A constant label skips the
    whole result.
    """
    _check_frame(X)
    _check_min_rows(min_rows)
    if not y.index.equals(X.index):
        raise ValueError("y must have the same index as X (one label per feature row)")
    pred: pd.Series | None = None
    if predictions is not None:
        if isinstance(predictions, pd.Series):
            if not predictions.index.equals(X.index):
                raise ValueError("predictions must have the same index as X")
            pred = predictions.astype(float)
        else:
            arr = np.asarray(predictions, dtype=float).reshape(-1)
            if arr.size != len(X):
                raise ValueError(
                    f"predictions must have one value per row of X ({len(X)}), got {arr.size}"
                )
            pred = pd.Series(arr, index=X.index)
    method = "correlation"
    labelled = y.notna().to_numpy()
    Xl = X[labelled]
    yl = y[labelled].astype(float)
    too_few = _too_few(len(Xl), min_rows)
    if too_few:
        return _skipped_result(method, too_few, _CORRELATION_COLUMNS, index=Xl.index)
    if float(yl.min()) == float(yl.max()):
        return _skipped_result(
            method, "the label is constant in the window", _CORRELATION_COLUMNS, index=Xl.index
        )
    skipped = _screen(Xl)
    kept = [c for c in Xl.columns if c not in skipped]
    if not kept:
        return _skipped_result(
            method,
            "every feature is constant in the window",
            _CORRELATION_COLUMNS,
            index=Xl.index,
            skipped=skipped,
        )
    pl = pred[labelled] if pred is not None else None
    rho_label = _spearman_columns(Xl[kept], yl)
    if pl is not None:
        rho_pred = _spearman_columns(Xl[kept], pl)
    else:
        rho_pred = pd.Series(math.nan, index=kept, dtype=float)
    table = _rank_table(
        rho_label.abs(),
        pd.DataFrame({"spearman_label": rho_label, "spearman_prediction": rho_pred}),
    )
    return ImportanceResult(
        method=method,
        table=table,
        skipped=skipped,
        window=_window(Xl.index),
        n_rows=len(Xl),
        details={"with_predictions": pred is not None},
    )


def top_rank_agreement(
    reference: ImportanceResult, other: ImportanceResult, top: int = 10
) -> float:
    """Spearman's ρ between two rankings of the ``top`` features of ``reference``.

    The stability check of a sampled computation (``other``) against the full one
    (``reference``): the ``top`` most important features of ``reference`` are ranked
    by each result's ``importance`` (average ranks for ties) and the two rankings
    correlated. 1.0 means the sample orders the leading features exactly as the full
    computation does; a feature missing from ``other`` ranks last there. NaN when
    either ranking is constant (fewer than two features, or all tied).
    """
    full = reference.table["importance"].sort_values(ascending=False, kind="stable")
    leading = full.index[:top]
    theirs = other.table["importance"].reindex(leading).fillna(-math.inf)
    return _spearman(full[leading], theirs)


def importance_rows(result: ImportanceResult) -> list[dict[str, Any]]:
    """Flatten a result into rows for ``raw.feature_importance``.

    One row per ranked feature, one per skipped feature (importance NULL, with the
    reason), or, when the whole method was skipped, one row with feature ``"*"``.
    """
    start, end = result.window if result.window is not None else (None, None)
    base = {
        "method": result.method,
        "window_start": start,
        "window_end": end,
        "n_rows": int(result.n_rows),
    }
    if not result.ok:
        return [
            {
                **base,
                "feature": "*",
                "importance": None,
                "normalised": None,
                "rank": None,
                "skipped_reason": result.reason,
            }
        ]
    rows = [
        {
            **base,
            "feature": str(feature),
            "importance": float(row["importance"]),
            "normalised": float(row["normalised"]),
            "rank": int(row["rank"]),
            "skipped_reason": None,
        }
        for feature, row in result.table.iterrows()
    ]
    rows += [
        {
            **base,
            "feature": feature,
            "importance": None,
            "normalised": None,
            "rank": None,
            "skipped_reason": reason,
        }
        for feature, reason in sorted(result.skipped.items())
    ]
    return rows
