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

The stream and report types and the run summary live in ``_collect_types``, the
normalisers, error classes and the writers of the other tables in ``_collect_rows``;
import them from here.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from brain_lib import warehouse
from brain_lib.errors import (
    BrainError,
    WarehouseError,
    WarehouseUnavailableError,
)
from brain_lib.market._collect_rows import (
    Row,
    _classify,
    _first_line,
    _norm_funding,
    _norm_liquidation,
    _norm_ohlcv,
    _norm_oi,
    _PageError,
    _retry_after,
    _StreamFailed,
    _write_funding,
    _write_liquidations,
    _write_oi,
)
from brain_lib.market._collect_types import (
    DATASETS,
    DEFAULT_BACKFILL,
    HOUR_MS,
    Gap,
    RetryPolicy,
    StreamReport,
    StreamSpec,
    StreamTimings,
    _dt,
    _iso,
    _ms,
    _timeframe_ms,
    stream_specs,
    summary_markdown,
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
    "page_body_bytes",
    "stream_specs",
    "summary_markdown",
]

log = logging.getLogger(__name__)

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


def page_body_bytes(limit: int) -> int:
    """The most bytes one answer of ``limit`` rows may take (see the module docstring)."""
    return max(MIN_PAGE_BYTES, limit * PAGE_BYTES_PER_ROW)


def _local_now_ms() -> int:
    return int(time.time() * 1000)


def _hours(ms: int) -> str:
    return f"{ms / HOUR_MS:.1f} h" if ms >= HOUR_MS else f"{ms / 60_000:.0f} min"


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


def known_exchanges() -> list[str]:
    """The exchange ids Brain collects from."""
    return list(EXCHANGES)
