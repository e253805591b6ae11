"""Market data: the synthetic demo market (collection through ccxt comes later)."""

from __future__ import annotations

from brain_lib.market._synthetic import SyntheticMarket, generate_candles

__all__ = ["SyntheticMarket", "generate_candles"]
