"""Suite ``raw.ohlcv``: candles.

| expectation | rule | default severity | row-level |
|---|---|---|---|
| expect_candle_high_at_top | high >= max(open, close) | blocking | yes |
| expect_candle_low_at_bottom | low <= min(open, close) | blocking | yes |
| expect_candle_prices_positive | open, high, low, close finite and > 0 | blocking | yes |
| expect_candle_volume_non_negative | volume finite and >= 0 | blocking | yes |
| expect_one_candle_per_bar | (exchange, symbol, timeframe, bar of ts) unique | blocking | yes |
| expect_candle_ts_aligned | ts on the bar grid of its timeframe | blocking | yes |
| expect_candle_prices_plausible | high <= max_price | blocking | yes |
| expect_candle_ts_in_range | earliest_candle <= ts <= now + max_future_hours | blocking | yes |
| expect_candle_not_a_spike | high <= f x, low >= 1/f x the closes on both sides | blocking | yes |
| expect_no_candle_gap_longer_than | <= max_gap_bars missing bars in a row | warning | no |
| expect_candle_move_within | abs(close / previous close - 1) <= max_bar_move | warning | yes |

Together the first two also catch high < low: with high >= max(open, close) and
low <= min(open, close), high >= low follows.

Uniqueness. raw.ohlcv's primary key (exchange, symbol, timeframe, ts) means a literal
duplicate key can never be stored there, so a plain uniqueness check on it could never
fail. The suite therefore checks uniqueness per *bar* (the bar that contains ts): two
candles within one bar, e.g. one stamped with the bar's open time and one with its
close time, or with millisecond jitter, pass the primary key and are still two candles
for one bar. The same expectation catches literal duplicates wherever the key is not
enforced (the suite runs on any relation with the ohlcv columns).

The suite reads only the columns exchange, symbol, timeframe, ts, open, high, low,
close and volume; gap, move and uniqueness look at each (exchange, symbol, timeframe)
series in ts order, within the batch only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from expectations.settings import QualitySettings

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

__all__ = ["SUITE_NAME", "TABLE", "build_suite"]

TABLE = "ohlcv"
SUITE_NAME = "raw.ohlcv"


def build_suite(settings: QualitySettings | None = None) -> ExpectationSuite:
    """The candles suite with the bounds of ``settings`` (default: ``QualitySettings()``)."""
    from expectations import rules as r
    from expectations._suite import make_suite

    s = settings if settings is not None else QualitySettings()
    return make_suite(
        SUITE_NAME,
        TABLE,
        [
            r.make_rule(r.ExpectCandleHighAtTop, s),
            r.make_rule(r.ExpectCandleLowAtBottom, s),
            r.make_rule(r.ExpectCandlePricesPositive, s),
            r.make_rule(r.ExpectCandleVolumeNonNegative, s),
            r.make_rule(r.ExpectOneCandlePerBar, s),
            r.make_rule(r.ExpectCandleTsAligned, s),
            r.make_rule(r.ExpectCandlePricesPlausible, s, max_price=s.max_price),
            r.make_rule(
                r.ExpectCandleTsInRange,
                s,
                earliest=s.earliest_candle,
                max_future_hours=s.max_future_hours,
            ),
            r.make_rule(r.ExpectCandleNotASpike, s, max_spike_factor=s.max_spike_factor),
            r.make_rule(r.ExpectNoCandleGapLongerThan, s, max_gap_bars=s.max_gap_bars),
            r.make_rule(r.ExpectCandleMoveWithin, s, max_bar_move=s.max_bar_move),
        ],
        notes="Candles: price consistency, one candle per bar, bar grid, gaps, spikes.",
    )
