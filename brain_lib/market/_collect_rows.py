"""The collection's rows: errors and how they are classified, ccxt's unified records
normalised and checked, and the writers of the tables other than ``raw.ohlcv``."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from brain_lib.errors import ConfigError
from brain_lib.market._collect_types import StreamSpec, _dt, _iso

if TYPE_CHECKING:
    import psycopg

# --------------------------------------------------------------------- errors


class _PageError(Exception):
    """A parsed page that cannot be written as it is (retried like a bad answer)."""


class _StreamFailed(Exception):
    """Ends a stream as failed with this message."""


def _classify(exc: BaseException) -> str:
    """transient | malformed | symbol | permanent | bug."""
    import ccxt

    if isinstance(exc, ccxt.BadSymbol):
        return "symbol"
    if isinstance(exc, ccxt.AuthenticationError | ccxt.NotSupported):
        return "permanent"
    if isinstance(exc, ccxt.NetworkError):
        return "transient"
    if isinstance(exc, ccxt.BadResponse | _PageError):
        return "malformed"
    if isinstance(exc, ccxt.BaseError | ConfigError):
        return "permanent"
    if isinstance(exc, TypeError | ValueError | KeyError | IndexError | AttributeError):
        return "malformed"  # ccxt choking on a body that is not the expected JSON
    return "bug"


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an error, printable characters only (an exchange's bytes
    may hold NUL, which PostgreSQL text refuses)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _retry_after(exchange: Any) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    try:
        value = headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- normalising


# a normalised row: (ts_ms, value, ...) per dataset
Row = tuple[Any, ...]


def _need(value: Any, what: str, ts: int | None) -> float:
    if value is None:
        where = f"the record stamped {_iso(ts)}" if ts is not None else "a record"
        raise _PageError(f"{where} has no {what} (the response is missing a field)")
    return float(value)


def _ts_of(value: Any) -> int:
    if value is None:
        raise _PageError("a record has no timestamp (the response is missing a field)")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _PageError(f"a record has a timestamp that is not a number ({value!r})")
    return int(value)


def _norm_ohlcv(item: Any, market: Mapping[str, Any]) -> Row:
    if not isinstance(item, list | tuple) or len(item) < 6:
        raise _PageError(f"a candle is not [ts, open, high, low, close, volume]: {item!r}")
    ts = _ts_of(item[0])
    names = ("open", "high", "low", "close", "volume")
    values = [_need(v, name, ts) for v, name in zip(item[1:6], names, strict=True)]
    for name, value in zip(names, values, strict=True):
        if not math.isfinite(value):
            raise _PageError(f"the candle stamped {_iso(ts)} has a {name} of {value}")
    return (ts, *values)


def _norm_funding(item: Any, market: Mapping[str, Any]) -> Row:
    ts = _ts_of(item.get("timestamp"))
    rate = _need(item.get("fundingRate"), "funding rate", ts)
    info = item.get("info") or {}
    mark = info.get("markPrice") if isinstance(info, dict) else None
    try:
        mark_price = float(str(mark)) if mark not in (None, "") else None
    except (TypeError, ValueError):
        mark_price = None
    return (ts, rate, mark_price)


def _norm_oi(item: Any, market: Mapping[str, Any]) -> Row:
    ts = _ts_of(item.get("timestamp"))
    amount = item.get("openInterestAmount")
    value = item.get("openInterestValue")
    if amount is None and value is None:
        raise _PageError(
            f"the sample stamped {_iso(ts)} has no open interest (the response is missing a field)"
        )
    if amount is not None:
        # ccxt gives contracts; store base currency (contracts x contract size)
        size = market.get("contractSize") if market.get("linear") else None
        amount = float(amount) * float(size) if size else float(amount)
    return (ts, amount, float(value) if value is not None else None)


def _liquidation_side(side: Any) -> str | None:
    """Side of the liquidated position from the side of the liquidation order."""
    if side is None:
        return None
    value = str(side).lower()
    return {"sell": "long", "buy": "short"}.get(value, value)


def _norm_liquidation(item: Any, market: Mapping[str, Any]) -> Row:
    ts = _ts_of(item.get("timestamp"))
    price = item.get("price")
    contracts = item.get("contracts")
    size = item.get("contractSize") or market.get("contractSize") or 1
    quantity = item.get("baseValue")
    if quantity is None and contracts is not None:
        quantity = float(contracts) * float(size)
    notional = item.get("quoteValue")
    side = _liquidation_side(item.get("side"))
    info = item.get("info") or {}
    exchange_id = info.get("id") or info.get("orderId") if isinstance(info, dict) else None
    if exchange_id:
        key = str(exchange_id)
    else:
        raw = f"{ts}|{side}|{price}|{quantity}"
        key = hashlib.sha256(raw.encode()).hexdigest()
    as_float = [float(v) if v is not None else None for v in (price, quantity, notional)]
    return (ts, key, side, *as_float)


def _write_funding(
    conn: psycopg.Connection, spec: StreamSpec, rows: Sequence[Row]
) -> tuple[int, int]:
    cur = conn.execute(
        """
        insert into raw.funding_rates (exchange, symbol, ts, funding_rate, mark_price)
        select %s, %s, r.ts, r.rate, r.mark
        from unnest(%s::timestamptz[], %s::float8[], %s::float8[]) as r(ts, rate, mark)
        on conflict (exchange, symbol, ts) do nothing
        """,
        (
            spec.exchange,
            spec.symbol,
            [_dt(r[0]) for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        ),
    )
    return cur.rowcount, len(rows) - cur.rowcount


def _write_oi(conn: psycopg.Connection, spec: StreamSpec, rows: Sequence[Row]) -> tuple[int, int]:
    cur = conn.execute(
        """
        insert into raw.open_interest
            (exchange, symbol, period, ts, open_interest_amount, open_interest_value)
        select %s, %s, %s, r.ts, r.amount, r.value
        from unnest(%s::timestamptz[], %s::float8[], %s::float8[]) as r(ts, amount, value)
        on conflict (exchange, symbol, period, ts) do nothing
        """,
        (
            spec.exchange,
            spec.symbol,
            spec.timeframe,
            [_dt(r[0]) for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        ),
    )
    return cur.rowcount, len(rows) - cur.rowcount


def _write_liquidations(
    conn: psycopg.Connection, spec: StreamSpec, rows: Sequence[Row]
) -> tuple[int, int]:
    cur = conn.execute(
        """
        insert into raw.liquidations
            (exchange, symbol, liquidation_key, ts, side, price, quantity, notional)
        select %s, %s, r.key, r.ts, r.side, r.price, r.quantity, r.notional
        from unnest(%s::text[], %s::timestamptz[], %s::text[], %s::float8[], %s::float8[],
                    %s::float8[]) as r(key, ts, side, price, quantity, notional)
        on conflict (exchange, symbol, liquidation_key) do nothing
        """,
        (
            spec.exchange,
            spec.symbol,
            [r[1] for r in rows],
            [_dt(r[0]) for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            [r[5] for r in rows],
        ),
    )
    return cur.rowcount, len(rows) - cur.rowcount
