"""Suite ``raw.model_metrics``: metrics of trained model versions (long format).

NULL and NaN mean "undefined" and pass every rule.

- expect_metric_value_finite: finite; +Infinity only for sortino, profit_factor and
  calmar; blocking.
- expect_metric_within_definition: hit_ratio, exposure, psr, dsr in [0, 1], max
  drawdowns in [-1, 0], profit_factor, turnover_per_bar, round_trips >= 0; blocking.
- expect_metric_plausible: abs(sharpe) <= max_abs_sharpe (10), a finite abs(sortino) <=
  max_abs_sortino (20); warning.

raw.model_metrics is append-only and written with its version in one transaction, so
failing rows are reported (raw.data_quality_results), never copied anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from expectations.settings import QualitySettings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

__all__ = ["SUITE_NAME", "TABLE", "build_suite"]

TABLE = "model_metrics"
SUITE_NAME = "raw.model_metrics"


def build_suite(settings: QualitySettings | None = None) -> ExpectationSuite:
    """The model-metrics suite with the plausibility bounds of ``settings``."""
    from expectations import rules as r
    from expectations._suite import make_suite

    s = settings if settings is not None else QualitySettings()
    return make_suite(
        SUITE_NAME,
        TABLE,
        [
            r.make_rule(r.ExpectMetricValueFinite, s),
            r.make_rule(r.ExpectMetricWithinDefinition, s),
            r.make_rule(
                r.ExpectMetricPlausible,
                s,
                max_abs_sharpe=s.max_abs_sharpe,
                max_abs_sortino=s.max_abs_sortino,
            ),
        ],
        notes="Model metrics are finite where they must be and within their definitions.",
    )
