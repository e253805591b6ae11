"""Confidence, the choice of a champion, the learned preference and hysteresis."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from brain_lib.errors import ConfigError, NoModelError
from brain_lib.models import DEEP_MODEL_TYPES
from brain_lib.selection._regimes import (
    DEFAULT_PREFERENCE,
    REGIMES,
    SelectionSettings,
    check_regime,
)

# ---------------------------------------------------------------- confidence


def shrunk_agreement(hits: int, n: int, prior: float) -> float:
    """:math:`a = (h + k/2) / (n + k)`; 1/2 with no bar."""
    if n + prior <= 0:
        return 0.5
    return (hits + prior / 2.0) / (n + prior)


def _unit(value: float | None) -> float:
    if value is None or not math.isfinite(value):
        return 0.0
    return min(max(float(value), 0.0), 1.0)


def confidence_score(
    evidence: float | None,
    stability: float | None,
    agreement: float | None,
    age_days: float,
    settings: SelectionSettings | None = None,
) -> float:
    r""":math:`c = 2^{-d/H}(w_e e + w_s s + w_a \max(0, 2a - 1))` (module docstring).

    Parameters
    ----------
    evidence, stability : float or None
        In [0, 1]; None or NaN counts as 0 (no evidence), values outside are clipped.
    agreement : float or None
        Shrunk agreement :math:`a` in [0, 1]; None or NaN counts as chance (1/2).
    age_days : float
        Days since the last training bar; negative counts as 0.

    Returns
    -------
    float
        In [0, 1]; non-decreasing in ``evidence``, ``stability`` and ``agreement``,
        non-increasing in ``age_days``.
    """
    s = settings or SelectionSettings()
    a = 0.5 if agreement is None or not math.isfinite(agreement) else _unit(agreement)
    body = (
        s.weight_evidence * _unit(evidence)
        + s.weight_stability * _unit(stability)
        + s.weight_agreement * max(0.0, 2.0 * a - 1.0)
    )
    age = max(float(age_days), 0.0) if math.isfinite(age_days) else math.inf
    return float(min(max(body * 2.0 ** (-age / s.age_half_life_days), 0.0), 1.0))


@dataclass(frozen=True)
class Confidence:
    """A champion's confidence and every input of the formula."""

    value: float
    evidence: float | None
    evidence_metric: str | None
    stability: float | None
    agreement: float
    agreement_bars: int
    agreement_hits: int
    age_days: float
    note: str = ""

    def explain(self, settings: SelectionSettings) -> str:
        ev = "none" if self.evidence is None else f"{self.evidence:.3f} {self.evidence_metric}"
        st = "unknown" if self.stability is None else f"{self.stability:.3f}"
        text = (
            f"{self.value:.3f} = 2^(-{self.age_days:.1f}d/{settings.age_half_life_days:g}d) x "
            f"({settings.weight_evidence:g} x evidence {ev} + {settings.weight_stability:g} x "
            f"stability {st} + {settings.weight_agreement:g} x max(0, 2 x agreement "
            f"{self.agreement:.3f} - 1) on {self.agreement_bars} bars)"
        )
        return f"{text}; {self.note}" if self.note else text


# ------------------------------------------------------------------ choosing


@dataclass(frozen=True)
class ChampionEvidence:
    """A champion and the stored out-of-sample evidence the selector reads."""

    version_id: str
    model_type: str
    exchange: str
    symbol: str
    timeframe: str
    since: datetime | None = None
    train_end: pd.Timestamp | None = None
    composite: float | None = None
    dsr: float | None = None
    psr: float | None = None
    policy_flat_folds: float | None = None
    scored_folds: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    artifact_uri: str = ""
    artifact_sha256: str = ""

    @property
    def evidence(self) -> tuple[float | None, str | None]:
        for name, value in (("dsr", self.dsr), ("psr", self.psr)):
            if value is not None and math.isfinite(value):
                return float(value), name
        return None, None

    @property
    def stability(self) -> float | None:
        if not self.scored_folds or self.policy_flat_folds is None:
            return None
        return _unit(1.0 - self.policy_flat_folds / self.scored_folds)


@dataclass(frozen=True)
class Choice:
    """Which champion serves a regime, and why."""

    regime: str
    preferred_model_type: str
    champion: ChampionEvidence
    fallback: bool
    reason: str


def _rank_key(c: ChampionEvidence) -> tuple[float, float, str]:
    composite = c.composite if c.composite is not None and math.isfinite(c.composite) else -math.inf
    evidence = c.evidence[0]
    return (composite, evidence if evidence is not None else -math.inf, c.model_type)


def choose_champion(
    regime: str,
    preference: Mapping[str, str],
    champions: Sequence[ChampionEvidence],
    installed: Sequence[str],
    *,
    known: Sequence[str] = (),
) -> Choice:
    """The champion of the type ``preference`` names for ``regime``; when that type is
    not installed here or has no champion, the best champion of another installed type
    (highest out-of-sample composite score, then DSR), with the reason saying so.

    Raises :class:`ConfigError` for an unknown regime or an unknown preferred type, and
    :class:`NoModelError` when no installed type has a champion."""
    check_regime(regime)
    preferred = preference.get(regime, DEFAULT_PREFERENCE[regime])
    names = sorted({*installed, *known, *DEEP_MODEL_TYPES})
    if preferred not in names:
        raise ConfigError(
            f"unknown model type {preferred!r} preferred for regime {regime} "
            f"(choices: {', '.join(names)})"
        )
    servable = [c for c in champions if c.model_type in installed]
    if not servable:
        what = ""
        if champions:
            c0 = champions[0]
            types = ", ".join(sorted({c.model_type for c in champions}))
            what = (
                f" for {c0.exchange} {c0.symbol} {c0.timeframe}: only {types}, not "
                f"installed here (installed: {', '.join(installed)})"
            )
        raise NoModelError(f"no champion to select{what}")
    own = [c for c in servable if c.model_type == preferred]
    if own:
        return Choice(
            regime,
            preferred,
            own[0],
            False,
            f"regime {regime} prefers {preferred}: its champion {own[0].version_id}",
        )
    best = max(servable, key=_rank_key)
    why = (
        f"{preferred} is not installed here (installed: {', '.join(installed)})"
        if preferred not in installed
        else f"{preferred} has no champion for {best.symbol}"
    )
    score = "no composite" if best.composite is None else f"composite {best.composite:.4f}"
    return Choice(
        regime,
        preferred,
        best,
        True,
        f"regime {regime} prefers {preferred}, but {why}; falling back to the best "
        f"champion of another type: {best.model_type} {best.version_id} ({score})",
    )


@dataclass(frozen=True)
class LearnedChoice:
    """Per regime, the type whose champion traded best on that regime's bars."""

    regime: str
    model_type: str | None
    sharpe: float | None
    bars: int
    note: str = ""


def learn_preference(
    returns: Mapping[str, pd.Series],
    regimes: pd.Series,
    *,
    min_bars: int = 48,
    periods_per_year: float = 8760.0,
) -> dict[str, LearnedChoice]:
    """Per regime, the model type whose net returns (per bar, indexed by the decision
    bar, out of sample only) had the highest annualised Sharpe ratio on the bars of
    that regime (the regime at the decision bar, point-in-time). A type needs
    ``min_bars`` bars of the regime to compete."""
    out: dict[str, LearnedChoice] = {}
    for regime in REGIMES:
        best: tuple[float, str, int] | None = None
        most = 0
        for model_type, series in sorted(returns.items()):
            tags = regimes.reindex(series.index)
            r = series[(tags == regime).to_numpy()].dropna()
            most = max(most, len(r))
            if len(r) < min_bars:
                continue
            sd = float(r.std(ddof=1))
            sharpe = float(r.mean()) / sd * math.sqrt(periods_per_year) if sd > 0 else 0.0
            if best is None or sharpe > best[0]:
                best = (sharpe, model_type, len(r))
        if best is None:
            out[regime] = LearnedChoice(
                regime, None, None, most, f"fewer than {min_bars} out-of-sample bars"
            )
        else:
            out[regime] = LearnedChoice(regime, best[1], best[0], best[2])
    return out


@dataclass(frozen=True)
class SwitchDecision:
    """Whether to replace the model in service, and why."""

    switch: bool
    reason: str


def switch_decision(
    *,
    current_id: str,
    candidate_id: str,
    run_bars: int,
    current_confidence: float,
    candidate_confidence: float,
    persist_bars: int,
    margin: float,
) -> SwitchDecision:
    """Hysteresis: switch from ``current_id`` to ``candidate_id`` only when the regime
    that asks for the candidate has lasted ``persist_bars`` bars (``run_bars``), or the
    candidate's confidence beats the current one's by ``margin``."""
    if candidate_id == current_id:
        return SwitchDecision(False, f"{current_id} is already the choice")
    gain = candidate_confidence - current_confidence
    if run_bars >= persist_bars:
        return SwitchDecision(
            True, f"the regime has lasted {run_bars} bars (>= {persist_bars}): switch"
        )
    if gain >= margin:
        return SwitchDecision(
            True, f"confidence improves by {gain:.3f} (>= margin {margin:g}): switch"
        )
    return SwitchDecision(
        False,
        f"keep {current_id}: the regime has lasted {run_bars} of {persist_bars} bars and "
        f"confidence improves by {gain:.3f} (< margin {margin:g})",
    )
