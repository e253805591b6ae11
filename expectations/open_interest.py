"""Suite ``raw.open_interest``: open interest history.

- expect_open_interest_non_negative: open_interest_amount and open_interest_value are
  finite and >= 0 (NULL allowed); blocking; row-level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from expectations.settings import QualitySettings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

__all__ = ["SUITE_NAME", "TABLE", "build_suite"]

TABLE = "open_interest"
SUITE_NAME = "raw.open_interest"


def build_suite(settings: QualitySettings | None = None) -> ExpectationSuite:
    """The open-interest suite."""
    from expectations import rules as r
    from expectations._suite import make_suite

    s = settings if settings is not None else QualitySettings()
    return make_suite(
        SUITE_NAME,
        TABLE,
        [r.make_rule(r.ExpectOpenInterestNonNegative, s)],
        notes="Open interest is never negative.",
    )
