"""The composite score written again in Python, as the tests' independent reference
for the SQL in dbt_brain/macros/composite_score.sql (weights from dbt_project.yml)."""

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


def composite_score(metrics: Mapping[str, float | None]) -> float:
    """Σ weight · component, an undefined component counting 0."""
    return sum(
        weight * (component(name, metrics.get(name)) or 0.0) for name, weight in WEIGHTS.items()
    )
