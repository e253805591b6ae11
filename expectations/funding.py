"""Suite ``raw.funding_rates``: funding rates of perpetual swaps.

- expect_funding_rate_within: abs(funding_rate) <= max_abs_funding_rate (default 0.03);
  blocking; row-level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from expectations.settings import QualitySettings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

__all__ = ["SUITE_NAME", "TABLE", "build_suite"]

TABLE = "funding_rates"
SUITE_NAME = "raw.funding_rates"


def build_suite(settings: QualitySettings | None = None) -> ExpectationSuite:
    """The funding-rate suite with the bound of ``settings``."""
    from expectations import rules as r
    from expectations._suite import make_suite

    s = settings if settings is not None else QualitySettings()
    return make_suite(
        SUITE_NAME,
        TABLE,
        [r.make_rule(r.ExpectFundingRateWithin, s, max_abs_rate=s.max_abs_funding_rate)],
        notes="Funding rates within a plausible bound per funding interval.",
    )
