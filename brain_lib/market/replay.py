"""The replay exchange: binance, bybit and okx REST endpoints on 127.0.0.1, offline.

A small HTTP server that answers the real REST paths ccxt calls for the collection
(markets, server time, OHLCV, funding rate history, open interest history) with bodies
in each exchange's real response format, so that collection runs the real ccxt code
path (request building, HTTP, error mapping, parsing) without the network.

Paths served (one namespace; the exchanges' paths do not collide):

=========  ====================================================================
binance    ``/api/v3/{exchangeInfo,time,klines}`` (spot),
           ``/fapi/v1/{exchangeInfo,time,klines,fundingRate}`` (USD-M),
           ``/futures/data/openInterestHist``
bybit      ``/v5/market/{instruments-info,time,kline,funding/history,open-interest}``
okx        ``/api/v5/public/{instruments,time,funding-rate-history}``,
           ``/api/v5/market/{candles,history-candles}``,
           ``/api/v5/rubik/stat/contracts/open-interest-history``
=========  ====================================================================

Data comes from one of two sources (:class:`ReplayConfig.source`):

``synthetic``
    Generated from the seeded synthetic market (:func:`generate_candles`), the same
    path for a base asset on every exchange and market type; funding prints every 8
    hours and open interest samples are deterministic functions of those candles. The
    exchanges' query semantics are emulated: time windows, inclusive or exclusive bounds,
    oldest-first or newest-first pages, page-size caps, the forming (unclosed) candle.
    Market lists are built from the recorded market bodies as templates.
``recorded``
    The recorded real-format bodies of ``brain_lib/market/recorded/`` served verbatim,
    whatever the query (for parsing tests).

The clock of the replay (``now``) is fixed or the wall clock; nothing is served that
is stamped after it.

Faults are injected with a :class:`FaultPlan` (given at start, or changed at run time
through :attr:`ReplayServer.faults` or ``POST /__replay__/faults``): rate-limit answers
in each exchange's real format, HTML error pages, missing fields, shuffled or duplicated
rows, rows dropped from a page, delays, connections closed before or in the middle of a
body, and hostile 200 answers: random bytes or plain text under a JSON content type,
JSON cut in the middle, pages of 50 x the rows asked for (most outside the window,
some past the clock) and bodies of many MB. Every request is logged
(:attr:`ReplayServer.requests`). The clock itself can be off: ``skew_s``
(:class:`ReplayConfig`, :meth:`ReplayServer.set_now`) moves the time endpoints and
what is served (the forming candle, the newest funding print) together, as an
exchange whose clock runs ahead or behind.

Websocket streams (:mod:`brain_lib.market._replay_ws`, :attr:`ReplayServer.ws`): the
forced-liquidation streams of the three exchanges (binance ``forceOrder``, bybit
``allLiquidation``, okx ``liquidation-orders``) on a second port of the same host
(``GET /__replay__/ws`` names it), from the synthetic market, with their own faults
(a dropped connection, malformed frames, duplicate frames) and a log of what was sent.

Run it standalone: ``python -m brain_lib.market.replay --port 8765``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from brain_lib.market._replay_data import (
    DAY_MS,
    FUNDING_INTERVAL_MS,
    HOUR_MS,
    MINUTE_MS,
    Hole,
    ReplayConfig,
    SyntheticData,
    _to_ms,
    recorded_body,
    recorded_files,
    recorded_name,
    timeframe_ms,
)
from brain_lib.market._replay_dialects import (
    _DIALECTS,
    ApiError,
    _Dialect,
    exchange_of_path,
)
from brain_lib.market._replay_faults import (
    _HTML_PAGES,
    FAULT_KINDS,
    HUGE_BODY_BYTES,
    FaultPlan,
    FaultRule,
    RequestRecord,
    _mutate,
    broken_payload,
    huge_page,
)
from brain_lib.market._replay_ws import WS_FAULT_KINDS, SentLiquidation, WsFaultRule, WsStreams

log = logging.getLogger(__name__)

__all__ = [
    "DAY_MS",
    "FAULT_KINDS",
    "FUNDING_INTERVAL_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "WS_FAULT_KINDS",
    "ApiError",
    "FaultPlan",
    "FaultRule",
    "Hole",
    "ReplayConfig",
    "ReplayServer",
    "RequestRecord",
    "SentLiquidation",
    "SyntheticData",
    "WsFaultRule",
    "WsStreams",
    "exchange_of_path",
    "recorded_body",
    "recorded_files",
    "recorded_name",
    "serve",
    "timeframe_ms",
]

# ------------------------------------------------------------------ the HTTP server


class _App:
    """Routing, data, faults and the request log, shared by the handler threads."""

    def __init__(self, config: ReplayConfig, faults: FaultPlan) -> None:
        self.config = config
        self.faults = faults
        self.data = SyntheticData(config)
        self.dialects = [cls(self.data, config) for cls in _DIALECTS]
        self._fixed_now: int | None = None if config.now is None else _to_ms(config.now)
        self._skew_ms = round(config.skew_s * 1000)
        self._log_lock = threading.Lock()
        # the newest requests only, so that a long-running replay does not grow forever
        self.requests: deque[RequestRecord] = deque(maxlen=100_000)

    def now(self) -> int:
        base = self._fixed_now if self._fixed_now is not None else int(time.time() * 1000)
        return base + self._skew_ms

    def set_now(self, value: int | str | None, skew_s: float = 0.0) -> None:
        self._fixed_now = None if value is None else _to_ms(value)
        self._skew_ms = round(skew_s * 1000)

    def log(self, record: RequestRecord) -> None:
        with self._log_lock:
            self.requests.append(record)

    def dialect(self, path: str) -> _Dialect | None:
        return next((d for d in self.dialects if d.owns(path)), None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # buffered: headers and body leave in one segment (handle_one_request flushes);
    # unbuffered writes meet Nagle and delayed ACKs and cost ~40 ms per answer
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is :attr:`ReplayServer.requests`."""

    # plumbing ------------------------------------------------------------------
    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json;charset=UTF-8",
        headers: dict[str, str] | None = None,
        cut: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if cut:  # half of the body, then the connection goes away
            self.wfile.write(payload[: max(1, len(payload) // 2)])
            self.wfile.flush()
            self._hang_up()
            return
        self.wfile.write(payload)

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _query(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return parts.path, query

    # admin ---------------------------------------------------------------------
    def _admin(self, method: str, path: str) -> None:
        app = self.server.app
        if path == "/__replay__/faults" and method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            items = json.loads(self.rfile.read(length) or b"[]")
            for rule in FaultPlan.from_json(items if isinstance(items, list) else [items]).rules:
                app.faults.rules.append(rule)
            self._send(200, json.dumps({"rules": len(app.faults.rules)}).encode())
        elif path == "/__replay__/faults" and method == "DELETE":
            app.faults.clear()
            self._send(200, b'{"rules": 0}')
        elif path == "/__replay__/faults":
            rules = [asdict(r) for r in app.faults.rules]
            self._send(200, json.dumps(rules).encode())
        elif path == "/__replay__/requests":
            with app._log_lock:
                logged = [asdict(r) for r in app.requests]
            self._send(200, json.dumps(logged).encode())
        elif path == "/__replay__/ws":
            ws = self.server.ws
            self._send(200, json.dumps({"url": ws.url if ws else None}).encode())
        elif path == "/__replay__/health":
            self._send(200, json.dumps({"now": app.now()}).encode())
        else:
            self._send(404, b'{"error": "unknown admin path"}')

    def do_POST(self) -> None:
        path, _ = self._query()
        if path.startswith("/__replay__/"):
            return self._admin("POST", path)
        self._send(405, b'{"error": "the replay serves GET only"}')

    def do_DELETE(self) -> None:
        path, _ = self._query()
        if path.startswith("/__replay__/"):
            return self._admin("DELETE", path)
        self._send(405, b'{"error": "the replay serves GET only"}')

    # exchange paths ------------------------------------------------------------
    def do_GET(self) -> None:
        app = self.server.app
        path, query = self._query()
        if path.startswith("/__replay__/"):
            return self._admin("GET", path)
        dialect = app.dialect(path)
        now = app.now()
        rule = app.faults.take(dialect.name if dialect else None, path)
        fault = rule.kind if rule else None
        if rule is not None and rule.kind == "delay":
            time.sleep(rule.seconds)
        if rule is not None and rule.kind == "reset":
            app.log(RequestRecord("GET", path, query, 0, fault))
            self._hang_up()
            return
        headers: dict[str, str] = {}
        if dialect is None:
            status, body = 404, {"error": f"the replay does not serve {path}"}
        elif rule is not None and rule.kind == "rate_limit":
            status, body, headers = dialect.rate_limited(now)
        else:
            status, body = dialect.handle(path, query, now)
            if status == 200 and rule is not None and rule.kind == "huge_page":
                body = huge_page(rule, dialect, body, query)
            elif status == 200 and rule is not None:
                body = _mutate(rule, dialect, body)
        if rule is not None and rule.kind == "html":
            status = rule.status or 502
            page = _HTML_PAGES.get(status, _HTML_PAGES[502]).encode()
            app.log(RequestRecord("GET", path, query, status, fault))
            return self._send(status, page, "text/html", cut=False)
        if rule is not None and rule.kind == "http_error":
            status = rule.status or 500
            app.log(RequestRecord("GET", path, query, status, fault))
            return self._send(status, b"", "text/plain")
        if dialect is not None and dialect.name == "binance":
            headers.setdefault("X-MBX-USED-WEIGHT-1M", "42")
        app.log(RequestRecord("GET", path, query, status, fault))
        payload = json.dumps(body, separators=(",", ":")).encode()
        if rule is not None and rule.kind == "huge_body":
            return self._send_padded(status, payload, rule.size or HUGE_BODY_BYTES, headers)
        if rule is not None and (broken := broken_payload(rule, payload)) is not None:
            return self._send(rule.status or 200, broken, headers=headers)
        cut = rule is not None and rule.kind == "drop_connection"
        self._send(status, payload, headers=headers, cut=cut)

    def _send_padded(self, status: int, payload: bytes, size: int, headers: dict[str, str]) -> None:
        """``payload`` with whitespace before its last byte up to ``size`` bytes (still
        valid JSON), written in chunks: the replay never holds the whole body."""
        pad = max(size - len(payload), 0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload) + pad))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        chunk = b" " * 65536
        try:
            self.wfile.write(payload[:-1])
            while pad > 0:
                self.wfile.write(chunk[: min(pad, len(chunk))])
                pad -= len(chunk)
            self.wfile.write(payload[-1:])
        except OSError:  # the client stopped reading (it refused the body): expected
            self._hang_up()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.ws: WsStreams | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timed-out request) is expected; others are logged."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return
        log.exception("replay exchange: error answering %s", client_address)


class ReplayServer:
    """The replay exchange on ``host:port`` (port 0: one the OS picks), in a thread.

    Use as a context manager, or ``start()`` / ``stop()``. :attr:`url` is what
    :func:`brain_lib.market.exchanges.make_exchange` takes as ``replay_url``.
    """

    def __init__(
        self,
        config: ReplayConfig | None = None,
        *,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or ReplayConfig()
        self.faults = faults if faults is not None else FaultPlan()
        self._app = _App(self.config, self.faults)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ws = WsStreams(self._app.data, self.config, self._app.now, host=host)

    @property
    def ws(self) -> WsStreams:
        """The websocket streams (liquidations): their faults, clock and sent log."""
        return self._ws

    @property
    def ws_url(self) -> str:
        """``ws://host:port`` of the websocket streams (ccxt.pro's paths below it)."""
        return self._ws.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the replay server is not running (call start())")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def data(self) -> SyntheticData:
        """The synthetic data it serves (tests compare the warehouse against it)."""
        return self._app.data

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests answered so far (the newest 100,000), in order."""
        with self._app._log_lock:
            return list(self._app.requests)

    def requests_to(self, path_part: str) -> list[RequestRecord]:
        """The logged requests whose path contains ``path_part``."""
        return [r for r in self.requests if path_part in r.path]

    def now(self) -> int:
        """The replay's clock (epoch ms)."""
        return self._app.now()

    def set_now(self, value: int | str | None, *, skew_s: float = 0.0) -> None:
        """Move the replay's clock (None: follow the wall clock), ``skew_s`` seconds
        ahead of that (negative: behind), as an exchange whose clock is off."""
        self._app.set_now(value, skew_s)

    def start(self) -> ReplayServer:
        if self._server is None:
            self._ws.start()
            self._server = _Server(self._address, self._app)
            self._server.ws = self._ws
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="brain-replay-exchange",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None
        self._ws.stop()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    config: ReplayConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the replay exchange in the foreground until interrupted (Ctrl-C)."""
    server = ReplayServer(config, host=host, port=port).start()
    try:
        if ready is not None:
            ready(server.url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Brain's replay exchange (binance, bybit, okx).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 lets the OS pick one")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--now", default=None, help="fixed clock (ISO time); default wall clock")
    parser.add_argument("--data-start", default="2025-01-01T00:00:00Z")
    parser.add_argument("--bases", default="BTC,ETH,SOL", help="listed base assets")
    parser.add_argument("--source", choices=("synthetic", "recorded"), default="synthetic")
    parser.add_argument("--autocorr", type=float, default=0.0, help="of the synthetic returns")
    parser.add_argument("--trend", type=float, default=0.0, help="planted trend (bar vols)")
    parser.add_argument("--skew-s", type=float, default=0.0, help="clock skew (s, + ahead)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """``python -m brain_lib.market.replay``: serve until Ctrl-C; prints the URL."""
    args = _parse_args(argv)
    config = ReplayConfig(
        seed=args.seed,
        now=args.now,
        data_start=args.data_start,
        bases=tuple(b.strip().upper() for b in args.bases.split(",") if b.strip()),
        source=args.source,
        autocorr=args.autocorr,
        trend=args.trend,
        skew_s=args.skew_s,
    )
    serve(config, host=args.host, port=args.port, ready=lambda url: print(url, flush=True))


if __name__ == "__main__":
    main()
