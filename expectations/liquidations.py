"""Suite ``raw.liquidations``: forced liquidations.

| expectation | rule | default severity | row-level |
|---|---|---|---|
| expect_liquidation_side_known | side in {long, short} (NULL fails) | blocking | yes |
| expect_liquidation_quantity_positive | quantity finite and > 0 (NULL fails) | blocking | yes |
| expect_liquidation_price_positive | price finite and > 0 (NULL fails) | blocking | yes |
| expect_liquidation_not_in_future | ts <= loaded_at + max_clock_skew_s (5 s) | blocking | yes |
| expect_liquidation_no_duplicates | no 2nd row of the same ts, side, price, size | blocking | yes |
| expect_liquidation_notional_non_negative | notional finite, >= 0 (NULL passes) | blocking | yes |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from expectations.settings import QualitySettings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

__all__ = ["SUITE_NAME", "TABLE", "build_suite"]

TABLE = "liquidations"
SUITE_NAME = "raw.liquidations"


def build_suite(settings: QualitySettings | None = None) -> ExpectationSuite:
    """The liquidations suite."""
    from expectations import rules as r
    from expectations._suite import make_suite

    s = settings if settings is not None else QualitySettings()
    return make_suite(
        SUITE_NAME,
        TABLE,
        [
            r.make_rule(r.ExpectLiquidationSideKnown, s),
            r.make_rule(r.ExpectLiquidationQuantityPositive, s),
            r.make_rule(r.ExpectLiquidationPricePositive, s),
            r.make_rule(r.ExpectLiquidationNotInFuture, s, max_clock_skew_s=s.max_clock_skew_s),
            r.make_rule(r.ExpectLiquidationNoDuplicates, s),
            r.make_rule(r.ExpectLiquidationNotionalNonNegative, s),
        ],
        notes=(
            "Liquidations name the side of the liquidated position, a positive price and "
            "size, a notional (if any) not below 0, a time no later than they were "
            "stored, and are stored once."
        ),
    )
