r"""Volatility regimes and the model selector (docs/selection.md).

**Regime** of bar :math:`t` (point-in-time: only bars up to :math:`t`):

.. math::

    r_t = \ln(C_t / C_{t-1}), \qquad
    \sigma_t = \sqrt{\tfrac{1}{W} \textstyle\sum_{i=0}^{W-1} r_{t-i}^2}, \qquad
    p_t = \frac{\#\{s \in (t-L, t] : \sigma_s \le \sigma_t\}}{\#\{s \in (t-L, t] :
    \sigma_s \text{ defined}\}}

:math:`\sigma_t` is the realised volatility of the last :math:`W` bars (``vol_window``,
every one of the :math:`W` returns present), :math:`p_t` its rank within its own
trailing distribution of the last :math:`L` bars (``history_bars``, :math:`\sigma_t`
included, at least ``min_history`` defined values). The regime is ``low`` for
:math:`p_t \le q_{low}`, ``normal`` for :math:`p_t \le q_{high}`, ``high`` for
:math:`p_t \le q_{extreme}` and ``extreme`` above (defaults 0.25, 0.75, 0.95). Every
window ends at :math:`t`, so a bar's regime never changes when later bars arrive.

**Confidence** in a champion, in [0, 1]:

.. math::

    c = 2^{-d/H}\,\bigl(w_e\,e + w_s\,s + w_a \max(0,\, 2a - 1)\bigr), \qquad
    a = \frac{h + k/2}{n + k}

* :math:`e` — evidence: the champion's out-of-sample deflated Sharpe ratio (its PSR when
  no DSR is stored; 0 when neither is);
* :math:`s` — fold stability: the share of its scored walk-forward folds whose own
  fitted policy found skill on its calibration rows (``1 − policy_flat_folds / folds``;
  0 when unknown);
* :math:`a` — agreement: of the :math:`n` most recent bars after its training window
  whose label is known at the decision time (at most ``agreement_bars``), the share
  :math:`h/n` where the sign of the centred prediction equals the sign of the realised
  forward return, shrunk towards chance (1/2) by :math:`k` pseudo-bars
  (``agreement_prior``); no such bar gives :math:`a = 1/2`, which adds nothing;
* :math:`d` — age in days from the last bar it was trained on to the decision time,
  halving the confidence every :math:`H` days (``age_half_life_days``).

Weights :math:`w_e + w_s + w_a = 1` (defaults 0.5, 0.25, 0.25), so :math:`c \in [0, 1]`;
it is non-decreasing in :math:`e`, :math:`s` and :math:`a` and non-increasing in
:math:`d` (:func:`confidence_score`).

**Hysteresis** (:func:`switch_decision`): a model in service is replaced by the
selector's choice only when the regime that asks for it has lasted ``persist_bars``
bars in a row, or the choice's confidence exceeds the current model's by
``switch_margin``.
"""

from __future__ import annotations

from brain_lib.models import DEEP_MODEL_TYPES
from brain_lib.selection._choice import (
    ChampionEvidence,
    Choice,
    Confidence,
    LearnedChoice,
    SwitchDecision,
    choose_champion,
    confidence_score,
    learn_preference,
    shrunk_agreement,
    switch_decision,
)
from brain_lib.selection._regimes import (
    DEFAULT_PREFERENCE,
    REGIMES,
    RegimeReading,
    SelectionSettings,
    check_regime,
    classify_percentiles,
    current_regime,
    detect_regimes,
    realised_volatility,
    regime_run_length,
    volatility_percentile,
)
from brain_lib.selection._selector import ModelSelector, Selection

__all__ = [
    "DEEP_MODEL_TYPES",
    "DEFAULT_PREFERENCE",
    "REGIMES",
    "ChampionEvidence",
    "Choice",
    "Confidence",
    "LearnedChoice",
    "ModelSelector",
    "RegimeReading",
    "Selection",
    "SelectionSettings",
    "SwitchDecision",
    "check_regime",
    "choose_champion",
    "classify_percentiles",
    "confidence_score",
    "current_regime",
    "detect_regimes",
    "learn_preference",
    "realised_volatility",
    "regime_run_length",
    "shrunk_agreement",
    "switch_decision",
    "volatility_percentile",
]
