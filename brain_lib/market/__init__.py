"""Market data: the synthetic demo market, collection through ccxt, the replay exchange.

- :mod:`brain_lib.market.collect`: exchange x symbol x dataset streams into the raw
  tables, incremental and idempotent (:func:`collect`, :func:`collect_stream`).
- :mod:`brain_lib.market.exchanges`: configured ccxt objects (:func:`make_exchange`).
- :mod:`brain_lib.market.replay`: the offline replay exchange (``ReplayServer``); import
  it from there (not re-exported, so that ``python -m brain_lib.market.replay`` runs clean).
"""

from __future__ import annotations

from brain_lib.market._synthetic import SyntheticMarket, generate_candles
from brain_lib.market.collect import (
    DATASETS,
    ExchangePool,
    RetryPolicy,
    StreamReport,
    StreamSpec,
    collect,
    collect_stream,
    stream_specs,
    summary_markdown,
)
from brain_lib.market.exchanges import EXCHANGES, make_exchange

__all__ = [
    "DATASETS",
    "EXCHANGES",
    "ExchangePool",
    "RetryPolicy",
    "StreamReport",
    "StreamSpec",
    "SyntheticMarket",
    "collect",
    "collect_stream",
    "generate_candles",
    "make_exchange",
    "stream_specs",
    "summary_markdown",
]
