"""The composite score written again in Python, as the tests' independent reference
for the SQL in dbt_brain/macros/composite_score.sql (weights and evidence rule from
dbt_project.yml)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

WEIGHTS = {
    "sharpe": 0.30,
    "sortino": 0.15,
    "calmar": 0.15,
    "profit_factor": 0.15,
    "hit_ratio": 0.10,
    "max_drawdown": 0.15,
}
MIN_ROUND_TRIPS = 10
MIN_EXPOSURE = 0.02

TRANSFORMS: dict[str, Callable[[float], float]] = {
    "sharpe": lambda x: math.tanh(x / 2),
    "sortino": lambda x: math.tanh(x / 3),
    "calmar": lambda x: math.tanh(x / 3),
    "profit_factor": lambda x: 1.0 if x == math.inf else (x - 1) / (x + 1),
    "hit_ratio": lambda x: 2 * x - 1,
    "max_drawdown": lambda x: 1 + 2 * x,
}


def component(name: str, value: float | None) -> float | None:
    """One bounded component; None (undefined) for None or NaN."""
    if value is None or math.isnan(value):
        return None
    return TRANSFORMS[name](value)


def component_scores(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    """Every component of a metrics dict."""
    return {name: component(name, metrics.get(name)) for name in TRANSFORMS}


def has_evidence(metrics: Mapping[str, float | None]) -> bool:
    """Enough round trips and exposure to be scored at all."""
    trips = metrics.get("round_trips") or 0.0
    exposure = metrics.get("exposure") or 0.0
    trips = 0.0 if math.isnan(trips) else trips
    exposure = 0.0 if math.isnan(exposure) else exposure
    return trips >= MIN_ROUND_TRIPS and exposure >= MIN_EXPOSURE


def composite_score(metrics: Mapping[str, float | None]) -> float | None:
    """Σ weight · component; None without evidence or with an undefined component."""
    if not has_evidence(metrics):
        return None
    parts = component_scores(metrics)
    if any(value is None for value in parts.values()):
        return None
    return sum(weight * (parts[name] or 0.0) for name, weight in WEIGHTS.items())
