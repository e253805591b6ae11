r"""Nightly feature analysis of the champions: importance on recent data and drift inputs.

What a night computes for one champion version (flow ``nightly-feature-analysis``):

* **importance on the recent window** — SHAP, permutation and correlation importance
  (:mod:`brain_lib.importance`) of the champion's own model on the last
  ``window_days`` days of candles, stored in ``raw.feature_importance`` with
  ``kind = 'nightly'``. The marts ``feature_importance_trends`` and ``feature_shifts``
  compare these rows with each other (trend) and with the version's ``'training'`` rows
  (shift).
* **distribution of every feature, training vs recent** — each feature's values in the
  version's training window are cut at their deciles (:func:`decile_edges`) and the
  rows of both windows are counted per bin (:func:`distribution_rows`), stored in
  ``raw.feature_distributions``. The mart ``feature_drift`` computes the population
  stability index from those counts, in SQL:

  .. math::

      \mathrm{PSI} = \sum_b (r_b - t_b)\,\ln\frac{r_b}{t_b},\qquad
      t_b = \max\!\Big(\frac{T_b}{\sum T}, \varepsilon\Big),\;
      r_b = \max\!\Big(\frac{R_b}{\sum R}, \varepsilon\Big)

  with ``T_b`` and ``R_b`` the training and recent counts of bin ``b`` and
  ``ε = 1e-4`` (dbt var ``psi_epsilon``). :func:`psi` is the same formula in numpy,
  the reference the tests hold the SQL to.

Only rows the champion **never saw** count: the recent window is the last
``window_days`` days, cut at the version's ``train_end``, so every nightly importance
and every recent distribution is computed on bars after the version's training window
(out of sample). Their number is reported (``rows_after_training``, also the ``n_rows``
of every stored row). A champion trained up to the newest candle — the usual case
right after daily-retrain — has too few such rows yet: its methods are stored as
skipped with that reason, and the night compares nothing for it until enough bars
have passed (a champion kept through rollbacks ages into the analysis).

Bad input does not crash the night: a version whose artifact cannot be loaded or whose
candles are gone raises a clear error for that champion only (the flow isolates it); a
window with too few rows, or a constant feature, is stored as a skipped row with its
reason (as in :mod:`brain_lib.importance`), so no NaN reaches the marts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg

from brain_lib import importance as imp
from brain_lib.errors import DataError
from brain_lib.features import feature_warmup_bars
from brain_lib.labels import forward_return
from brain_lib.training import candles_on_grid, feature_frame, load_training_candles

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_WINDOW_DAYS",
    "Champion",
    "NightlyAnalysis",
    "analyze_champion",
    "consume_retrain_requests",
    "decile_edges",
    "distribution_rows",
    "latest_flags",
    "list_champions",
    "pending_retrain_requests",
    "psi",
    "record_nightly",
    "request_retrain",
]

DEFAULT_WINDOW_DAYS = 30
DEFAULT_BINS = 10
PSI_EPSILON = 1e-4
"""Floor of a bin's share in :func:`psi` (and dbt var ``psi_epsilon``): an empty bin
would otherwise make the logarithm infinite."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Champion:
    """A champion version, with what the analysis needs to reload and re-run it."""

    version_id: str
    exchange: str
    symbol: str
    timeframe: str
    model_type: str
    manifest: dict[str, Any]
    artifact_uri: str
    artifact_sha256: str
    train_start: pd.Timestamp
    train_end: pd.Timestamp

    @property
    def label_horizon(self) -> int:
        return int(self.manifest.get("label", {}).get("horizon", 1))

    @property
    def fee_bps(self) -> float:
        return float(self.manifest.get("backtest", {}).get("fee_bps", 5.0))

    @property
    def cost_bps(self) -> float:
        backtest = self.manifest.get("backtest", {})
        return float(backtest.get("fee_bps", 5.0)) + float(backtest.get("slippage_bps", 0.0))

    def policy(self) -> Any:
        """The fitted policy the version serves with (``policy.serving`` of its manifest;
        the sign of the prediction for a manifest from before policies)."""
        from brain_lib.policy import fitted_from_params
        from brain_lib.training import policy_spec_of

        spec = policy_spec_of(self.manifest)
        serving = self.manifest.get("policy", {}).get("serving", {})
        return fitted_from_params(spec, serving)


@dataclass
class NightlyAnalysis:
    """What one night computed for one champion, ready for :func:`record_nightly`."""

    champion: Champion
    computed_at: datetime
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    n_recent_rows: int
    rows_after_training: int
    importance: list[dict[str, Any]] = field(default_factory=list)
    distributions: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """One plain row for logs and artifacts."""
        methods = sorted({r["method"] for r in self.importance})
        skipped = sorted(
            f"{r['method']}:{r['feature']}"
            for r in self.importance
            if r["feature"] == "*" and r["skipped_reason"]
        )
        return {
            "version_id": self.champion.version_id,
            "symbol": self.champion.symbol,
            "model_type": self.champion.model_type,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "recent_rows": self.n_recent_rows,
            "rows_after_training": self.rows_after_training,
            "methods": ",".join(methods),
            "skipped": ",".join(skipped),
        }


# ---------------------------------------------------------------- champions


def list_champions(
    conn: psycopg.Connection,
    *,
    symbols: Sequence[str] | None = None,
    exchange: str | None = None,
    timeframe: str | None = None,
) -> list[Champion]:
    """The current champions (``raw.model_champions``), optionally of some symbols only."""
    rows = conn.execute(
        """
        select v.version_id, v.exchange, v.symbol, v.timeframe, v.model_type, v.manifest,
               v.artifact_uri, v.artifact_sha256, v.train_start, v.train_end
        from raw.model_champions c
        join raw.model_versions v on v.version_id = c.version_id
        where (%(symbols)s::text[] is null or c.symbol = any(%(symbols)s::text[]))
          and (%(exchange)s::text is null or c.exchange = %(exchange)s::text)
          and (%(timeframe)s::text is null or c.timeframe = %(timeframe)s::text)
        order by c.symbol, c.model_type, c.exchange, c.timeframe
        """,
        {
            "symbols": list(symbols) if symbols is not None else None,
            "exchange": exchange,
            "timeframe": timeframe,
        },
    ).fetchall()
    return [
        Champion(
            version_id=r[0],
            exchange=r[1],
            symbol=r[2],
            timeframe=r[3],
            model_type=r[4],
            manifest=r[5],
            artifact_uri=r[6],
            artifact_sha256=r[7],
            train_start=pd.Timestamp(r[8]),
            train_end=pd.Timestamp(r[9]),
        )
        for r in rows
    ]


# ------------------------------------------------------------ distributions


def decile_edges(values: pd.Series | npt.ArrayLike, bins: int = DEFAULT_BINS) -> FloatArray:
    """Inner bin edges of ``values``: its ``1/bins … (bins-1)/bins`` quantiles, deduplicated.

    The quantiles are observed values (the inverse of the empirical distribution
    function, no interpolation), so a discrete feature is cut between its values.

    ``k`` unique edges make ``k + 1`` bins: ``(-inf, e_1], (e_1, e_2], …, (e_k, +inf)``.
    Missing values are ignored. A feature with many ties gets fewer bins (a binary
    feature one edge, two bins); a constant one none.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return np.empty(0)
    qs = np.quantile(arr, np.arange(1, bins) / bins, method="inverted_cdf")
    edges = np.unique(qs)
    # an edge equal to the maximum would leave the last bin empty by construction
    return edges[edges < arr.max()]


def bin_counts(values: pd.Series | npt.ArrayLike, edges: FloatArray) -> npt.NDArray[np.int64]:
    """Count finite ``values`` per bin ``(-inf, e_1], …, (e_k, +inf)``."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    idx = np.searchsorted(edges, arr, side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)


def psi(
    train_counts: npt.ArrayLike, recent_counts: npt.ArrayLike, epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index of two count vectors over the same bins (module doc)."""
    t = np.asarray(train_counts, dtype=float)
    r = np.asarray(recent_counts, dtype=float)
    if t.shape != r.shape or t.sum() <= 0 or r.sum() <= 0:
        raise ValueError("psi needs two non-empty count vectors of the same length")
    tp = np.maximum(t / t.sum(), epsilon)
    rp = np.maximum(r / r.sum(), epsilon)
    return float(np.sum((rp - tp) * np.log(rp / tp)))


def distribution_rows(
    train: pd.DataFrame, recent: pd.DataFrame, bins: int = DEFAULT_BINS
) -> list[dict[str, Any]]:
    """Per feature and bin: edges (from ``train``) and the counts of both windows.

    Bins are numbered from 1; ``lower_edge`` of the first and ``upper_edge`` of the last
    bin are None (open). A feature that cannot be binned — fewer than two distinct
    values in the training window, or no finite value in either window — is one row
    with ``bin = 0``, no edges, zero counts and ``skipped_reason``.
    """
    rows: list[dict[str, Any]] = []
    for feature in train.columns:
        tr = pd.to_numeric(train[feature], errors="coerce").to_numpy(dtype=float)
        rc = pd.to_numeric(recent[feature], errors="coerce").to_numpy(dtype=float)
        finite_tr = tr[np.isfinite(tr)]
        reason = None
        if finite_tr.size == 0 or not np.isfinite(rc).any():
            reason = imp.NO_VALUES_REASON
        elif np.unique(finite_tr).size < 2:
            reason = imp.CONSTANT_REASON
        if reason is not None:
            rows.append(
                {
                    "feature": str(feature),
                    "bin": 0,
                    "lower_edge": None,
                    "upper_edge": None,
                    "train_count": 0,
                    "recent_count": 0,
                    "skipped_reason": reason,
                }
            )
            continue
        edges = decile_edges(finite_tr, bins)
        t_counts = bin_counts(tr, edges)
        r_counts = bin_counts(rc, edges)
        bounds: list[float | None] = [None, *(float(e) for e in edges), None]
        for b in range(len(edges) + 1):
            rows.append(
                {
                    "feature": str(feature),
                    "bin": b + 1,
                    "lower_edge": bounds[b],
                    "upper_edge": bounds[b + 1],
                    "train_count": int(t_counts[b]),
                    "recent_count": int(r_counts[b]),
                    "skipped_reason": None,
                }
            )
    return rows


# ----------------------------------------------------------------- analysis


def analyze_champion(
    conn: psycopg.Connection,
    champion: Champion,
    *,
    end: datetime | pd.Timestamp | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    max_rows: int = 2000,
    n_repeats: int = 3,
    seed: int = 0,
    bins: int = DEFAULT_BINS,
    min_rows: int = imp.DEFAULT_MIN_ROWS,
) -> NightlyAnalysis:
    """Importance of ``champion`` on the last ``window_days`` and the distribution counts.

    The recent window is ``(max(end - window_days, train_end), end]`` of candle open
    times — only bars after the version's training window; ``end`` defaults to the
    newest stored candle of the symbol. Features are built over the training window and
    the recent window together on the bar grid (features only look back, so a row is the
    same whichever span it is computed in; the first
    :func:`~brain_lib.features.feature_warmup_bars` bars are warm-up and never used).
    Permutation importance scores each shuffle by the Sharpe of the positions the
    version's own serving policy takes.
    """
    from brain_lib.registry import load_model

    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    key = dict(exchange=champion.exchange, symbol=champion.symbol, timeframe=champion.timeframe)
    if end is None:
        row = conn.execute(
            "select max(ts) from raw.ohlcv where exchange = %s and symbol = %s and timeframe = %s",
            (champion.exchange, champion.symbol, champion.timeframe),
        ).fetchone()
        if row is None or row[0] is None:
            raise DataError(
                f"{champion.exchange}:{champion.symbol} {champion.timeframe}: no candles stored "
                f"for champion {champion.version_id}"
            )
        end_ts = pd.Timestamp(row[0])
    else:
        end_ts = pd.Timestamp(end)
        end_ts = end_ts.tz_localize("UTC") if end_ts.tzinfo is None else end_ts.tz_convert("UTC")
    window_start = end_ts - pd.Timedelta(days=window_days)
    start = min(champion.train_start, window_start)
    candles = load_training_candles(
        conn, **key, start=start, end=end_ts + pd.Timedelta(microseconds=1)
    )
    grid = candles_on_grid(candles, champion.timeframe)
    features = feature_frame(grid).iloc[feature_warmup_bars() :]
    names = [str(n) for n in champion.manifest.get("features", [])]
    missing = [n for n in names if n not in features.columns]
    if not names or missing:
        raise DataError(
            f"champion {champion.version_id}: the feature builder no longer makes "
            f"{missing or 'the manifest features'}; retrain it before analysing it"
        )
    features = features[names]
    label = forward_return(grid, horizon=champion.label_horizon).reindex(features.index)

    # out of sample only: bars after the training window that exist (not a hole of the
    # grid) and follow an existing bar
    close = grid["close"]
    present = (close.notna() & close.shift(1).notna()).reindex(features.index).to_numpy()
    recent_mask = (features.index > window_start) & (features.index > champion.train_end) & present
    recent = features[recent_mask]
    train_mask = (features.index >= champion.train_start) & (features.index <= champion.train_end)
    train_rows = features[train_mask]

    model = load_model(
        champion.artifact_uri, champion.artifact_sha256, champion.manifest, champion.version_id
    )
    results = [imp.shap_importance(model, recent, max_rows=max_rows, seed=seed, min_rows=min_rows)]
    labelled = label[recent_mask].notna().to_numpy()
    rec_l = recent[labelled]
    y_l = label[recent_mask][labelled]
    if len(rec_l) >= min_rows:
        from brain_lib.policy import apply_policies, trailing_volatility
        from brain_lib.training import FUNDING_COLUMN

        pred = pd.Series(model.predict(rec_l), index=rec_l.index)
        results.append(imp.correlation_importance(rec_l, y_l, predictions=pred, min_rows=min_rows))
        policy = champion.policy()
        vol = pd.Series(
            trailing_volatility(grid["close"].to_numpy(dtype=float), policy.spec.vol_window),
            index=grid.index,
        ).reindex(rec_l.index)

        center = float(champion.manifest.get("policy", {}).get("prediction_center") or 0.0)

        def positions(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            v = vol.to_numpy()[-len(values) :]
            return apply_policies(values - center, v, [(0, len(values), policy)])

        results.append(
            imp.permutation_importance(
                model,
                rec_l,
                y_l,
                grid["close"],
                n_repeats=n_repeats,
                seed=seed,
                max_rows=max_rows,
                positions=positions,
                cost_bps=champion.cost_bps,
                funding=grid.get(FUNDING_COLUMN),
                timeframe=champion.timeframe,
                min_rows=min_rows,
            )
        )
    else:
        # the same skipped results the library gives, so every method leaves a row
        results.append(imp.correlation_importance(rec_l, y_l, min_rows=min_rows))
        results.append(
            imp.permutation_importance(
                model, rec_l, y_l, grid["close"], min_rows=min_rows, timeframe=champion.timeframe
            )
        )
    importance_rows = [row for r in results for row in imp.importance_rows(r)]
    if len(train_rows) and len(recent):
        distributions = distribution_rows(train_rows, recent, bins)
    else:
        what = "training" if not len(train_rows) else "recent"
        distributions = [
            {
                "feature": "*",
                "bin": 0,
                "lower_edge": None,
                "upper_edge": None,
                "train_count": 0,
                "recent_count": 0,
                "skipped_reason": f"no rows in the {what} window",
            }
        ]
    return NightlyAnalysis(
        champion=champion,
        computed_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
        window_start=window_start,
        window_end=end_ts,
        n_recent_rows=len(recent),
        rows_after_training=int((recent.index > champion.train_end).sum()),
        importance=importance_rows,
        distributions=distributions,
    )


def record_nightly(conn: psycopg.Connection, analysis: NightlyAnalysis) -> None:
    """Write a night's importance and distribution rows of one champion, in one transaction."""
    version_id = analysis.champion.version_id
    at = analysis.computed_at
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """
            insert into raw.feature_importance (
                version_id, kind, method, feature, importance, normalised, rank,
                skipped_reason, window_start, window_end, n_rows, computed_at
            ) values (%s, 'nightly', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    version_id,
                    r["method"],
                    r["feature"],
                    r["importance"],
                    r["normalised"],
                    r["rank"],
                    r["skipped_reason"],
                    r["window_start"],
                    r["window_end"],
                    r["n_rows"],
                    at,
                )
                for r in analysis.importance
            ],
        )
        cur.executemany(
            """
            insert into raw.feature_distributions (
                version_id, computed_at, feature, bin, lower_edge, upper_edge, train_count,
                recent_count, skipped_reason, train_start, train_end, window_start, window_end
            ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    version_id,
                    at,
                    r["feature"],
                    r["bin"],
                    r["lower_edge"],
                    r["upper_edge"],
                    r["train_count"],
                    r["recent_count"],
                    r["skipped_reason"],
                    analysis.champion.train_start.to_pydatetime(),
                    analysis.champion.train_end.to_pydatetime(),
                    analysis.window_start.to_pydatetime(),
                    analysis.window_end.to_pydatetime(),
                )
                for r in analysis.distributions
            ],
        )


# ---------------------------------------------------------- retrain requests


def request_retrain(
    conn: psycopg.Connection,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    reason: str,
    version_id: str | None = None,
    source: str = "nightly-feature-analysis",
    run_id: str | None = None,
) -> bool:
    """Mark ``symbol`` for retraining; False when a request is already pending.

    At most one pending request per (exchange, symbol, timeframe) — a partial unique
    index — so a shift flagged night after night does not pile up requests.
    """
    row = conn.execute(
        """
        insert into raw.retrain_requests
            (exchange, symbol, timeframe, reason, version_id, source, requested_run_id)
        values (%s, %s, %s, %s, %s, %s, %s)
        on conflict (exchange, symbol, timeframe) where consumed_at is null do nothing
        returning request_id
        """,
        (exchange, symbol, timeframe, reason, version_id, source, run_id),
    ).fetchone()
    conn.commit()
    return row is not None


def pending_retrain_requests(
    conn: psycopg.Connection, *, exchange: str, timeframe: str
) -> list[dict[str, Any]]:
    """Requests nobody has consumed yet, oldest first."""
    cur = conn.execute(
        """
        select request_id, symbol, reason, version_id, source, requested_at
        from raw.retrain_requests
        where exchange = %s and timeframe = %s and consumed_at is null
        order by requested_at, request_id
        """,
        (exchange, timeframe),
    )
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def consume_retrain_requests(
    conn: psycopg.Connection,
    *,
    exchange: str,
    timeframe: str,
    symbols: Sequence[str],
    run_id: str | None,
) -> int:
    """Mark the pending requests of ``symbols`` as served by ``run_id``; returns how many."""
    cur = conn.execute(
        """
        update raw.retrain_requests
        set consumed_at = now(), consumed_run_id = %s
        where exchange = %s and timeframe = %s and symbol = any(%s) and consumed_at is null
        """,
        (run_id, exchange, timeframe, list(symbols)),
    )
    conn.commit()
    return cur.rowcount


# -------------------------------------------------------------------- flags


def latest_flags(
    conn: psycopg.Connection, version_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The latest rows of ``marts.feature_shifts`` and the moderate or major rows of
    ``marts.feature_drift`` for ``version_ids`` (build the marts first)."""

    def rows(sql: str) -> list[dict[str, Any]]:
        cur = conn.execute(sql, (list(version_ids),))
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    shifts = rows(
        """
        select exchange, symbol, timeframe, model_type, version_id, importance_method,
               computed_at, n_common, rank_correlation, top_k_jaccard, n_moved,
               moved_features, shift_flag, shift_reason, symbol_shift_flag
        from marts.feature_shifts
        where is_latest and version_id = any(%s)
        order by symbol, model_type, importance_method
        """
    )
    drift = rows(
        """
        select exchange, symbol, timeframe, model_type, version_id, feature_name, psi,
               drift_level
        from marts.feature_drift
        where is_latest and version_id = any(%s) and drift_level in ('moderate', 'major')
        order by psi desc, symbol, feature_name
        """
    )
    return {"shifts": shifts, "drift": drift}
