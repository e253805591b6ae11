"""Forced liquidations, live: a websocket listener on ccxt.pro (unmodified).

The exchanges publish no liquidation history through ccxt's REST API, so a desk collects
them by listening. :class:`LiquidationListener` holds one ccxt.pro connection per
exchange (``watch_liquidations_for_symbols`` on binance and okx, ``watch_liquidations``
per symbol on bybit) and lands every liquidation of its symbols in ``raw.liquidations``:

* **Exactly once.** A row's key is the exchange's id when it gives one, else a sha256
  of (time, side, price, quantity), the same key the REST collector writes; rows go in
  with ``on conflict do nothing``, so a duplicate frame, a replayed message or a
  reconnect that sees a liquidation again adds nothing.
* **Every liquidation, not just the last.** ccxt.pro resolves a ``watch_*`` call with
  the liquidations of one message and keeps later ones only in a bounded cache until the
  next call; the listener takes each liquidation where ccxt parses it
  (``parse_ws_liquidation``, a subclass hook), so none is lost between two awaits, and
  splits okx entries that carry several ``details`` (ccxt reads the first one only).
* **Small batches.** Rows are committed every ``flush_s`` seconds (or ``batch_rows``
  rows), each batch in one transaction with the stream's heartbeat.
* **Alive and honest about holes.** ``raw.listener_heartbeats`` holds one row per stream
  with the listener's latest beat (state, connected, counts); a dropped connection is
  reconnected with exponential backoff, and the time it was down is recorded in
  ``raw.collection_gaps`` (``last_before`` = when it was lost, ``first_after`` = when it
  was back): what the exchange published in between is gone.
* **Bad messages are kept.** A frame that is not JSON, JSON cut short or a liquidation
  without a market or a time goes to ``raw.quarantine_messages`` with the reason;
  a liquidation with impossible values (a price that is not a number, a negative size)
  lands and the ``raw.liquidations`` Great Expectations suite, run on every batch
  window (``check_s``), quarantines it, as for the other streams.
* **One listener per stream.** Each (exchange, symbol) is held with a PostgreSQL
  advisory lock for the run; a second listener for a held stream is refused with a line
  naming the holder, and writes nothing.

The position side is normalised as in the REST collector: ``long`` when a long position
was liquidated. binance and okx name the side of the liquidation *order* (a SELL closes a
long); bybit names the side of the *position* (``Buy`` is a long).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import math
import os
import signal
import socket
import statistics
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from brain_lib.errors import ConfigError, MarketDataError
from brain_lib.market._collect_rows import _write_liquidations
from brain_lib.market._collect_types import StreamSpec, _dt
from brain_lib.market._listen_ccxt import (
    _listening_exchange,
    _point_ws_at,
    _replay_ws_root,
    _Sink,
    check_exchange,
    resolve_perpetual,
)
from brain_lib.market.exchanges import exchange_profile

__all__ = [
    "ExchangeUnreachableError",
    "LiquidationListener",
    "ListenReport",
    "ListenerBusyError",
    "StreamCounts",
    "check_exchange",
    "listen_liquidations",
    "resolve_perpetual",
]

DATASET = "liquidations"
_FRAME_CHARS = 4000
_LOCK_SPACE = zlib.crc32(b"brain.listen") & 0x7FFFFFFF


class ListenerBusyError(MarketDataError):
    """A stream already has a listener (another process holds its lock)."""


class ExchangeUnreachableError(MarketDataError, ConnectionError):
    """The exchange did not answer (its markets could not be loaded): may pass by
    itself, so the flow's task retries it."""


@dataclass
class StreamCounts:
    """One stream's counts in a listener run."""

    symbol: str
    messages: int = 0
    new_rows: int = 0
    unchanged_rows: int = 0
    rejected: int = 0
    first_ts: int | None = None
    last_ts: int | None = None


@dataclass
class ListenReport:
    """What a listener run did (``brain listen`` prints it, the flow stores it)."""

    exchange: str
    run_id: str
    listener_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    message: str | None = None
    streams: dict[str, StreamCounts] = field(default_factory=dict)
    rejected: int = 0
    other_markets: int = 0
    reconnects: int = 0
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    batches: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def new_rows(self) -> int:
        return sum(s.new_rows for s in self.streams.values())

    @property
    def unchanged_rows(self) -> int:
        return sum(s.unchanged_rows for s in self.streams.values())

    @property
    def messages(self) -> int:
        return sum(s.messages for s in self.streams.values())

    def latency(self) -> tuple[float | None, float | None]:
        """Median and 99th percentile (ms) from a liquidation's arrival to its commit."""
        values = sorted(self.latencies_ms)
        if not values:
            return None, None
        p99 = values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]
        return statistics.median(values), p99

    def as_rows(self) -> list[dict[str, Any]]:
        """One dict per stream (the flow's result, the CLI's table)."""
        return [
            {
                "exchange": self.exchange,
                "symbol": c.symbol,
                "status": self.status,
                "messages": c.messages,
                "new_rows": c.new_rows,
                "unchanged_rows": c.unchanged_rows,
                "rejected": c.rejected,
                "gaps": len(self.gaps),
                "last_ts": _dt(c.last_ts).isoformat() if c.last_ts is not None else None,
            }
            for c in self.streams.values()
        ]

    def markdown(self) -> str:
        """The run's summary as a markdown table (the flow's artifact)."""
        median, p99 = self.latency()
        lines = [
            f"# listen-liquidations: {self.exchange}",
            "",
            f"{self.describe()}.",
            "",
            "| symbol | received | new | already stored | quarantined | last liquidation |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in self.as_rows():
            lines.append(
                f"| {row['symbol']} | {row['messages']} | {row['new_rows']} | "
                f"{row['unchanged_rows']} | {row['rejected']} | {row['last_ts'] or '-'} |"
            )
        if self.gaps:
            lines += ["", "Time disconnected (raw.collection_gaps):", ""]
            lines += [f"- {a:%Y-%m-%d %H:%M:%S} to {b:%H:%M:%S} UTC" for a, b in self.gaps]
        if median is not None and p99 is not None:
            lines += ["", f"Arrival to commit: median {median:.1f} ms, p99 {p99:.1f} ms."]
        for check in self.checks:
            lines += ["", f"Data quality: {check['summary']}"]
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        parts = [
            f"{self.exchange}: {self.messages} liquidation(s) received, {self.new_rows} new, "
            f"{self.unchanged_rows} already stored, {self.rejected} message(s) quarantined"
        ]
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnect(s), {len(self.gaps)} gap(s) recorded")
        if self.message:
            parts.append(self.message)
        return "; ".join(parts)


# ---------------------------------------------------------------------- the listener


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _frame_text(raw: Any) -> str:
    import json

    if isinstance(raw, bytes):
        return raw.decode(errors="replace")
    if isinstance(raw, str):
        return raw
    try:
        return json.dumps(raw, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(raw)


class LiquidationListener:
    """Listen to the liquidations of ``symbols`` on one exchange and land them.

    ``replay_url``: the replay exchange (REST for the markets, its websocket streams
    for the liquidations) instead of the real one. ``flush_s`` / ``batch_rows``: how
    often rows are committed; ``heartbeat_s``: how often the heartbeat rows are written
    when nothing else is; ``check_s``: how often the quality suite runs over what
    landed since its last run (and once at the end; 0: only at the end; None: never);
    ``backoff_s``: the first and the longest wait before a reconnect.
    ``on_progress``: called with the report after every batch (the CLI's live count).
    """

    def __init__(
        self,
        dsn: str,
        exchange: str,
        symbols: Sequence[str],
        *,
        replay_url: str | None = None,
        run_id: str | None = None,
        flush_s: float = 0.25,
        batch_rows: int = 500,
        heartbeat_s: float = 5.0,
        check_s: float | None = 30.0,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        docs_dir: Any = None,
        on_progress: Callable[[ListenReport], None] | None = None,
    ) -> None:
        check_exchange(exchange)
        if not symbols:
            raise ConfigError("name at least one symbol to listen to")
        if flush_s <= 0 or batch_rows < 1 or heartbeat_s <= 0:
            raise ConfigError("flush_s and heartbeat_s must be > 0 and batch_rows >= 1")
        self.dsn = dsn
        self.exchange_id = exchange
        self.requested = list(dict.fromkeys(symbols))
        self.replay_url = replay_url
        self.flush_s = flush_s
        self.batch_rows = batch_rows
        self.heartbeat_s = heartbeat_s
        self.check_s = check_s
        self.backoff_s = backoff_s
        self.docs_dir = docs_dir
        self.on_progress = on_progress
        now = datetime.now(UTC)
        self.report = ListenReport(
            exchange=exchange,
            run_id=run_id or uuid.uuid4().hex,
            listener_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            started_at=now,
        )
        self.symbols: list[str] = []
        self._rows: list[tuple[Any, ...]] = []
        self._rejects: list[tuple[Any, ...]] = []
        self._connected = False
        self._down_since: datetime | None = None
        self._pending_gap: tuple[datetime, datetime] | None = None
        self._unchecked: tuple[int, int] | None = None
        self._state = "starting"
        self._wake: asyncio.Event | None = None
        self._exchange: Any = None
        self._markets: dict[str, Any] = {}
        self._holding = False
        self._stop_requested = threading.Event()

    # --- what the hooked exchange hands over (event loop thread) ------------------
    def _take(self, parsed: dict[str, Any], raw: Any) -> None:
        from brain_lib.market._collect_rows import _norm_liquidation

        symbol = parsed.get("symbol") if isinstance(parsed, dict) else None
        if symbol not in self.report.streams:
            if symbol is None or parsed.get("timestamp") is None:
                self._reject(raw, "a liquidation without a market or a time", symbol)
            else:
                self.report.other_markets += 1  # okx's channel carries every swap
            return
        ts = parsed.get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            self._reject(raw, f"a liquidation without a usable time ({ts!r})", symbol)
            return
        item = dict(parsed)
        if self.exchange_id == "bybit":
            # bybit names the liquidated position's side; the collector's rule reads the
            # side of the liquidation order, which is the other one
            side = str(item.get("side") or "").lower()
            item["side"] = {"buy": "sell", "sell": "buy"}.get(side, item.get("side"))
        market = self._markets.get(symbol, {})
        try:
            row = _norm_liquidation(item, market)
        except (TypeError, ValueError) as exc:
            self._reject(raw, f"a liquidation that cannot be read: {exc}", symbol)
            return
        counts = self.report.streams[symbol]
        counts.messages += 1
        self._rows.append((symbol, *row, time.perf_counter()))
        if len(self._rows) >= self.batch_rows and self._wake is not None:
            self._wake.set()

    def _reject(self, raw: Any, reason: str, symbol: str | None = None) -> None:
        text = _frame_text(raw)
        digest = hashlib.sha256(text.encode(errors="replace")).hexdigest()
        self._rejects.append(
            (
                symbol,
                _printable(reason)[:500],
                _printable(text)[:_FRAME_CHARS],
                digest,
                len(text.encode(errors="replace")),
                datetime.now(UTC),
            )
        )
        self.report.rejected += 1
        if symbol in self.report.streams:
            self.report.streams[symbol].rejected += 1

    def _on_connected(self) -> None:
        self._connected = True
        self._state = "listening"
        if self._down_since is not None:
            self._pending_gap = (self._down_since, datetime.now(UTC))
            self._down_since = None

    def _on_lost(self) -> None:
        if self._down_since is None:  # once per lost connection (bybit: many watchers)
            self._down_since = datetime.now(UTC)
            self.report.reconnects += 1
        self._connected = False
        self._state = "reconnecting"

    # --- the warehouse (one writer thread, one connection) ---------------------------
    def _lock_streams(self, conn: Any) -> None:
        held = []
        for symbol in self.symbols:
            key = zlib.crc32(f"{self.exchange_id}|{symbol}|{DATASET}".encode()) & 0x7FFFFFFF
            got = conn.execute("select pg_try_advisory_lock(%s, %s)", (_LOCK_SPACE, key))
            if got.fetchone()[0]:
                held.append(symbol)
                continue
            holder = conn.execute(
                """
                select listener_id, beat_at, state from raw.listener_heartbeats
                where exchange = %s and symbol = %s and dataset = %s
                """,
                (self.exchange_id, symbol, DATASET),
            ).fetchone()
            who = (
                f" (listener {holder[0]}, last beat {holder[1]:%Y-%m-%d %H:%M:%S}Z, {holder[2]})"
                if holder
                else ""
            )
            conn.execute("select pg_advisory_unlock_all()")
            conn.rollback()
            raise ListenerBusyError(
                f"{self.exchange_id} {symbol} liquidations already have a listener{who}: "
                f"refused, nothing written (stop that one, or leave {symbol} out)"
            )
        conn.commit()  # session locks outlive the transaction the check opened
        self._holding = True

    def _write(self, conn: Any, final_state: str | None = None) -> list[float]:
        """Commit the buffered rows, rejects, a pending gap and the heartbeats in one
        transaction; returns the arrival-to-commit latencies (ms)."""
        rows, self._rows = self._rows, []
        rejects, self._rejects = self._rejects, []
        gap, self._pending_gap = self._pending_gap, None
        ex, run_id = self.exchange_id, self.report.run_id
        by_symbol: dict[str, list[tuple[Any, ...]]] = {}
        for r in rows:
            by_symbol.setdefault(r[0], []).append(r[1:7])  # the collector's row shape
        with conn.transaction():
            for symbol, batch in by_symbol.items():
                # the REST collector's writer: one insert path, one key, for both
                spec = StreamSpec(ex, symbol, DATASET)
                added, unchanged = _write_liquidations(conn, spec, batch)
                counts = self.report.streams[symbol]
                counts.new_rows += added
                counts.unchanged_rows += unchanged
                stamps = [r[0] for r in batch]
                low, high = min(stamps), max(stamps)
                counts.first_ts = low if counts.first_ts is None else min(counts.first_ts, low)
                counts.last_ts = high if counts.last_ts is None else max(counts.last_ts, high)
            if rejects:
                conn.cursor().executemany(
                    """
                    insert into raw.quarantine_messages
                        (exchange, dataset, symbol, reason, frame, frame_sha256, frame_bytes,
                         run_id, received_at)
                    values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                    """,
                    [(ex, DATASET, *r[:5], run_id, r[5]) for r in rejects],
                )
            if gap is not None:
                conn.cursor().executemany(
                    """
                    insert into raw.collection_gaps
                        (exchange, symbol, dataset, series, last_before, first_after, run_id)
                    values (%s, %s, %s, '', %s, %s, %s)
                    on conflict (exchange, symbol, dataset, series, last_before) do nothing
                    """,
                    [(ex, s, DATASET, gap[0], gap[1], run_id) for s in self.symbols],
                )
                self.report.gaps.append(gap)
            self._beat(conn, final_state)
        done = time.perf_counter()
        if rows:
            lo = min(r[1] for r in rows)
            hi = max(r[1] for r in rows)
            old = self._unchecked
            self._unchecked = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            self.report.batches += 1
        return [(done - r[7]) * 1000 for r in rows]

    def _beat(self, conn: Any, final_state: str | None) -> None:
        state = final_state or self._state
        host, pid = socket.gethostname(), os.getpid()
        conn.cursor().executemany(
            """
            insert into raw.listener_heartbeats
                (exchange, symbol, dataset, listener_id, run_id, host, pid, started_at,
                 beat_at, state, connected, messages, new_rows, unchanged_rows, rejected,
                 reconnects, last_ts, message)
            values (%s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (exchange, symbol, dataset) do update set
                listener_id = excluded.listener_id, run_id = excluded.run_id,
                host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
                beat_at = excluded.beat_at, state = excluded.state,
                connected = excluded.connected, messages = excluded.messages,
                new_rows = excluded.new_rows, unchanged_rows = excluded.unchanged_rows,
                rejected = excluded.rejected, reconnects = excluded.reconnects,
                last_ts = greatest(raw.listener_heartbeats.last_ts, excluded.last_ts),
                message = excluded.message
            """,
            [
                (
                    self.exchange_id,
                    s.symbol,
                    DATASET,
                    self.report.listener_id,
                    self.report.run_id,
                    host,
                    pid,
                    self.report.started_at,
                    state,
                    self._connected and final_state is None,
                    s.messages,
                    s.new_rows,
                    s.unchanged_rows,
                    s.rejected,
                    self.report.reconnects,
                    _dt(s.last_ts) if s.last_ts is not None else None,
                    self.report.message if final_state else None,
                )
                for s in self.report.streams.values()
            ],
        )

    def _finish(self, conn: Any, status: str) -> None:
        """The last batch, the final heartbeat and one raw.collection_runs row per stream.
        A connection still down at the end is a gap up to now."""
        if self._down_since is not None and self._pending_gap is None:
            self._pending_gap = (self._down_since, datetime.now(UTC))
            self._down_since = None
        self._write(conn, "stopped" if status == "ok" else "failed")
        with conn.transaction():
            for s in self.report.streams.values():
                conn.execute(
                    """
                    insert into raw.collection_runs
                        (run_id, exchange, symbol, dataset, series, status, message, new_rows,
                         unchanged_rows, gaps, first_ts, last_ts, started_at)
                    values (%s, %s, %s, %s, '', %s, %s, %s, %s, %s, %s, %s, %s)
                    """,
                    (
                        self.report.run_id,
                        self.exchange_id,
                        s.symbol,
                        DATASET,
                        status,
                        self.report.message,
                        s.new_rows,
                        s.unchanged_rows,
                        len(self.report.gaps),
                        _dt(s.first_ts) if s.first_ts is not None else None,
                        _dt(s.last_ts) if s.last_ts is not None else None,
                        self.report.started_at,
                    ),
                )
                conn.execute(
                    """
                    insert into raw.collection_streams
                        (exchange, symbol, dataset, series, status, message, last_ts,
                         last_run_id, updated_at)
                    values (%s, %s, %s, '', %s, %s, %s, %s, now())
                    on conflict (exchange, symbol, dataset, series) do update set
                        status = excluded.status, message = excluded.message,
                        last_ts = greatest(raw.collection_streams.last_ts, excluded.last_ts),
                        last_run_id = excluded.last_run_id, updated_at = now()
                    """,
                    (
                        self.exchange_id,
                        s.symbol,
                        DATASET,
                        status,
                        self.report.message,
                        _dt(s.last_ts) if s.last_ts is not None else None,
                        self.report.run_id,
                    ),
                )

    def _check(self) -> None:
        """The raw.liquidations suite over what landed since the last check."""
        window, self._unchecked = self._unchecked, None
        if window is None or self.check_s is None:
            return
        from datetime import timedelta

        from brain_lib.quality import run_quality_checks

        (report,) = run_quality_checks(
            self.dsn,
            tables=["liquidations"],
            exchange=self.exchange_id,
            start=_dt(window[0]),
            end=_dt(window[1]) + timedelta(microseconds=1),
            run_id=self.report.run_id,
            docs_dir=self.docs_dir,
        )
        self.report.checks.append(
            {"ok": report.ok, "success": report.success, "summary": report.describe()}
        )

    # --- the run ------------------------------------------------------------------
    def stop(self) -> None:
        """Ask a running listener to end (from any thread): it commits what arrived,
        writes its final heartbeat and returns its report, within ``flush_s``."""
        self._stop_requested.set()

    def run(self, duration_s: float | None = None) -> ListenReport:
        """Listen for ``duration_s`` seconds (None: until interrupted) and return the
        report. Ctrl-C (or SIGTERM turned into it) ends the run cleanly: the last batch
        is committed and the report says so."""
        try:
            asyncio.run(self.listen(duration_s))
        except KeyboardInterrupt:
            self.report.message = "interrupted"
        return self.report

    async def listen(
        self, duration_s: float | None = None, stop: asyncio.Event | None = None
    ) -> None:
        from brain_lib.warehouse import open_connection

        profile = exchange_profile(self.exchange_id)
        writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="brain-listen-db")
        checker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="brain-listen-gx")
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        stop = stop or asyncio.Event()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            # SIGTERM (docker stop, a worker cancelling) ends the run as Ctrl-C does;
            # only possible in the main thread
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        conn = await loop.run_in_executor(writer, lambda: open_connection(self.dsn))
        exchange = None
        status = "failed"
        try:
            exchange = await self._open_exchange(profile)
            await loop.run_in_executor(writer, self._lock_streams, conn)
            await loop.run_in_executor(writer, self._write, conn, None)
            watchers = self._watchers(exchange)
            status = await self._pump(loop, writer, checker, conn, watchers, duration_s, stop)
        except asyncio.CancelledError:
            self.report.message = "interrupted"
            status = "ok"
            raise
        except Exception as exc:
            self.report.message = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if exchange is not None:
                with contextlib.suppress(Exception):
                    await exchange.close()
            if self._holding:
                with contextlib.suppress(Exception):
                    await asyncio.shield(loop.run_in_executor(writer, self._finish, conn, status))
                with contextlib.suppress(Exception):
                    await asyncio.shield(loop.run_in_executor(checker, self._check))
            self.report.status = status
            self.report.finished_at = datetime.now(UTC)
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.remove_signal_handler(signal.SIGTERM)
            with contextlib.suppress(Exception):
                await loop.run_in_executor(writer, conn.close)
            writer.shutdown(wait=False)
            checker.shutdown(wait=False)

    async def _open_exchange(self, profile: Any) -> Any:
        sink = _Sink(self)
        prefixes: tuple[str, ...] = ()
        ws_root = None
        if self.replay_url is not None:
            ws_root = await asyncio.to_thread(_replay_ws_root, self.replay_url)
            prefixes = (ws_root + "/",)
        cls = _listening_exchange(profile.ccxt_class, sink, prefixes)
        exchange = cls(
            {
                "enableRateLimit": True,
                "timeout": 10_000,
                "newUpdates": True,
                "options": {
                    "fetchMarkets": {"types": list(profile.market_types)},
                    "adjustForTimeDifference": False,
                },
            }
        )
        self._exchange = exchange
        try:
            if self.replay_url is not None and ws_root is not None:
                from brain_lib.market.exchanges import point_at_replay

                point_at_replay(exchange, self.replay_url)
                _point_ws_at(exchange, ws_root)
            import ccxt

            try:
                self._markets = await exchange.load_markets()
            except ccxt.NetworkError as exc:
                raise ExchangeUnreachableError(
                    f"{self.exchange_id} did not answer: {type(exc).__name__}: {exc}"
                ) from None
            except Exception as exc:
                raise MarketDataError(
                    f"{self.exchange_id}: could not load its markets: {type(exc).__name__}: {exc}"
                ) from None
            self.symbols = [
                resolve_perpetual(self._markets, s, self.exchange_id) for s in self.requested
            ]
            self.symbols = list(dict.fromkeys(self.symbols))
            self.report.streams = {s: StreamCounts(s) for s in self.symbols}
        except BaseException:
            await exchange.close()
            raise
        return exchange

    def _watchers(self, exchange: Any) -> list[Callable[[], Any]]:
        if self.exchange_id == "bybit" or not exchange.has.get("watchLiquidationsForSymbols"):
            # bybit: one topic per symbol, all on one connection
            return [functools.partial(exchange.watch_liquidations, s) for s in self.symbols]
        return [functools.partial(exchange.watch_liquidations_for_symbols, self.symbols)]

    async def _watch(self, call: Callable[[], Any]) -> None:
        """Keep one ccxt.pro watch going: each return just means "more arrived" (the
        rows came through the parse hook); an error is a lost connection."""
        first, longest = self.backoff_s
        delay = first
        while True:
            try:
                await call()
                delay = first
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                import ccxt

                if isinstance(exc, ccxt.BadSymbol | ccxt.NotSupported | ConfigError):
                    raise
                self._on_lost()
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)

    async def _pump(
        self,
        loop: asyncio.AbstractEventLoop,
        writer: concurrent.futures.Executor,
        checker: concurrent.futures.Executor,
        conn: Any,
        watchers: list[Callable[[], Any]],
        duration_s: float | None,
        stop: asyncio.Event | None,
    ) -> str:
        tasks = [asyncio.ensure_future(self._watch(call)) for call in watchers]
        deadline = None if duration_s is None else time.monotonic() + duration_s
        last_write = last_check = time.monotonic()
        pending_check: asyncio.Future[Any] | None = None
        assert self._wake is not None
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return "ok"
                if stop is not None and stop.is_set():
                    self.report.message = "stopped (SIGTERM)"
                    return "ok"
                if self._stop_requested.is_set():
                    return "ok"
                failed = next((t for t in tasks if t.done()), None)
                if failed is not None:
                    failed.result()  # raises what ended it
                wait = self.flush_s if deadline is None else min(self.flush_s, deadline - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))
                self._wake.clear()
                now = time.monotonic()
                due = now - last_write >= self.heartbeat_s
                if self._rows or self._rejects or self._pending_gap or due:
                    latencies = await loop.run_in_executor(writer, self._write, conn, None)
                    self.report.latencies_ms.extend(latencies)
                    last_write = now
                    if self.on_progress is not None:
                        self.on_progress(self.report)
                check_due = self.check_s and now - last_check >= self.check_s
                idle = pending_check is None or pending_check.done()
                if check_due and idle and self._unchecked is not None:
                    pending_check = loop.run_in_executor(checker, self._check)
                    last_check = now
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            if pending_check is not None:
                with contextlib.suppress(Exception):
                    await pending_check


def listen_liquidations(
    dsn: str,
    exchange: str,
    symbols: Sequence[str],
    *,
    duration_s: float | None = None,
    **options: Any,
) -> ListenReport:
    """Listen to ``symbols`` on ``exchange`` for ``duration_s`` seconds (see
    :class:`LiquidationListener` for the options) and return the report."""
    return LiquidationListener(dsn, exchange, symbols, **options).run(duration_s)
