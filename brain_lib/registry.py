"""Model versions, champions, promotion and rollback.

A version is written once and never changed (``raw.model_versions`` is append-only,
enforced by a trigger). Its artifact is saved in the model's native format — never
pickle — with the manifest beside it and the artifact's sha256 in both the manifest
and the warehouse; :func:`load_model` refuses an artifact whose hash differs.

Champion and challenger are judged on the same data. The challenger's metrics come
from its purged walk-forward, traded by its own fitted position policy; the champion's
*recipe* (model type, hyperparameters, feature set, label, position policy — everything
in its manifest but the fitted weights) is replayed through the same walk-forward on
the same candles, with the same costs, and measured on the challenger's bars, so both
are scored out of sample on the same rows. The champion's frozen artifact is not used
for this: its training window overlaps the challenger's out-of-sample window, so it
would be scored partly in sample and win by overfitting. When both recipes are the
same the replay would reproduce the challenger's positions exactly, so it is skipped
and both scores are equal.

Both sides are scored with ``brain.composite_score`` — the SQL function that dbt
creates from ``dbt_brain/macros/composite_score.sql`` and that the marts use, so the
formula exists once; it is NULL for a backtest without evidence (too few round trips or
too little exposure). :func:`verdict` applies the rules of docs/registry.md in order:
no evidence → rollback; a deflated Sharpe ratio below ``min_dsr`` over the trials in
the registry → rollback; no champion → promotion; otherwise the degradation
(champion − challenger) / |champion| against the threshold, with an absolute band. A
``rollback`` event records both scores and the reason, a ``promotion`` event moves the
champion pointer. The version, its metrics, the event and the pointer commit in one
transaction, under an advisory lock per symbol × model type, so overlapping runs judge
one after the other.

A champion that cannot be served. Every judgement also loads the champion's artifact
(:func:`load_model`: present, the recorded sha256, a ``manifest.json`` equal to the
warehouse's manifest, readable by its adapter). When it does not load, the run says so
(a warning naming the version and the fault, and the decision's reason, which the run's
summary shows) and judges the challenger against the champion's *recipe* exactly as
usual — the recipe lives in the warehouse's manifest, the judgement never needed the
weights. What cannot load cannot stay in service, so:

* the challenger passes → it is promoted and replaces the unservable champion;
* it does not pass → it is NOT promoted (a refused model never wins by default); the
  champion pointer moves back to the newest earlier champion of the key whose artifact
  loads, or, when none does, is removed: the key has no champion until a run promotes
  one or a person does (``brain models promote``). ``get_active_model`` then says "no
  champion" instead of failing on a corrupt file.

Either way a ``champion_unservable`` event is written just before the judgement's own
(same transaction, same instant): ``previous_version_id`` = the unservable champion,
``version_id`` = the champion after the judgement (the challenger, the restored
version, or NULL for none), ``details.fault`` = what is wrong. It is a champion-changing
event (:data:`CHAMPION_CHANGING_EVENTS`): on promotion the promotion event that follows
at the same instant wins in ``marts.model_champion_history``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from brain_lib.errors import (
    ArtifactError,
    BrainError,
    ConfigError,
    ManifestError,
    NoModelError,
    UnknownVersionError,
)

if TYPE_CHECKING:
    import psycopg

    from brain_lib.models import Model
    from brain_lib.training import TrainingConfig, TrainingResult

__all__ = [
    "CHAMPION_CHANGING_EVENTS",
    "COMPOSITE_OF_METRICS_SQL",
    "SCORED_METRICS",
    "ChallengerRecord",
    "Decision",
    "JudgementRules",
    "RegisteredVersion",
    "champion_of",
    "check_stored_manifest",
    "composite_score",
    "decide",
    "deflate",
    "degradation",
    "evidence_gap",
    "get_version",
    "judge_and_record",
    "load_model",
    "new_version_id",
    "promote",
    "register_version",
    "replay_champion",
    "rollback",
    "save_artifact",
    "servability_fault",
    "servable_predecessor",
    "sha256_file",
    "trial_sharpes",
    "verdict",
    "verify_servable",
]

log = logging.getLogger(__name__)

SUPPORTED_MANIFEST_FORMAT = 2
CHAMPION_CHANGING_EVENTS = (
    "promotion",
    "manual_promotion",
    "manual_rollback",
    "champion_unservable",
)
"""Event types that move the champion pointer to their ``version_id`` (a
``champion_unservable`` event with no ``version_id`` removes it); a ``rollback`` moves
nothing."""
SCORED_METRICS = (
    "sharpe",
    "sortino",
    "calmar",
    "profit_factor",
    "hit_ratio",
    "max_drawdown",
    "round_trips",
    "exposure",
)
"""The arguments of ``brain.composite_score``, in order: six scored metrics, then the two
that decide whether the backtest shows evidence at all."""

# The composite score of a version, as an aggregate over its raw.model_metrics rows
# (alias ``m``, grouped by version): the SQL function the marts use, fed the pivot.
COMPOSITE_OF_METRICS_SQL = "brain.composite_score({})".format(
    ", ".join(f"max(m.value) filter (where m.metric = '{name}')" for name in SCORED_METRICS)
)


# ------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class RegisteredVersion:
    """A stored version: its id, where its artifact lies and the artifact's hash."""

    version_id: str
    artifact_uri: str
    artifact_sha256: str
    manifest: dict[str, Any]


def _slug(symbol: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", symbol.lower()).strip("-")


def new_version_id(symbol: str, model_type: str, now: datetime | None = None) -> str:
    """``<symbol-slug>.<model_type>.<UTC yyyymmddTHHMMSS>.<6 hex>``: sortable, unique."""
    now = now or datetime.now(UTC)
    return f"{_slug(symbol)}.{model_type}.{now:%Y%m%dT%H%M%S}.{secrets.token_hex(3)}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_artifact(
    result: TrainingResult, artifact_root: str, version_id: str, *, challenged: str | None = None
) -> RegisteredVersion:
    """Write ``<root>/<version_id>/{artifact, manifest.json}``; return uri and sha256."""
    import fsspec

    model = result.model
    manifest = dict(result.manifest)
    with tempfile.TemporaryDirectory(prefix="brain-artifact-") as tmp:
        local = Path(tmp) / model.artifact_name
        model.save(local)
        sha = sha256_file(local)
        manifest["version_id"] = version_id
        manifest["artifact"] = {"file": model.artifact_name, "sha256": sha}
        manifest["challenged_version_id"] = challenged
        base = f"{artifact_root.rstrip('/')}/{version_id}"
        fs, _, (root_path,) = fsspec.get_fs_token_paths(base)
        if fs.exists(root_path):
            raise BrainError(f"artifact folder {base} already exists; versions are immutable")
        # written whole into a hidden sibling, then moved into place: a full disk or a
        # killed process leaves no half-written version folder behind
        staging = f"{root_path.rsplit('/', 1)[0]}/{PARTIAL_PREFIX}{version_id}"
        try:
            fs.makedirs(staging, exist_ok=False)
            fs.put_file(str(local), f"{staging}/{model.artifact_name}")
            with fs.open(f"{staging}/manifest.json", "w") as handle:
                json.dump(manifest, handle, indent=2, sort_keys=True)
            fs.mv(staging, root_path, recursive=True)
        except OSError as exc:
            _discard(fs, staging)
            raise ArtifactError(
                f"could not write the artifact of {version_id} under {artifact_root}: "
                f"{exc.strerror or exc}; nothing of it was kept"
            ) from None
        except BaseException:
            _discard(fs, staging)
            raise
    return RegisteredVersion(version_id, f"{base}/{model.artifact_name}", sha, manifest)


PARTIAL_PREFIX = ".partial-"
"""Prefix of the folder a version is written into before it is moved into place."""


def _discard(fs: Any, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError as exc:  # the write already failed; say what is left behind
        log.error("could not remove the partial artifact folder %s: %s", path, exc)


def check_artifact_root(artifact_root: str) -> None:
    """Refuse an artifact root that cannot be written, before anything is trained:
    create it, write and remove a probe file."""
    import fsspec

    root = artifact_root.rstrip("/")
    try:
        fs, _, (path,) = fsspec.get_fs_token_paths(root)
        fs.makedirs(path, exist_ok=True)
        probe = f"{path}/.write-probe-{secrets.token_hex(4)}"
        with fs.open(probe, "wb") as handle:
            handle.write(b"brain")
        fs.rm(probe)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"the artifact root {root} (BRAIN_ARTIFACT_ROOT) is not writable: {reason}"
        ) from None


def check_manifest(manifest: Mapping[str, Any], where: str) -> None:
    """Refuse a manifest this code cannot read (newer format, missing keys)."""
    fmt = manifest.get("manifest_format")
    if not isinstance(fmt, int):
        raise ManifestError(f"{where}: manifest has no manifest_format")
    if fmt > SUPPORTED_MANIFEST_FORMAT:
        raise ManifestError(
            f"{where}: manifest format {fmt} is newer than this Brain reads "
            f"({SUPPORTED_MANIFEST_FORMAT}); upgrade brain"
        )
    missing = [k for k in ("model_type", "hyperparameters", "features") if k not in manifest]
    if missing:
        raise ManifestError(f"{where}: manifest lacks {', '.join(missing)}")


MANIFEST_KEYS_SET_AT_LANDING = ("challenged_version_id",)
"""Manifest keys the warehouse fills in when the version lands, after its
``manifest.json`` was written: the only keys in which the two may differ."""


def check_stored_manifest(artifact_uri: str, manifest: Mapping[str, Any], version_id: str) -> None:
    """Refuse a version whose ``manifest.json`` (beside its artifact) and the manifest
    in ``raw.model_versions`` disagree: one of them was edited by hand.

    Both are written once from the same dict (the file before the version lands; the
    warehouse keeps it append-only), so any difference outside
    :data:`MANIFEST_KEYS_SET_AT_LANDING` is a change after the fact — a changed
    hyperparameter or feature list would load the weights under another recipe.
    Raises :class:`ManifestError` naming the version, the file and the keys that
    differ; a missing or unreadable ``manifest.json`` is refused the same way.
    """
    import fsspec

    where = f"{artifact_uri.rsplit('/', 1)[0]}/manifest.json"
    try:
        fs, _, (path,) = fsspec.get_fs_token_paths(where)
        with fs.open(path, "r") as handle:
            stored = json.load(handle)
    except FileNotFoundError:
        raise ManifestError(f"version {version_id}: manifest is missing at {where}") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(
            f"version {version_id}: manifest at {where} cannot be read: {exc}"
        ) from None
    if not isinstance(stored, dict):
        raise ManifestError(f"version {version_id}: manifest at {where} is not a JSON object")
    keys = (set(stored) | set(manifest)) - set(MANIFEST_KEYS_SET_AT_LANDING)
    changed = sorted(k for k in keys if stored.get(k, _ABSENT) != manifest.get(k, _ABSENT))
    if changed:
        raise ManifestError(
            f"version {version_id}: manifest at {where} differs from the one the warehouse "
            f"recorded in {', '.join(changed)}; refusing to load an edited manifest"
        )


_ABSENT = object()


def load_model(
    artifact_uri: str, expected_sha256: str, manifest: Mapping[str, Any], version_id: str
) -> Model:
    """Fetch an artifact, verify it, and load it with its model type's adapter.

    Verified before anything is loaded: the manifest is one this code reads
    (:func:`check_manifest`), the ``manifest.json`` beside the artifact equals the
    warehouse's manifest (:func:`check_stored_manifest`: neither was edited by hand),
    both name the same sha256, and the artifact's bytes have it."""
    import fsspec

    from brain_lib.models import MODEL_TYPES

    check_manifest(manifest, f"version {version_id}")
    check_stored_manifest(artifact_uri, manifest, version_id)
    recorded = manifest.get("artifact", {}).get("sha256")
    if recorded is not None and recorded != expected_sha256:
        raise ArtifactError(
            f"version {version_id}: manifest and warehouse disagree on the artifact's sha256"
        )
    model_type = str(manifest["model_type"])
    if model_type not in MODEL_TYPES:
        raise ManifestError(f"version {version_id}: no adapter for model type {model_type!r}")
    with tempfile.TemporaryDirectory(prefix="brain-load-") as tmp:
        local = Path(tmp) / Path(artifact_uri).name
        try:
            fs, _, (remote,) = fsspec.get_fs_token_paths(artifact_uri)
            fs.get_file(remote, str(local))
        except FileNotFoundError:
            raise ArtifactError(
                f"version {version_id}: artifact is missing at {artifact_uri}"
            ) from None
        actual = sha256_file(local)
        if actual != expected_sha256:
            raise ArtifactError(
                f"version {version_id}: artifact at {artifact_uri} has sha256 {actual[:12]}…, "
                f"expected {expected_sha256[:12]}…; refusing to load a changed artifact"
            )
        adapter: Any = MODEL_TYPES[model_type]
        try:
            return adapter.load(local, manifest.get("hyperparameters"))
        except Exception as exc:
            raise ArtifactError(
                f"version {version_id}: artifact at {artifact_uri} cannot be loaded: {exc}"
            ) from None


# ------------------------------------------------------------------- judging


@dataclass(frozen=True)
class JudgementRules:
    """How a challenger is judged (docs/registry.md, "The judgement").

    ``threshold``: the largest relative degradation, (champion − challenger) /
    |champion|, that still promotes; ``min_abs_degradation``: a drop of the composite
    smaller than this never rolls back, whatever its relative size (a champion near 0
    would otherwise turn noise into rollbacks); ``min_dsr``: the smallest deflated
    Sharpe ratio a challenger needs to be promoted (below it, its Sharpe is more likely
    the luck of the trials made than skill).
    """

    threshold: float = 0.05
    min_abs_degradation: float = 0.02
    min_dsr: float = 0.5

    def __post_init__(self) -> None:
        for name in ("threshold", "min_abs_degradation"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise BrainError(f"invalid setting {name}={value!r}: must be a number >= 0")
        if not (isinstance(self.min_dsr, int | float) and 0.0 <= self.min_dsr <= 1.0):
            raise BrainError(f"invalid setting min_dsr={self.min_dsr!r}: must lie in [0, 1]")

    def to_dict(self) -> dict[str, float]:
        return {
            "threshold": self.threshold,
            "min_abs_degradation": self.min_abs_degradation,
            "min_dsr": self.min_dsr,
        }


def _composite_args(metrics: Mapping[str, float]) -> list[float | None]:
    return [_metric_value(metrics.get(name, math.nan)) for name in SCORED_METRICS]


def composite_score(conn: psycopg.Connection, metrics: Mapping[str, float]) -> float:
    """The composite score of a metrics dict, by the warehouse's ``brain.composite_score``
    (NaN: no evidence, or a component undefined)."""
    placeholders = ", ".join(["%s"] * len(SCORED_METRICS))
    row = conn.execute(
        f"select brain.composite_score({placeholders})", _composite_args(metrics)
    ).fetchone()
    return math.nan if row is None or row[0] is None else float(row[0])


def evidence_gap(conn: psycopg.Connection, metrics: Mapping[str, float]) -> str | None:
    """None when the backtest traded enough to be judged (``brain.has_evidence``);
    otherwise why not, with the rule (``brain.evidence_rule()``)."""
    rt = _metric_value(metrics.get("round_trips", math.nan))
    exposure = _metric_value(metrics.get("exposure", math.nan))
    row = conn.execute(
        "select brain.has_evidence(%s, %s), brain.evidence_rule()", (rt, exposure)
    ).fetchone()
    assert row is not None
    if row[0]:
        return None
    trades = "no" if not rt else f"{int(rt)}"
    share = 0.0 if exposure is None else exposure
    return (
        f"no evidence: {trades} round trips, in the market {share:.1%} of the bars "
        f"(a score needs {row[1]})"
    )


def degradation(champion: float, challenger: float) -> float:
    """(champion − challenger) / |champion|; positive means the challenger is worse.

    Edge cases: a champion score of 0 gives 0 when the challenger is ≥ 0 and +inf when
    it is below; NaN on either side gives NaN (see :func:`decide`). A negative champion
    works through the absolute value: champion −0.5, challenger −0.6 → +0.2 (worse).
    """
    if math.isnan(champion) or math.isnan(challenger):
        return math.nan
    if champion == 0.0:
        return 0.0 if challenger >= 0.0 else math.inf
    return (champion - challenger) / abs(champion)


@dataclass(frozen=True)
class Decision:
    """The verdict on one challenger."""

    action: str  # "promotion" or "rollback"
    reason: str
    champion_version_id: str | None = None
    champion_score: float | None = None
    challenger_score: float | None = None
    degradation: float | None = None
    threshold: float | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    champion_evaluation: str | None = None
    champion_fault: str | None = None
    """Why the judged champion's artifact cannot be served (missing, changed, edited
    manifest, unreadable); None when it loads."""
    serving_version_id: str | None = None
    """The champion after the judgement: the challenger when promoted, else the judged
    champion, or — when that one cannot be served — the earlier champion restored in
    its place (None: the key is left without a champion)."""

    @property
    def promoted(self) -> bool:
        return self.action == "promotion"


_EPS = 1e-12


def decide(
    champion_score: float | None,
    challenger_score: float,
    threshold: float,
    min_abs_degradation: float = 0.0,
) -> tuple[str, float, str]:
    """Promotion or rollback from the two composite scores on the same window.

    * no champion score (it shows no evidence on this window, or cannot be replayed)
      → promotion;
    * no challenger score (NaN) → rollback;
    * rollback when the challenger is worse by more than ``threshold`` relative to
      |champion| **and** by more than ``min_abs_degradation`` in absolute terms (the
      band keeps a champion near 0 from turning noise into rollbacks); otherwise
      promotion. Equality promotes; "equal" allows 1e-12 of floating-point noise, so
      (0.5 − 0.475) / 0.5 counts as exactly 5 %.
    """
    if champion_score is None or math.isnan(champion_score):
        return "promotion", math.nan, "the champion has no composite score on this window"
    if math.isnan(challenger_score):
        return "rollback", math.nan, "the challenger has no composite score"
    d = degradation(champion_score, challenger_score)
    drop = champion_score - challenger_score
    if d > threshold + _EPS and drop > min_abs_degradation + _EPS:
        return (
            "rollback",
            d,
            f"challenger {challenger_score:.4f} is {d:.1%} worse than champion "
            f"{champion_score:.4f} (threshold {threshold:.1%}, "
            f"absolute band {min_abs_degradation:.4f})",
        )
    band = (
        f" and the drop {drop:.4f} within the absolute band {min_abs_degradation:.4f}"
        if d > threshold + _EPS
        else ""
    )
    return (
        "promotion",
        d,
        f"challenger {challenger_score:.4f} vs champion {champion_score:.4f}: "
        f"degradation {d:.1%}" + (band or f" within threshold {threshold:.1%}"),
    )


def verdict(
    *,
    has_champion: bool,
    champion_score: float | None,
    challenger_score: float,
    evidence: str | None,
    dsr: float,
    n_trials: int,
    rules: JudgementRules,
) -> tuple[str, float, str]:
    """The whole rule table (docs/registry.md), in order:

    1. the challenger shows no evidence (``evidence`` is the reason) → rollback: a
       model that never trades, or barely, is not judged good or bad, it is not judged;
    2. the challenger has no composite score → rollback;
    3. its deflated Sharpe ratio is below ``rules.min_dsr`` (or undefined) → rollback:
       its Sharpe is likely the luck of the ``n_trials`` trials made for the symbol;
    4. no champion → promotion (the first model);
    5. otherwise :func:`decide` on the two scores.

    A rejected challenger with no champion leaves the symbol without one; the event
    says so.
    """
    none_kept = "" if has_champion else "; no champion is set"
    if evidence is not None:
        return "rollback", math.nan, f"{evidence}{none_kept}"
    if math.isnan(challenger_score):
        return "rollback", math.nan, f"the challenger has no composite score{none_kept}"
    if not (dsr >= rules.min_dsr - _EPS):
        shown = "undefined" if math.isnan(dsr) else f"{dsr:.3f}"
        return (
            "rollback",
            math.nan,
            f"its Sharpe is likely luck: deflated Sharpe ratio {shown} < {rules.min_dsr} "
            f"over {n_trials} trial(s){none_kept}",
        )
    if not has_champion:
        return "promotion", math.nan, ""
    return decide(champion_score, challenger_score, rules.threshold, rules.min_abs_degradation)


def trial_sharpes(
    conn: psycopg.Connection, exchange: str, symbol: str, timeframe: str
) -> dict[str, float]:
    """The trials made for a symbol: trial key → annualised out-of-sample Sharpe of its
    newest version (:func:`brain_lib.training.trial_key`; NaN when it has none)."""
    from brain_lib.training import trial_key

    rows = conn.execute(
        """
        select v.version_id, v.manifest ->> 'trial_key', m.value
        from raw.model_versions v
        left join raw.model_metrics m
            on m.version_id = v.version_id and m.scope = 'oos' and m.metric = 'sharpe'
        where v.exchange = %s and v.symbol = %s and v.timeframe = %s
        order by v.created_at, v.version_id
        """,
        (exchange, symbol, timeframe),
    ).fetchall()
    out: dict[str, float] = {}
    for version_id, key, sharpe in rows:
        if key is None:  # a version from before trial keys were recorded
            manifest = conn.execute(
                "select manifest from raw.model_versions where version_id = %s", (version_id,)
            ).fetchone()
            key = trial_key(manifest[0]) if manifest else version_id
        out[str(key)] = math.nan if sharpe is None else float(sharpe)
    return out


def deflate(
    conn: psycopg.Connection, record: ChallengerRecord, periods_per_year: float
) -> dict[str, float]:
    """The challenger's deflated Sharpe ratio over the trials made for its symbol.

    ``dsr_trials`` = N, the distinct trials in the registry for the exchange × symbol ×
    timeframe with the challenger's own; ``dsr_benchmark_sharpe`` = the expected
    maximum Sharpe of N unskilled trials (annualised,
    :func:`brain_lib.metrics.expected_max_sharpe`) from the variance of the trials'
    newest per-bar Sharpe ratios; ``dsr`` = :func:`brain_lib.metrics.deflated_sharpe_ratio`.
    """
    from brain_lib import metrics as m

    trials = trial_sharpes(conn, record.exchange, record.symbol, record.timeframe)
    own = record.manifest.get("trial_key")
    sharpe = float(record.metrics.get("sharpe", math.nan))
    if own is not None:
        trials[str(own)] = sharpe
    else:
        trials[record.version_id] = sharpe
    root = math.sqrt(periods_per_year)
    per_bar = [v / root for v in trials.values() if math.isfinite(v)]
    variance = float(pd.Series(per_bar).var(ddof=1)) if len(per_bar) >= 2 else math.nan
    n_trials = len(trials)
    sr0 = m.expected_max_sharpe(n_trials, variance)
    dsr = m.deflated_sharpe_ratio(
        sharpe / root,
        int(record.metrics.get("n_bars", 0) or 0),
        float(record.metrics.get("skewness", math.nan)),
        float(record.metrics.get("kurtosis", math.nan)),
        n_trials,
        variance,
    )
    return {"dsr": dsr, "dsr_trials": float(n_trials), "dsr_benchmark_sharpe": sr0 * root}


def replay_champion(
    champion_manifest: Mapping[str, Any],
    challenger_manifest: Mapping[str, Any],
    candles: pd.DataFrame,
    challenger_config: TrainingConfig,
    oos_window: tuple[pd.Timestamp, pd.Timestamp],
    challenger_metrics: Mapping[str, float],
) -> tuple[dict[str, float] | None, str]:
    """The champion's out-of-sample metrics on the challenger's window.

    The champion's *recipe* — model type, hyperparameters, features, label horizon and
    its own position policy (:func:`brain_lib.training.policy_spec_of`) — goes through
    the same walk-forward on the same candles with the same costs, and is measured on
    exactly the challenger's bars. Returns ``(metrics, how)``; ``metrics`` is None when
    the champion cannot be replayed (its features no longer exist, its model type has
    no adapter, its walk-forward does not cover the window).
    """
    from dataclasses import replace

    from brain_lib.models import MODEL_TYPES
    from brain_lib.training import (
        build_dataset,
        evaluate_walk_forward,
        policy_spec_of,
        recipe_key,
        walk_forward_predictions,
    )

    if recipe_key(dict(champion_manifest)) == recipe_key(dict(challenger_manifest)):
        return dict(challenger_metrics), "same recipe as the challenger: identical positions"
    model_type = str(champion_manifest["model_type"])
    if model_type not in MODEL_TYPES:
        return None, f"no adapter for the champion's model type {model_type!r}"
    horizon = int(champion_manifest.get("label", {}).get("horizon", 1))
    try:
        config = replace(
            challenger_config,
            model_type=model_type,
            params=dict(champion_manifest["hyperparameters"]),
            label_horizon=horizon,
            policy=policy_spec_of(champion_manifest),
        )
    except BrainError as exc:
        return None, f"the champion's recipe is not valid here: {exc}"
    X, y = build_dataset(candles, horizon, config.timeframe)
    features = list(champion_manifest["features"])
    missing = [f for f in features if f not in X.columns]
    if missing:
        return None, f"the champion's features no longer exist: {', '.join(missing[:5])}"
    wf = walk_forward_predictions(X[features], y, config)
    try:
        evaluation = evaluate_walk_forward(wf, X[features], y, candles, config, window=oos_window)
    except BrainError:
        return None, "the champion's walk-forward does not cover the challenger's window"
    return (
        evaluation.metrics,
        "recipe and policy replayed through the same walk-forward, same bars, same costs",
    )


# ------------------------------------------------------------------- writing


@dataclass
class ChallengerRecord:
    """Everything needed to land a trained version, also from the spool."""

    version_id: str
    exchange: str
    symbol: str
    timeframe: str
    model_type: str
    manifest: dict[str, Any]
    artifact_uri: str
    artifact_sha256: str
    metrics: dict[str, float]
    oos_start: pd.Timestamp
    oos_end: pd.Timestamp
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    n_rows: int
    run_id: str | None = None
    importance: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("oos_start", "oos_end", "train_start", "train_end"):
            out[key] = pd.Timestamp(out[key]).isoformat()
        out["metrics"] = {k: _json_float(v) for k, v in self.metrics.items()}
        out["importance"] = [
            {
                k: pd.Timestamp(v).isoformat() if isinstance(v, datetime | pd.Timestamp) else v
                for k, v in row.items()
            }
            for row in self.importance
        ]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChallengerRecord:
        values = dict(data)
        for key in ("oos_start", "oos_end", "train_start", "train_end"):
            values[key] = pd.Timestamp(values[key])
        values["metrics"] = {k: _from_json_float(v) for k, v in values["metrics"].items()}
        return cls(**values)


def _json_float(value: float) -> float | str:
    value = float(value)
    return str(value) if not math.isfinite(value) else value


def _from_json_float(value: float | str) -> float:
    return float(value)


def _metric_value(value: float) -> float | None:
    """NaN is stored as NULL (undefined); ±inf stays (PostgreSQL has Infinity)."""
    value = float(value)
    return None if math.isnan(value) else value


def _lock(
    conn: psycopg.Connection, exchange: str, symbol: str, timeframe: str, model_type: str
) -> None:
    """Serialise champion changes of one symbol × model type (held until commit)."""
    key = f"brain-champion|{exchange}|{symbol}|{timeframe}|{model_type}"
    conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


def champion_of(
    conn: psycopg.Connection, exchange: str, symbol: str, timeframe: str, model_type: str
) -> tuple[str, dict[str, Any]] | None:
    """The current champion's version id and manifest, or None."""
    row = conn.execute(
        """
        select c.version_id, v.manifest from raw.model_champions c
        join raw.model_versions v using (version_id)
        where c.exchange = %s and c.symbol = %s and c.timeframe = %s and c.model_type = %s
        """,
        (exchange, symbol, timeframe, model_type),
    ).fetchone()
    return (row[0], row[1]) if row else None


def _insert_version(
    cur: psycopg.Cursor[Any], record: ChallengerRecord, challenged: str | None
) -> None:
    from psycopg.types.json import Jsonb

    cur.execute(
        """
        insert into raw.model_versions (
            version_id, exchange, symbol, timeframe, model_type, run_id, manifest,
            artifact_uri, artifact_sha256, feature_set_hash, train_start, train_end, n_rows,
            code_version, challenged_version_id
        ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            record.version_id,
            record.exchange,
            record.symbol,
            record.timeframe,
            record.model_type,
            record.run_id,
            Jsonb(record.manifest),
            record.artifact_uri,
            record.artifact_sha256,
            record.manifest["feature_set_hash"],
            record.train_start.to_pydatetime(),
            record.train_end.to_pydatetime(),
            record.n_rows,
            record.manifest.get("code_version"),
            challenged,
        ),
    )


def _insert_metrics(
    cur: psycopg.Cursor[Any],
    record: ChallengerRecord,
    *,
    scope: str = "oos",
    values: Mapping[str, float] | None = None,
) -> None:
    """The version's metrics (scope ``oos``), or the champion's replayed on its bars
    (scope ``champion_replay``, ``values``)."""
    metrics = record.metrics if values is None else values
    cur.executemany(
        """
        insert into raw.model_metrics (version_id, scope, metric, value, window_start, window_end)
        values (%s, %s, %s, %s, %s, %s)
        """,
        [
            (
                record.version_id,
                scope,
                name,
                _metric_value(value),
                record.oos_start.to_pydatetime(),
                record.oos_end.to_pydatetime(),
            )
            for name, value in sorted(metrics.items())
        ],
    )


def _insert_importance(cur: psycopg.Cursor[Any], record: ChallengerRecord) -> None:
    if not record.importance:
        return
    cur.executemany(
        """
        insert into raw.feature_importance (
            version_id, kind, method, feature, importance, normalised, rank, skipped_reason,
            window_start, window_end, n_rows
        ) values (%s, 'training', %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        [
            (
                record.version_id,
                row["method"],
                row["feature"],
                row["importance"],
                row["normalised"],
                row["rank"],
                row["skipped_reason"],
                row["window_start"],
                row["window_end"],
                row["n_rows"],
            )
            for row in record.importance
        ],
    )


def _insert_event(
    cur: psycopg.Cursor[Any],
    *,
    event_type: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    model_type: str,
    version_id: str | None,
    previous_version_id: str | None,
    reason: str,
    champion_score: float | None = None,
    challenger_score: float | None = None,
    degradation_value: float | None = None,
    threshold: float | None = None,
    details: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
) -> int:
    from psycopg.types.json import Jsonb

    def num(value: float | None) -> float | None:
        return None if value is None else _metric_value(value)

    row = cur.execute(
        """
        insert into raw.model_events (
            event_type, exchange, symbol, timeframe, model_type, version_id,
            previous_version_id, champion_score, challenger_score, degradation, threshold,
            reason, run_id, details, created_at
        ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))
        returning event_id
        """,
        (
            event_type,
            exchange,
            symbol,
            timeframe,
            model_type,
            version_id,
            previous_version_id,
            num(champion_score),
            num(challenger_score),
            num(degradation_value),
            threshold,
            reason,
            run_id,
            Jsonb(_jsonable(details or {})),
            at,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _set_champion(
    cur: psycopg.Cursor[Any],
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    model_type: str,
    version_id: str,
    event_id: int,
    at: datetime | None,
) -> None:
    cur.execute(
        """
        insert into raw.model_champions
            (exchange, symbol, timeframe, model_type, version_id, since, event_id)
        values (%s, %s, %s, %s, %s, coalesce(%s, now()), %s)
        on conflict (exchange, symbol, timeframe, model_type) do update
        set version_id = excluded.version_id, since = excluded.since, event_id = excluded.event_id
        """,
        (exchange, symbol, timeframe, model_type, version_id, at, event_id),
    )


def version_exists(conn: psycopg.Connection, version_id: str) -> bool:
    row = conn.execute(
        "select 1 from raw.model_versions where version_id = %s", (version_id,)
    ).fetchone()
    return row is not None


def servability_fault(conn: psycopg.Connection, version_id: str) -> str | None:
    """None when the version's artifact loads (:func:`load_model`: present, the
    recorded sha256, an unedited manifest, readable by its adapter); otherwise what is
    wrong, in one line without the version prefix."""
    info = get_version(conn, version_id)
    try:
        load_model(info.artifact_uri, info.artifact_sha256, info.manifest, info.version_id)
    except (ArtifactError, ManifestError) as exc:
        return str(exc).removeprefix(f"version {version_id}: ")
    return None


def servable_predecessor(
    conn: psycopg.Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    model_type: str,
    unservable: str,
) -> str | None:
    """The newest earlier champion of the key (by its champion-changing events) whose
    artifact loads, other than ``unservable``; None when there is none."""
    rows = conn.execute(
        """
        select version_id from raw.model_events
        where exchange = %s and symbol = %s and timeframe = %s and model_type = %s
          and event_type = any(%s) and version_id is not null
        order by created_at desc, event_id desc
        """,
        (exchange, symbol, timeframe, model_type, list(CHAMPION_CHANGING_EVENTS)),
    ).fetchall()
    tried: set[str] = {unservable}
    for (version_id,) in rows:
        if version_id in tried:
            continue
        tried.add(version_id)
        fault = servability_fault(conn, version_id)
        if fault is None:
            return str(version_id)
        log.warning("earlier champion %s cannot be restored either: %s", version_id, fault)
    return None


def judge_and_record(
    conn: psycopg.Connection,
    record: ChallengerRecord,
    *,
    candles: pd.DataFrame,
    config: TrainingConfig,
    rules: JudgementRules | None = None,
    at: datetime | None = None,
) -> Decision:
    """Judge a challenger against the champion on the same window and land everything.

    One transaction: advisory lock → read the champion → the challenger's deflated
    Sharpe ratio over the trials in the registry (:func:`deflate`, added to its
    metrics) → score both sides (the champion's recipe replayed, :func:`replay_champion`)
    → :func:`verdict` → insert version, metrics (scope ``oos``, and the champion's
    replayed metrics on the same bars as scope ``champion_replay``), feature
    importance, event → move the champion pointer on promotion. Landing a version that
    is already stored does nothing (idempotent; used by the spool).

    The champion's artifact is loaded too (:func:`servability_fault`); when it cannot
    be served the rule of the module docstring applies ("A champion that cannot be
    served"): a warning, a ``champion_unservable`` event before the judgement's own,
    and the champion pointer never left on it.
    """
    from brain_lib import metrics as m

    rules = rules or JudgementRules()
    with conn.transaction(), conn.cursor() as cur:
        _lock(conn, record.exchange, record.symbol, record.timeframe, record.model_type)
        if version_exists(conn, record.version_id):
            return Decision(action="exists", reason="version already landed")
        current = champion_of(
            conn, record.exchange, record.symbol, record.timeframe, record.model_type
        )
        record.metrics.update(deflate(conn, record, m.periods_per_year(record.timeframe)))
        challenger_score = composite_score(conn, record.metrics)
        evidence = evidence_gap(conn, record.metrics)
        champion_id: str | None = None
        champion_metrics: dict[str, float] | None = None
        champion_score: float | None = None
        how: str | None = None
        fault: str | None = None
        if current is not None:
            champion_id, champion_manifest = current
            fault = servability_fault(conn, champion_id)
            if fault is not None:
                log.warning(
                    "champion %s of %s %s cannot be served: %s; judging %s against its recipe",
                    champion_id,
                    record.symbol,
                    record.model_type,
                    fault,
                    record.version_id,
                )
            champion_metrics, how = replay_champion(
                champion_manifest,
                record.manifest,
                candles,
                config,
                (record.oos_start, record.oos_end),
                record.metrics,
            )
            if champion_metrics is not None:
                champion_score = composite_score(conn, champion_metrics)
        action, d, reason = verdict(
            has_champion=current is not None,
            champion_score=champion_score,
            challenger_score=challenger_score,
            evidence=evidence,
            dsr=float(record.metrics["dsr"]),
            n_trials=int(record.metrics["dsr_trials"]),
            rules=rules,
        )
        if current is None and action == "promotion":
            reason = f"first {record.model_type} model of {record.symbol}"
        elif current is not None and champion_metrics is None:
            reason = f"{reason} ({how})"
        elif current is not None and champion_score is not None and math.isnan(champion_score):
            gap = evidence_gap(conn, champion_metrics or {})
            if gap and action == "promotion":
                reason = f"{reason}: the champion shows {gap}"
        serving = record.version_id if action == "promotion" else champion_id
        unservable_reason = ""
        if fault is not None:
            if action == "promotion":
                outcome = f"{record.version_id} replaces it"
            else:
                serving = servable_predecessor(
                    conn,
                    record.exchange,
                    record.symbol,
                    record.timeframe,
                    record.model_type,
                    str(champion_id),
                )
                outcome = (
                    f"{serving}, the newest earlier champion that loads, is restored"
                    if serving
                    else "no earlier champion loads: no champion is set"
                )
            unservable_reason = f"champion {champion_id} cannot be served ({fault}); {outcome}"
            reason = f"{reason}; {unservable_reason}"
        decision = Decision(
            action=action,
            reason=reason,
            champion_version_id=champion_id,
            champion_score=champion_score,
            challenger_score=challenger_score,
            degradation=d if current is not None else None,
            threshold=rules.threshold,
            champion_metrics=champion_metrics or {},
            champion_evaluation=how,
            champion_fault=fault,
            serving_version_id=serving,
        )
        record.manifest["challenged_version_id"] = decision.champion_version_id
        _insert_version(cur, record, decision.champion_version_id)
        _insert_metrics(cur, record)
        if champion_metrics is not None:
            _insert_metrics(cur, record, scope="champion_replay", values=champion_metrics)
        _insert_importance(cur, record)
        if fault is not None:
            _record_unservable(cur, record, decision, unservable_reason, at)
        event_id = _insert_event(
            cur,
            event_type=decision.action,
            exchange=record.exchange,
            symbol=record.symbol,
            timeframe=record.timeframe,
            model_type=record.model_type,
            version_id=record.version_id,
            previous_version_id=decision.champion_version_id,
            reason=decision.reason,
            champion_score=decision.champion_score,
            challenger_score=decision.challenger_score,
            degradation_value=decision.degradation,
            threshold=rules.threshold,
            details={
                "window": [record.oos_start.isoformat(), record.oos_end.isoformat()],
                "rules": rules.to_dict(),
                "evidence": evidence,
                "dsr": record.metrics["dsr"],
                "dsr_trials": record.metrics["dsr_trials"],
                "challenger_metrics": record.metrics,
                "champion_metrics": decision.champion_metrics,
                "champion_evaluation": decision.champion_evaluation,
            },
            run_id=record.run_id,
            at=at,
        )
        if decision.promoted:
            _set_champion(
                cur,
                exchange=record.exchange,
                symbol=record.symbol,
                timeframe=record.timeframe,
                model_type=record.model_type,
                version_id=record.version_id,
                event_id=event_id,
                at=at,
            )
    if fault is not None:
        log.warning(
            "champion_unservable",
            extra={
                "symbol": record.symbol,
                "model_type": record.model_type,
                "unservable_version": decision.champion_version_id,
                "fault": fault,
                "champion_version": decision.serving_version_id,
            },
        )
    if not decision.promoted:
        log.warning(
            "model_rollback_occurred",
            extra={
                "symbol": record.symbol,
                "model_type": record.model_type,
                "rejected_version": record.version_id,
                "champion_version": decision.champion_version_id,
                "reason": decision.reason,
            },
        )
    return decision


def _record_unservable(
    cur: psycopg.Cursor[Any],
    record: ChallengerRecord,
    decision: Decision,
    reason: str,
    at: datetime | None,
) -> None:
    """The ``champion_unservable`` event of a judgement, and the pointer moved off the
    unservable champion: to the restored one, or removed when none loads (on
    promotion the judgement's own event moves it to the challenger)."""
    key = {
        "exchange": record.exchange,
        "symbol": record.symbol,
        "timeframe": record.timeframe,
        "model_type": record.model_type,
    }
    event_id = _insert_event(
        cur,
        event_type="champion_unservable",
        exchange=record.exchange,
        symbol=record.symbol,
        timeframe=record.timeframe,
        model_type=record.model_type,
        version_id=decision.serving_version_id,
        previous_version_id=decision.champion_version_id,
        reason=reason,
        details={
            "fault": decision.champion_fault,
            "judged_version_id": record.version_id,
            "judgement": decision.action,
        },
        run_id=record.run_id,
        at=at,
    )
    if decision.promoted:
        return
    if decision.serving_version_id is None:
        cur.execute(
            """
            delete from raw.model_champions
            where exchange = %s and symbol = %s and timeframe = %s and model_type = %s
            """,
            (record.exchange, record.symbol, record.timeframe, record.model_type),
        )
    else:
        _set_champion(cur, **key, version_id=decision.serving_version_id, event_id=event_id, at=at)


def record_from_result(
    result: TrainingResult,
    stored: RegisteredVersion,
    run_id: str | None,
    importance: list[dict[str, Any]] | None = None,
) -> ChallengerRecord:
    """The record of a freshly trained and saved version."""
    start, end = result.oos_window
    return ChallengerRecord(
        version_id=stored.version_id,
        exchange=result.exchange,
        symbol=result.symbol,
        timeframe=result.timeframe,
        model_type=str(result.manifest["model_type"]),
        manifest=dict(stored.manifest),
        artifact_uri=stored.artifact_uri,
        artifact_sha256=stored.artifact_sha256,
        metrics={k: float(v) for k, v in result.metrics.items()},
        oos_start=start,
        oos_end=end,
        train_start=result.train_start,
        train_end=result.train_end,
        n_rows=result.n_rows,
        run_id=run_id,
        importance=list(importance or []),
    )


def register_version(
    conn: psycopg.Connection,
    result: TrainingResult,
    *,
    artifact_root: str,
    candles: pd.DataFrame | None = None,
    config: TrainingConfig | None = None,
    rules: JudgementRules | None = None,
    run_id: str | None = None,
    at: datetime | None = None,
    importance: list[dict[str, Any]] | None = None,
) -> tuple[RegisteredVersion, Decision]:
    """Save the artifact, then judge and land the version with its metrics, feature
    importance (rows of :func:`brain_lib.training.version_importance`) and event in
    one transaction."""
    from brain_lib.training import TrainingConfig

    version_id = new_version_id(result.symbol, result.manifest["model_type"])
    stored = save_artifact(result, artifact_root, version_id)
    record = record_from_result(result, stored, run_id, importance)
    if candles is None:
        raise ValueError("candles are needed to replay the champion on the same window")
    decision = judge_and_record(
        conn, record, candles=candles, config=config or TrainingConfig(), rules=rules, at=at
    )
    return stored, decision


# ------------------------------------------------------------ manual changes


@dataclass(frozen=True)
class VersionInfo:
    """A version row as stored."""

    version_id: str
    exchange: str
    symbol: str
    timeframe: str
    model_type: str
    created_at: datetime
    manifest: dict[str, Any]
    artifact_uri: str
    artifact_sha256: str
    run_id: str | None


def get_version(conn: psycopg.Connection, version_id: str) -> VersionInfo:
    """A stored version; :class:`UnknownVersionError` when there is none."""
    row = conn.execute(
        """
        select version_id, exchange, symbol, timeframe, model_type, created_at, manifest,
               artifact_uri, artifact_sha256, run_id
        from raw.model_versions where version_id = %s
        """,
        (version_id,),
    ).fetchone()
    if row is None:
        raise UnknownVersionError(f"unknown model version {version_id!r}")
    return VersionInfo(*row)


def verify_servable(info: VersionInfo, action: str) -> None:
    """Refuse to make a version champion unless its artifact loads: present, with the
    sha256 the warehouse recorded, and readable by its model type's adapter. Raises
    :class:`ArtifactError` (or :class:`ManifestError`) naming the version and the fault;
    nothing is written (the caller has not written yet)."""
    try:
        load_model(info.artifact_uri, info.artifact_sha256, info.manifest, info.version_id)
    except (ArtifactError, ManifestError) as exc:
        raise type(exc)(f"refusing to {action} {info.version_id}: {exc}") from None


def promote(
    conn: psycopg.Connection, version_id: str, *, reason: str, at: datetime | None = None
) -> str | None:
    """Make ``version_id`` the champion by hand; returns the version it replaced."""
    if not reason.strip():
        raise BrainError("a manual promotion needs a --reason")
    with conn.transaction(), conn.cursor() as cur:
        info = get_version(conn, version_id)
        verify_servable(info, "promote")
        _lock(conn, info.exchange, info.symbol, info.timeframe, info.model_type)
        current = champion_of(conn, info.exchange, info.symbol, info.timeframe, info.model_type)
        previous = current[0] if current else None
        if previous == version_id:
            raise BrainError(f"{version_id} is already the champion")
        event_id = _insert_event(
            cur,
            event_type="manual_promotion",
            exchange=info.exchange,
            symbol=info.symbol,
            timeframe=info.timeframe,
            model_type=info.model_type,
            version_id=version_id,
            previous_version_id=previous,
            reason=reason,
            at=at,
        )
        _set_champion(
            cur,
            exchange=info.exchange,
            symbol=info.symbol,
            timeframe=info.timeframe,
            model_type=info.model_type,
            version_id=version_id,
            event_id=event_id,
            at=at,
        )
    return previous


def rollback(
    conn: psycopg.Connection,
    symbol: str,
    *,
    reason: str,
    model_type: str | None = None,
    exchange: str | None = None,
    timeframe: str | None = None,
    at: datetime | None = None,
) -> tuple[str, str]:
    """Move the champion back to the version that was champion before it.

    Returns ``(restored, demoted)``. The symbol must have exactly one champion that
    matches the optional filters.
    """
    if not reason.strip():
        raise BrainError("a manual rollback needs a --reason")
    with conn.transaction(), conn.cursor() as cur:
        rows = conn.execute(
            """
            select exchange, timeframe, model_type, version_id from raw.model_champions
            where symbol = %s and (%s::text is null or model_type = %s)
              and (%s::text is null or exchange = %s) and (%s::text is null or timeframe = %s)
            """,
            (symbol, model_type, model_type, exchange, exchange, timeframe, timeframe),
        ).fetchall()
        if not rows:
            raise NoModelError(f"{symbol} has no champion to roll back")
        if len(rows) > 1:
            kinds = ", ".join(f"{r[0]} {r[1]} {r[2]}" for r in rows)
            raise BrainError(
                f"{symbol} has several champions ({kinds}); "
                "pass --model-type, --exchange or --timeframe"
            )
        ex, tf, mt, current = rows[0]
        _lock(conn, ex, symbol, tf, mt)
        history = conn.execute(
            """
            select version_id from raw.model_events
            where exchange = %s and symbol = %s and timeframe = %s and model_type = %s
              and event_type = any(%s) and version_id is not null
            order by created_at, event_id
            """,
            (ex, symbol, tf, mt, list(CHAMPION_CHANGING_EVENTS)),
        ).fetchall()
        periods = [r[0] for r in history]
        if len(periods) < 2:
            raise NoModelError(f"{symbol} {mt} has no earlier champion to roll back to")
        restored = periods[-2]
        verify_servable(get_version(conn, restored), "roll back to")
        event_id = _insert_event(
            cur,
            event_type="manual_rollback",
            exchange=ex,
            symbol=symbol,
            timeframe=tf,
            model_type=mt,
            version_id=restored,
            previous_version_id=current,
            reason=reason,
            at=at,
        )
        _set_champion(
            cur,
            exchange=ex,
            symbol=symbol,
            timeframe=tf,
            model_type=mt,
            version_id=restored,
            event_id=event_id,
            at=at,
        )
    log.warning(
        "model_rollback_occurred",
        extra={"symbol": symbol, "model_type": mt, "restored": restored, "demoted": current},
    )
    return restored, current
