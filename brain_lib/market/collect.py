"""Market-data collection through ccxt into the raw tables, incremental and idempotent.

A *stream* is exchange x symbol x dataset (x series): ``ohlcv`` (series = timeframe)
into ``raw.ohlcv``, ``funding`` into ``raw.funding_rates``, ``oi`` (series = sampling
period) into ``raw.open_interest`` and ``liquidations`` into ``raw.liquidations``.
:func:`collect_stream` runs one stream:

1. Support: ccxt's ``has`` for the dataset's unified method, the market type (funding,
   open interest and liquidations exist for perpetual swaps only), the exchange's
   timeframes and periods. What is not offered ends as status ``unsupported`` with the
   reason, recorded like any run; nothing crashes.
2. Resume: from the newest stored stamp of the stream + 1 ms (or ``since``, or
   ``default_backfill`` back), clamped to how far back the exchange keeps the dataset.
   The end is the exchange's clock (``fetch_time``), or the local clock when the
   exchange's runs ahead of it: a candle is only stored once it has closed by both
   clocks, a funding print or open-interest sample once it is stamped at or before
   both. An exchange clock more than ``CLOCK_SKEW_NOTE`` (1 min) ahead is noted in the
   stream's message; one behind is simply where the exchange's data ends.
3. Pages: windows of ``limit`` steps (``since`` + ``until``), so that a window never
   holds more rows than one request returns, whichever end the exchange cuts (binance
   pages run forward, bybit and okx backward). Funding windows use 1-hour steps, the
   shortest funding interval, for the same reason. Any range is paged this way, ten
   years of hourly candles too: memory and every transaction hold one page (at most
   ``limit`` rows), never the range; windows before the exchange's first row cost one
   empty request each.
4. Requests: each one retried with exponential backoff (bounded; ``Retry-After``
   honoured) on transient errors (``NetworkError``: ``DDoSProtection``,
   ``RateLimitExceeded``, ``RequestTimeout``, ``ExchangeNotAvailable``, dropped
   connections) and on malformed answers (HTML instead of JSON, missing fields,
   conflicting duplicates, stamps off the grid); permanent errors (``BadSymbol``,
   ``AuthenticationError``, ``NotSupported``, other ``ExchangeError``) fail the stream
   at once with a message naming exchange, symbol and dataset. A page is only written
   once it parsed and validated whole: never half a page, never a silent hole.

   Hostile answers. A 200 answer that is not JSON (random bytes, plain text, JSON cut
   in the middle; whatever its content type) is a malformed answer (``BadResponse``,
   :mod:`~brain_lib.market.exchanges`). Every answer is bounded before it is read
   whole: at most :func:`page_body_bytes` (``limit`` x 2 KiB, at least 1 MiB: 2 MiB
   for 1,000 candles, 5-20 x a real page) for a data page; a bigger one is refused
   unread, or as soon as that much is read, and retried like a malformed answer. A
   page with more rows than asked for (an exchange ignoring ``limit`` or the window)
   that fits the bound is kept in part: ccxt keeps the first ``limit`` rows from
   ``since`` and the collector only the rows stamped inside the window it asked for,
   each validated; rows outside the window are never stored (those of the next window
   come with its own request). Messages keep printable characters only.
5. Gaps: a hole between consecutive stamps (in a page, across pages, or after the
   stored data) is asked for once more; what the exchange still does not have is
   written to ``raw.collection_gaps`` (and cleared when a later re-collection of the
   window, ``resume=False``, finds the rows).
6. Writes: every page in one transaction with the stream's bookkeeping
   (``raw.collection_streams``, gaps); candles through :func:`warehouse.copy_ohlcv`,
   the other tables with one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
   NOTHING`` on the natural key, so re-collecting a window adds nothing. The run ends
   with one append-only row in ``raw.collection_runs``.

Warehouse errors are not swallowed: they propagate (``WarehouseUnavailableError`` when
the server is unreachable) so that the caller (the flow's task) can retry the stream,
which then resumes from what was written.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from brain_lib import warehouse
from brain_lib.errors import (
    BrainError,
    ConfigError,
    WarehouseError,
    WarehouseUnavailableError,
)
from brain_lib.market.exchanges import (
    EXCHANGES,
    ExchangeProfile,
    body_limit,
    exchange_profile,
    make_exchange,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DATASETS",
    "DEFAULT_BACKFILL",
    "ExchangePool",
    "Gap",
    "RetryPolicy",
    "StreamReport",
    "StreamSpec",
    "StreamTimings",
    "collect",
    "collect_stream",
    "stream_specs",
    "summary_markdown",
]

log = logging.getLogger(__name__)

DATASETS = ("ohlcv", "funding", "oi", "liquidations")
DEFAULT_BACKFILL = timedelta(days=365)
HOUR_MS = 3_600_000
FUNDING_INTERVAL_MS = 8 * HOUR_MS  # when the market does not say
MAX_REPAIRS_PER_PAGE = 3
PAGE_BYTES_PER_ROW = 2048  # 5-20 x what one row of a real answer takes
MIN_PAGE_BYTES = 1024 * 1024
CLOCK_SKEW_NOTE = timedelta(minutes=1)  # an exchange clock further ahead is noted
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_UNIFIED_METHOD = {
    "ohlcv": "fetchOHLCV",
    "funding": "fetchFundingRateHistory",
    "oi": "fetchOpenInterestHistory",
    "liquidations": "fetchLiquidations",
}


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    return _dt(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def page_body_bytes(limit: int) -> int:
    """The most bytes one answer of ``limit`` rows may take (see the module docstring)."""
    return max(MIN_PAGE_BYTES, limit * PAGE_BYTES_PER_ROW)


def _local_now_ms() -> int:
    return int(time.time() * 1000)


def _hours(ms: int) -> str:
    return f"{ms / HOUR_MS:.1f} h" if ms >= HOUR_MS else f"{ms / 60_000:.0f} min"


def _timeframe_ms(timeframe: str) -> int:
    """ccxt-style timeframe in ms (``1m``..``1d``; ``1w``, ``1M`` too)."""
    try:
        amount, unit = int(timeframe[:-1]), timeframe[-1]
    except ValueError:
        raise ConfigError(f"invalid timeframe {timeframe!r} (use e.g. 5m, 1h, 1d)") from None
    scale = {"m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS, "w": 7 * 24 * HOUR_MS}
    if unit == "M":
        return amount * 30 * 24 * HOUR_MS
    if unit not in scale or amount < 1:
        raise ConfigError(f"invalid timeframe {timeframe!r} (use e.g. 5m, 1h, 1d)")
    return amount * scale[unit]


# ------------------------------------------------------------------------ types


@dataclass(frozen=True)
class StreamSpec:
    """One stream: ``timeframe`` is the candle timeframe (ohlcv) or the sampling period
    (oi); it is ignored for funding and liquidations."""

    exchange: str
    symbol: str
    dataset: str
    timeframe: str = "1h"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r} (known: {', '.join(DATASETS)})")

    @property
    def series(self) -> str:
        return self.timeframe if self.dataset in ("ohlcv", "oi") else ""

    @property
    def label(self) -> str:
        parts = [self.exchange, self.symbol, self.dataset] + ([self.series] if self.series else [])
        return " ".join(parts)


@dataclass(frozen=True)
class Gap:
    """A hole that remained: nothing between ``last_before`` and ``first_after``."""

    last_before: datetime
    first_after: datetime
    missing_rows: int | None


@dataclass
class StreamTimings:
    """Where a stream's time went (seconds).

    ``ccxt_s``: inside ccxt's unified calls, of which ``http_s`` waiting on the
    network/server, ``json_s`` decoding JSON, ``throttle_s`` in the rate limiter and
    ``parse_s`` the rest (request building, parsing into unified structures);
    ``validate_s``: Brain's checks of the parsed rows; ``write_s``: the warehouse
    transactions; ``backoff_s``: sleeping between retries.
    """

    ccxt_s: float = 0.0
    http_s: float = 0.0
    json_s: float = 0.0
    throttle_s: float = 0.0
    parse_s: float = 0.0
    validate_s: float = 0.0
    write_s: float = 0.0
    backoff_s: float = 0.0

    @property
    def ccxt_parsing_s(self) -> float:
        """JSON decoding plus ccxt's parsing: the "ccxt parsing" of the benchmark."""
        return self.json_s + self.parse_s


@dataclass
class StreamReport:
    """What one run of one stream did.

    ``status``: ``ok``, ``unsupported`` or ``failed`` (``message`` says why);
    ``new_rows`` / ``unchanged_rows``: rows added / already stored; ``first_ts`` /
    ``last_ts``: the range fetched in this run; ``stored_last_ts``: the newest stored
    stamp after it; ``lag_seconds``: exchange clock minus the end of the newest stored
    row (a candle ends when it closes); ``gaps``: holes that remained.
    """

    exchange: str
    symbol: str
    dataset: str
    series: str
    status: str = "ok"
    message: str = ""
    new_rows: int = 0
    unchanged_rows: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    stored_last_ts: datetime | None = None
    lag_seconds: float | None = None
    gaps: list[Gap] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    run_id: str | None = None
    timings: StreamTimings = field(default_factory=StreamTimings)

    @property
    def label(self) -> str:
        parts = [self.exchange, self.symbol, self.dataset] + ([self.series] if self.series else [])
        return " ".join(parts)

    @property
    def elapsed_s(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def as_row(self) -> dict[str, Any]:
        """A flat, JSON-friendly summary (for artifacts and logs)."""
        out = asdict(self)
        out.pop("timings")
        out["gaps"] = len(self.gaps)
        for key in ("first_ts", "last_ts", "stored_last_ts", "started_at", "finished_at"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        return out


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``attempts`` tries per request, waits of
    ``base_delay_s * factor**n`` capped at ``max_delay_s`` (a ``Retry-After`` header
    may lengthen a wait up to the cap)."""

    attempts: int = 5
    base_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, hint_s: float | None = None) -> float:
        wait = self.base_delay_s * self.factor ** (attempt - 1)
        if hint_s is not None:
            wait = max(wait, hint_s)
        return min(wait, self.max_delay_s)


# ------------------------------------------------------------------ exchange pool


@dataclass
class _Handle:
    exchange: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


class ExchangePool:
    """One ccxt object per exchange (markets loaded once) and a lock per exchange.

    ccxt's synchronous rate limiter is per object and not thread-safe: streams of the
    same exchange share its object and take turns on the lock for each request, so the
    limiter holds across them; streams of different exchanges run side by side.
    """

    def __init__(
        self,
        replay_url: str | None = None,
        *,
        timeout_ms: int = 10_000,
        rate_limit_ms: float | None = None,
    ) -> None:
        self.replay_url = replay_url
        self.timeout_ms = timeout_ms
        self.rate_limit_ms = rate_limit_ms
        self._lock = threading.Lock()
        self._handles: dict[str, _Handle] = {}

    def get(self, exchange_id: str) -> _Handle:
        """The handle of an exchange; :class:`UnknownExchangeError` if unsupported."""
        with self._lock:
            handle = self._handles.get(exchange_id)
            if handle is None:
                exchange = make_exchange(
                    exchange_id,
                    replay_url=self.replay_url,
                    timeout_ms=self.timeout_ms,
                    rate_limit_ms=self.rate_limit_ms,
                )
                handle = self._handles[exchange_id] = _Handle(exchange)
            return handle


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


# -------------------------------------------------------------------- writers


def _write_ohlcv(
    conn: psycopg.Connection, spec: StreamSpec, rows: Sequence[Row]
) -> tuple[int, int]:
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=["ts", "open", "high", "low", "close", "volume"])
    frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
    report = warehouse.copy_ohlcv(
        conn,
        frame,
        exchange=spec.exchange,
        symbol=spec.symbol,
        timeframe=spec.timeframe,
        source=spec.label,
    )
    return report.added, report.unchanged


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


@dataclass(frozen=True)
class _Dataset:
    table: str
    key_sql: str  # the stream's columns beyond (exchange, symbol)
    normalise: Callable[[Any, Mapping[str, Any]], Row]
    write: Callable[[psycopg.Connection, StreamSpec, Sequence[Row]], tuple[int, int]]
    fixed_step: bool


_DATASETS: dict[str, _Dataset] = {
    "ohlcv": _Dataset("raw.ohlcv", "and timeframe = %s", _norm_ohlcv, _write_ohlcv, True),
    "funding": _Dataset("raw.funding_rates", "", _norm_funding, _write_funding, False),
    "oi": _Dataset("raw.open_interest", "and period = %s", _norm_oi, _write_oi, True),
    "liquidations": _Dataset("raw.liquidations", "", _norm_liquidation, _write_liquidations, False),
}


# ---------------------------------------------------------------- one stream


class _StreamRun:
    """The state of one stream's run (see :func:`collect_stream`)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        spec: StreamSpec,
        handle: _Handle,
        profile: ExchangeProfile,
        report: StreamReport,
        retry: RetryPolicy,
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.handle = handle
        self.exchange = handle.exchange
        self.profile = profile
        self.report = report
        self.retry = retry
        self.dataset = _DATASETS[spec.dataset]
        self.market: dict[str, Any] = {}
        self.limit = profile.page_limits.get(spec.dataset, 100)
        self.notes: list[str] = []

    # ccxt calls ----------------------------------------------------------------
    def call(
        self, what: str, fn: Callable[[], Any], check: Callable[[Any], Any] | None = None
    ) -> Any:
        """``fn()`` under the exchange's lock, retried as the policy says; ``check``
        validates the result inside the retry loop (a bad page is asked for again)."""
        timings = self.report.timings
        for attempt in range(1, self.retry.attempts + 1):
            try:
                with self.handle.lock:
                    before = self.exchange.brain_timings.snapshot()
                    start = time.perf_counter()
                    try:
                        result = fn()
                    finally:
                        elapsed = time.perf_counter() - start
                        after = self.exchange.brain_timings
                        http = after.http_s - before.http_s
                        json_s = after.json_s - before.json_s
                        throttle = after.throttle_s - before.throttle_s
                        timings.ccxt_s += elapsed
                        timings.http_s += http - json_s
                        timings.json_s += json_s
                        timings.throttle_s += throttle
                        timings.parse_s += max(elapsed - http - throttle, 0.0)
                        self.report.requests += after.requests - before.requests
                if check is None:
                    return result
                start = time.perf_counter()
                try:
                    return check(result)
                finally:
                    timings.validate_s += time.perf_counter() - start
            except Exception as exc:
                kind = _classify(exc)
                if kind == "bug":
                    raise
                if kind == "symbol":
                    raise _StreamFailed(f"unknown symbol: {_first_line(exc)}") from None
                if kind == "permanent":
                    raise _StreamFailed(f"{what}: {_first_line(exc)}") from None
                if attempt >= self.retry.attempts:
                    raise _StreamFailed(
                        f"{what}: gave up after {attempt} attempts "
                        f"({'bad answers' if kind == 'malformed' else 'transient errors'}); "
                        f"last: {_first_line(exc)}"
                    ) from None
                import ccxt

                hint = _retry_after(self.exchange) if isinstance(exc, ccxt.NetworkError) else None
                wait = self.retry.delay(attempt, hint)
                log.warning(
                    "%s: %s failed (attempt %d of %d, %s), retrying in %.2fs: %s",
                    self.spec.label,
                    what,
                    attempt,
                    self.retry.attempts,
                    kind,
                    wait,
                    _first_line(exc),
                )
                self.report.retries += 1
                start = time.perf_counter()
                self.retry.sleep(wait)
                timings.backoff_s += time.perf_counter() - start
        raise AssertionError("unreachable")  # pragma: no cover

    # support -------------------------------------------------------------------
    def load_market(self) -> None:
        exchange = self.exchange

        def load() -> Any:
            if not exchange.markets:
                exchange.load_markets()
            return exchange.market(self.spec.symbol)

        self.market = self.call("loading markets", load)

    def unsupported_reason(self) -> str | None:
        import ccxt

        spec, exchange, market = self.spec, self.exchange, self.market
        method = _UNIFIED_METHOD[spec.dataset]
        offered = exchange.has.get(method)
        if not offered:
            return (
                f"{spec.exchange} offers no {spec.dataset} history through ccxt "
                f"{ccxt.__version__} (has['{method}'] is {offered!r})"
            )
        if spec.dataset != "ohlcv" and not market.get("swap"):
            kind = market.get("type") or "non-swap"
            return (
                f"{spec.dataset} exists for perpetual swaps only; {spec.symbol} is a {kind} market"
            )
        if spec.dataset == "ohlcv" and spec.timeframe not in (exchange.timeframes or {}):
            offered_tf = ", ".join(exchange.timeframes or {})
            return f"{spec.exchange} has no {spec.timeframe} candles (it has {offered_tf})"
        if spec.dataset == "oi" and spec.timeframe not in self.profile.oi_periods:
            periods = ", ".join(self.profile.oi_periods)
            return f"{spec.exchange} samples open interest at {periods} only, not {spec.timeframe}"
        return None

    # clock and bookkeeping -----------------------------------------------------
    def server_now(self) -> int:
        def fetch_time() -> int:
            value = self.exchange.fetch_time()
            if not isinstance(value, int | float) or value <= 0:
                raise _PageError(f"the exchange clock answered {value!r}")
            return int(value)

        return int(self.call("reading the exchange clock", fetch_time))

    def clock(self) -> int:
        """Where collection ends: the exchange's clock, or the local one when the
        exchange's runs ahead (nothing is stored that has not happened here too)."""
        exchange_now, local_now = self.server_now(), _local_now_ms()
        ahead = exchange_now - local_now
        if ahead <= 0:
            return exchange_now
        if ahead > CLOCK_SKEW_NOTE // timedelta(milliseconds=1):
            self.notes.append(
                f"the {self.spec.exchange} clock is {_hours(ahead)} ahead of the local "
                f"clock: collected up to the local clock ({_iso(local_now)}), not "
                f"{_iso(exchange_now)}"
            )
        return local_now

    def stored_last(self, before_ms: int | None = None) -> int | None:
        """Newest stored stamp of the stream (before ``before_ms`` when given)."""
        spec, ds = self.spec, self.dataset
        params: list[Any] = [spec.exchange, spec.symbol]
        if ds.key_sql:
            params.append(spec.timeframe)
        bound = _dt(before_ms) if before_ms is not None else None
        row = self.conn.execute(
            f"select max(ts) from {ds.table} where exchange = %s and symbol = %s "
            f"{ds.key_sql} and (%s::timestamptz is null or ts < %s::timestamptz)",
            (*params, bound, bound),
        ).fetchone()
        return _ms(row[0]) if row and row[0] is not None else None

    def upsert_state(self, status: str, message: str | None, last_ts: int | None) -> None:
        spec = self.spec
        self.conn.execute(
            """
            insert into raw.collection_streams
                (exchange, symbol, dataset, series, status, message, last_ts, last_run_id,
                 updated_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s, now())
            on conflict (exchange, symbol, dataset, series) do update set
                status = excluded.status,
                message = excluded.message,
                last_ts = greatest(raw.collection_streams.last_ts, excluded.last_ts),
                last_run_id = excluded.last_run_id,
                updated_at = now()
            """,
            (
                spec.exchange,
                spec.symbol,
                spec.dataset,
                spec.series,
                status,
                message,
                _dt(last_ts) if last_ts is not None else None,
                self.report.run_id,
            ),
        )

    def clear_filled_gaps(self, first_ms: int, last_ms: int) -> None:
        """Forget recorded gaps around this page that now hold rows (a re-collection
        found what was missing); the holes still there are recorded again by the page."""
        spec, ds = self.spec, self.dataset
        series_sql = ds.key_sql.replace("= %s", "= g.series")
        self.conn.execute(
            f"""
            delete from raw.collection_gaps g
            where g.exchange = %s and g.symbol = %s and g.dataset = %s and g.series = %s
              and g.first_after >= %s and g.last_before <= %s
              and exists (
                  select 1 from {ds.table} t
                  where t.exchange = g.exchange and t.symbol = g.symbol {series_sql}
                    and t.ts > g.last_before and t.ts < g.first_after
              )
            """,
            (spec.exchange, spec.symbol, spec.dataset, spec.series, _dt(first_ms), _dt(last_ms)),
        )

    def write_page(self, rows: list[Row], gaps: list[Gap]) -> None:
        """Rows, gaps and the stream's state in one transaction."""
        start = time.perf_counter()
        with self.conn.transaction():
            added, unchanged = self.dataset.write(self.conn, self.spec, rows) if rows else (0, 0)
            if rows:
                self.clear_filled_gaps(rows[0][0], rows[-1][0])
            for gap in gaps:
                self.conn.execute(
                    """
                    insert into raw.collection_gaps
                        (exchange, symbol, dataset, series, last_before, first_after,
                         missing_rows, run_id)
                    values (%s, %s, %s, %s, %s, %s, %s, %s)
                    on conflict (exchange, symbol, dataset, series, last_before) do update set
                        first_after = excluded.first_after,
                        missing_rows = excluded.missing_rows,
                        run_id = excluded.run_id,
                        detected_at = now()
                    """,
                    (
                        self.spec.exchange,
                        self.spec.symbol,
                        self.spec.dataset,
                        self.spec.series,
                        gap.last_before,
                        gap.first_after,
                        gap.missing_rows,
                        self.report.run_id,
                    ),
                )
            self.upsert_state("running", None, rows[-1][0] if rows else None)
        self.report.timings.write_s += time.perf_counter() - start
        self.report.new_rows += added
        self.report.unchanged_rows += unchanged
        self.report.pages += 1
        self.report.gaps.extend(gaps)
        if rows:
            first, last = _dt(rows[0][0]), _dt(rows[-1][0])
            if self.report.first_ts is None or first < self.report.first_ts:
                self.report.first_ts = first
            if self.report.last_ts is None or last > self.report.last_ts:
                self.report.last_ts = last

    # pages ---------------------------------------------------------------------
    def step_ms(self) -> int:
        """The grid of fixed-step series; the windowing unit of the others."""
        if self.spec.dataset in ("ohlcv", "oi"):
            return _timeframe_ms(self.spec.timeframe)
        return HOUR_MS

    def funding_interval_ms(self) -> int:
        name = self.profile.funding_interval_field
        info = self.market.get("info") or {}
        if name and isinstance(info, dict):
            try:
                minutes = int(info.get(name) or 0)
            except (TypeError, ValueError):
                minutes = 0
            if minutes > 0:
                return minutes * 60_000
        return FUNDING_INTERVAL_MS

    def request(self, lo: int, hi: int, limit: int) -> list[Any]:
        """One ccxt call for stamps in ``[lo, hi]`` (ms, inclusive), its answer bounded
        to :func:`page_body_bytes` of ``limit`` rows."""
        with body_limit(self.exchange, page_body_bytes(limit)):
            return self._request(lo, hi, limit)

    def _request(self, lo: int, hi: int, limit: int) -> list[Any]:
        spec, exchange = self.spec, self.exchange
        name, exclusive = self.profile.until_params.get(spec.dataset, ("until", False))
        params = {name: hi + 1 if exclusive else hi}
        if spec.dataset == "ohlcv":
            return exchange.fetch_ohlcv(spec.symbol, spec.timeframe, lo, limit, params)
        if spec.dataset == "funding":
            return exchange.fetch_funding_rate_history(spec.symbol, lo, limit, params)
        if spec.dataset == "oi":
            return exchange.fetch_open_interest_history(
                spec.symbol, spec.timeframe, lo, limit, params
            )
        return exchange.fetch_liquidations(spec.symbol, lo, limit)

    def validate(self, items: Any, lo: int, hi: int) -> list[Row]:
        """Normalise and check a parsed page; keep the rows stamped in ``[lo, hi]``."""
        if not isinstance(items, list):
            raise _PageError(
                f"expected a list of records, got {type(items).__name__} "
                f"(the answer was not the exchange's JSON)"
            )
        rows = [self.dataset.normalise(item, self.market) for item in items]
        rows = sorted((r for r in rows if lo <= r[0] <= hi), key=lambda r: r[0])
        out: list[Row] = []
        step = self.step_ms() if self.dataset.fixed_step else None
        keys: set[str] = set()
        for row in rows:
            if step is not None and step <= 24 * HOUR_MS and row[0] % step:
                raise _PageError(f"stamp {_iso(row[0])} is off the {self.spec.timeframe} grid")
            if self.spec.dataset == "liquidations":  # events: one row per key
                if row[1] not in keys:
                    keys.add(row[1])
                    out.append(row)
                continue
            if out and out[-1][0] == row[0]:
                if out[-1] != row:
                    raise _PageError(f"two different records stamped {_iso(row[0])} in one answer")
                continue
            out.append(row)
        return out

    def fetch_rows(self, lo: int, hi: int) -> list[Row]:
        what = f"fetching {_iso(lo)}..{_iso(hi)}"
        return list(
            self.call(
                what,
                lambda: self.request(lo, hi, self.limit),
                lambda items: self.validate(items, lo, hi),
            )
        )

    def holes(self, prev: int | None, rows: list[Row]) -> list[tuple[int, int]]:
        """(last_before, first_after) of every hole, counting ``prev`` (the stamp
        before the first row)."""
        if self.spec.dataset == "liquidations":
            return []
        threshold = self.step_ms() if self.dataset.fixed_step else self.funding_interval_ms() * 1.5
        stamps = ([prev] if prev is not None else []) + [r[0] for r in rows]
        return [(a, b) for a, b in itertools.pairwise(stamps) if b - a > threshold]

    def repair(self, prev: int | None, rows: list[Row]) -> list[Row]:
        """Ask once more for the holes of a fixed-step page; merge what comes back."""
        if not self.dataset.fixed_step:
            return rows
        step = self.step_ms()
        for lo, hi in self.holes(prev, rows)[:MAX_REPAIRS_PER_PAGE]:
            window_hi = min(hi - 1, lo + self.limit * step)
            found = self.fetch_rows(lo + 1, window_hi)
            if found:
                merged = {r[0]: r for r in rows}
                merged.update({r[0]: r for r in found if r[0] not in merged})
                rows = [merged[k] for k in sorted(merged)]
        return rows

    def gaps(self, prev: int | None, rows: list[Row]) -> list[Gap]:
        out = []
        for lo, hi in self.holes(prev, rows):
            if self.dataset.fixed_step:
                missing: int | None = (hi - lo) // self.step_ms() - 1
            else:
                missing = max(round((hi - lo) / self.funding_interval_ms()) - 1, 1)
            out.append(Gap(_dt(lo), _dt(hi), missing))
        return out

    def run_windows(self, cursor: int, horizon: int, prev: int | None) -> None:
        """Windowed pages from ``cursor`` up to ``horizon`` (exclusive)."""
        window = self.limit * self.step_ms()
        while cursor < horizon:
            hi = min(cursor + window, horizon) - 1
            rows = self.fetch_rows(cursor, hi)
            rows = self.repair(prev, rows)
            gaps = self.gaps(prev, rows)
            if rows or gaps:
                self.write_page(rows, gaps)
            if rows:
                prev = rows[-1][0]
            cursor = hi + 1

    def _event_page(self, items: Any, lo: int, hi: int) -> tuple[int, list[Row]]:
        return (len(items) if isinstance(items, list) else 0), self.validate(items, lo, hi)

    def run_events(self, cursor: int, horizon: int) -> None:
        """Liquidations: event pages from ``cursor`` on (no fixed grid)."""
        hi = horizon - 1
        while cursor < horizon:
            count, rows = self.call(
                f"fetching liquidations from {_iso(cursor)}",
                functools.partial(self.request, cursor, hi, self.limit),
                functools.partial(self._event_page, lo=cursor, hi=hi),
            )
            if rows:
                self.write_page(rows, [])
            if not rows or count < self.limit:
                break
            cursor = max(rows[-1][0], cursor + 1)


def _start_ms(
    run: _StreamRun,
    now: int,
    stored: int | None,
    since: datetime | None,
    resume: bool,
    default_backfill: timedelta,
) -> int:
    if resume and stored is not None:
        cursor = stored + 1
    elif since is not None:
        cursor = _ms(since)
    else:
        cursor = now - default_backfill // timedelta(milliseconds=1)
    keep = run.profile.retention.get(run.spec.dataset)
    if keep is not None:
        floor = now - keep // timedelta(milliseconds=1)
        if cursor < floor:
            run.notes.append(
                f"{run.spec.exchange} keeps {run.spec.dataset} for {keep.days} days: "
                f"collected from {_iso(floor)}, not {_iso(cursor)}"
            )
            cursor = floor
    step = run.step_ms()
    if run.dataset.fixed_step and step <= 24 * HOUR_MS:
        cursor = -(-cursor // step) * step  # the first stamp on the grid at or after it
    return cursor


def collect_stream(
    dsn: str,
    spec: StreamSpec,
    *,
    pool: ExchangePool,
    since: datetime | None = None,
    until: datetime | None = None,
    resume: bool = True,
    retry: RetryPolicy | None = None,
    run_id: str | None = None,
    default_backfill: timedelta = DEFAULT_BACKFILL,
) -> StreamReport:
    """Collect one stream into the warehouse at ``dsn``; see the module docstring.

    ``since``: where to start when nothing is stored (or always, with
    ``resume=False``, to re-collect a window); default ``default_backfill`` back.
    ``until``: collect nothing stamped after it (default: the exchange's clock).
    Returns the run's report; ccxt and data problems end in ``status='failed'``, not
    in an exception. Warehouse errors raise (:class:`WarehouseUnavailableError` when
    the server cannot be reached).
    """
    import psycopg

    report = StreamReport(
        exchange=spec.exchange,
        symbol=spec.symbol,
        dataset=spec.dataset,
        series=spec.series,
        run_id=run_id or uuid.uuid4().hex,
    )
    try:
        with warehouse.open_connection(dsn, autocommit=True) as conn:
            _run_stream(conn, spec, pool, report, since, until, resume, retry, default_backfill)
    except psycopg.OperationalError as exc:
        raise WarehouseUnavailableError(f"{spec.label}: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise WarehouseError(
            f"{spec.label}: the warehouse refused a write: {_first_line(exc)}"
        ) from None
    return report


def _run_stream(
    conn: psycopg.Connection,
    spec: StreamSpec,
    pool: ExchangePool,
    report: StreamReport,
    since: datetime | None,
    until: datetime | None,
    resume: bool,
    retry: RetryPolicy | None,
    default_backfill: timedelta,
) -> None:
    run: _StreamRun | None = None
    now: int | None = None
    try:
        profile = exchange_profile(spec.exchange)
        handle = pool.get(spec.exchange)
        run = _StreamRun(conn, spec, handle, profile, report, retry or RetryPolicy())
        run.load_market()
        reason = run.unsupported_reason()
        if reason is not None:
            report.status, report.message = "unsupported", reason
        else:
            now = run.clock()
            bound = min(now, _ms(until)) if until is not None else now
            stored = run.stored_last()
            cursor = _start_ms(run, now, stored, since, resume, default_backfill)
            prev = run.stored_last(cursor)
            if spec.dataset == "ohlcv":  # closed candles only: opened at or before bound - step
                run.run_windows(cursor, bound - run.step_ms() + 1, prev)
            elif spec.dataset == "liquidations":
                run.run_events(cursor, bound + 1)
            else:
                run.run_windows(cursor, bound + 1, prev)
            if report.gaps:
                run.notes.append(f"{len(report.gaps)} gap(s) remain (raw.collection_gaps)")
            report.message = "; ".join(run.notes)
    except _StreamFailed as exc:
        report.status = "failed"
        report.message = f"{spec.label}: {exc}"
    except BrainError as exc:
        if isinstance(exc, WarehouseError):
            raise
        report.status = "failed"
        report.message = f"{spec.label}: {exc}"
    if report.status == "failed":
        log.error("%s", report.message)
    _finish(conn, spec, report, run, now)


def _finish(
    conn: psycopg.Connection,
    spec: StreamSpec,
    report: StreamReport,
    run: _StreamRun | None,
    now: int | None,
) -> None:
    """Newest stored stamp, lag, and the run's row in ``raw.collection_runs``."""
    if run is not None and spec.dataset in _DATASETS:
        last = run.stored_last()
        if last is not None:
            report.stored_last_ts = _dt(last)
            if now is not None:
                end = last + (run.step_ms() if spec.dataset == "ohlcv" else 0)
                report.lag_seconds = max(now - end, 0) / 1000.0
    report.finished_at = datetime.now(UTC)
    with conn.transaction():
        conn.execute(
            """
            insert into raw.collection_runs
                (run_id, exchange, symbol, dataset, series, status, message, new_rows,
                 unchanged_rows, pages, requests, retries, gaps, first_ts, last_ts,
                 lag_seconds, started_at, finished_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                report.run_id,
                spec.exchange,
                spec.symbol,
                spec.dataset,
                spec.series,
                report.status,
                report.message or None,
                report.new_rows,
                report.unchanged_rows,
                report.pages,
                report.requests,
                report.retries,
                len(report.gaps),
                report.first_ts,
                report.last_ts,
                report.lag_seconds,
                report.started_at,
                report.finished_at,
            ),
        )
        if run is not None:
            run.upsert_state(report.status, report.message or None, None)
        else:
            conn.execute(
                """
                insert into raw.collection_streams
                    (exchange, symbol, dataset, series, status, message, last_run_id)
                values (%s, %s, %s, %s, %s, %s, %s)
                on conflict (exchange, symbol, dataset, series) do update set
                    status = excluded.status, message = excluded.message,
                    last_run_id = excluded.last_run_id, updated_at = now()
                """,
                (
                    spec.exchange,
                    spec.symbol,
                    spec.dataset,
                    spec.series,
                    report.status,
                    report.message or None,
                    report.run_id,
                ),
            )


# ------------------------------------------------------------------- many streams


def stream_specs(
    exchanges: Iterable[str],
    symbols: Iterable[str] | Mapping[str, Iterable[str]],
    datasets: Iterable[str] = DATASETS,
    *,
    timeframe: str = "1h",
    oi_period: str = "1h",
) -> list[StreamSpec]:
    """Every exchange x symbol x dataset. ``symbols`` is one list for all exchanges or
    a list per exchange. Derivatives datasets are left out for spot symbols (no ``:``
    in the unified symbol), which have none."""
    datasets = list(datasets)
    for dataset in datasets:
        if dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    out = []
    for exchange in exchanges:
        chosen = symbols.get(exchange, []) if isinstance(symbols, Mapping) else symbols
        for symbol in chosen:
            for dataset in datasets:
                if dataset != "ohlcv" and ":" not in symbol:
                    continue
                series = timeframe if dataset == "ohlcv" else oi_period
                out.append(StreamSpec(exchange, symbol, dataset, series))
    return out


def collect(
    dsn: str,
    specs: Iterable[StreamSpec],
    *,
    replay_url: str | None = None,
    pool: ExchangePool | None = None,
    **options: Any,
) -> list[StreamReport]:
    """Run streams one after another (the flow runs them as parallel tasks instead).

    ``options`` go to :func:`collect_stream` (since, until, resume, retry, run_id,
    default_backfill). One stream failing does not stop the others.
    """
    pool = pool or ExchangePool(replay_url)
    return [collect_stream(dsn, spec, pool=pool, **options) for spec in specs]


def _fmt_ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _fmt_lag(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def summary_markdown(reports: Sequence[StreamReport], title: str = "collect-market-data") -> str:
    """A markdown table of the streams: status, new / unchanged rows, lag, gaps."""
    counts = {s: sum(1 for r in reports if r.status == s) for s in ("ok", "unsupported", "failed")}
    new = sum(r.new_rows for r in reports)
    lines = [
        f"# {title}",
        "",
        f"{len(reports)} streams: {counts['ok']} ok, {counts['unsupported']} unsupported, "
        f"{counts['failed']} failed; {new} new rows.",
        "",
        "| exchange | symbol | dataset | status | new rows | unchanged | last stored | lag "
        "| gaps | requests | retries | note |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        dataset = f"{r.dataset} {r.series}".strip()
        note = r.message.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r.exchange} | {r.symbol} | {dataset} | {r.status} | {r.new_rows} "
            f"| {r.unchanged_rows} | {_fmt_ts(r.stored_last_ts)} | {_fmt_lag(r.lag_seconds)} "
            f"| {len(r.gaps)} | {r.requests} | {r.retries} | {note} |"
        )
    gaps = [(r, g) for r in reports for g in r.gaps]
    if gaps:
        lines += ["", "## Gaps that remain", "", "| stream | after | before | missing |"]
        lines.append("|---|---|---|---:|")
        for r, g in gaps:
            missing = "" if g.missing_rows is None else str(g.missing_rows)
            lines.append(
                f"| {r.label} | {_fmt_ts(g.last_before)} | {_fmt_ts(g.first_after)} | {missing} |"
            )
    return "\n".join(lines) + "\n"


def known_exchanges() -> list[str]:
    """The exchange ids Brain collects from."""
    return list(EXCHANGES)
