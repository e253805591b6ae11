"""The replay exchange's websocket streams: forced liquidations as binance, bybit and okx
publish them (see :mod:`brain_lib.market.replay`).

============  ==========================================  ==============================
exchange      path (ccxt.pro's, pointed here)             subscription
============  ==========================================  ==============================
binance       ``/market/ws/<n>`` (also ``/ws``)            ``<symbol>@forceOrder``,
                                                          ``!forceOrder@arr``
bybit         ``/v5/public/linear``                        ``allLiquidation.<SYMBOL>``,
                                                          ``liquidation.<SYMBOL>``
okx           ``/ws/v5/public``                            ``liquidation-orders`` (SWAP)
============  ==========================================  ==============================

Each connection answers its subscriptions and pings in the exchange's own shapes and from
then on sends the liquidations of :meth:`SyntheticData.liquidations` as the streams'
clock passes them (``ReplayConfig.ws_start``/``ws_speed``): live only, as the real
streams; what a client misses while disconnected is gone. binance sends one event a
frame, bybit one frame per symbol and tick, okx one frame per tick with an entry per
instrument (several ``details`` when an instrument had several).

Every liquidation a connection was sent is logged (:attr:`WsStreams.sent`), so a test
can compare the warehouse with it. Faults (:class:`WsFaultRule`) are one-shot or
repeating, per exchange: ``drop`` aborts the TCP connection (no close frame), the
``malformed`` kinds send a broken frame in place of the next one (text that is not
JSON, JSON cut in the middle, a liquidation whose numbers are not numbers), and
``duplicate`` sends the next frame twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from brain_lib.market._replay_data import _OKX_CONTRACT_VALUE, Liquidation, _to_ms

if TYPE_CHECKING:
    from brain_lib.market._replay_data import ReplayConfig, SyntheticData

WS_FAULT_KINDS = (
    "drop",  # abort the TCP connection, no close frame
    "not_json",  # a frame of plain text
    "truncated",  # the next frame cut in the middle
    "bad_values",  # the next liquidation with a price and size that are not numbers
    "duplicate",  # the next frame sent twice
)

_TICK_S = 0.02


@dataclass
class WsFaultRule:
    """Break the stream of ``exchange`` (None: any) once ``after`` frames of liquidations
    went out on a connection; ``times``: how often it fires (None: every time);
    ``base``: only at a frame that carries that base asset (``bad_values`` then breaks
    that base's liquidation)."""

    kind: str
    exchange: str | None = None
    after: int = 0
    times: int | None = 1
    base: str | None = None
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in WS_FAULT_KINDS:
            raise ValueError(
                f"unknown websocket fault {self.kind!r} (known: {', '.join(WS_FAULT_KINDS)})"
            )


@dataclass(frozen=True)
class SentLiquidation:
    """One liquidation a connection was sent: ``quantity`` in base units, ``price`` and
    the numbers as the frame carried them; ``copy`` > 0 for a duplicate frame's copy."""

    exchange: str
    base: str
    ts: int
    side: str
    price: float
    quantity: float
    ref: str
    connection: int
    copy: int = 0


@dataclass
class _Conn:
    number: int
    exchange: str
    bases: set[str] = field(default_factory=set)
    all_markets: bool = False
    cursor: int = 0
    frames: int = 0

    @property
    def subscribed(self) -> bool:
        return self.all_markets or bool(self.bases)


class WsStreams:
    """The websocket server (a thread with its own event loop) of one replay exchange."""

    def __init__(
        self,
        data: SyntheticData,
        config: ReplayConfig,
        now: Callable[[], int],
        host: str = "127.0.0.1",
    ) -> None:
        self.data = data
        self.config = config
        self._now = now
        self._host = host
        self._lock = threading.Lock()
        self.faults: list[WsFaultRule] = []
        self.sent: list[SentLiquidation] = []
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._port = 0
        self._wall0 = 0.0
        self._market0: int | None = None
        self._live: set[Any] = set()

    # clock ---------------------------------------------------------------------
    def clock(self) -> int:
        """The streams' clock (epoch ms): ``ws_start`` plus ``ws_speed`` x the wall time
        since the first subscription, never past the replay's clock."""
        with self._lock:
            if self._market0 is None:  # the first subscriber starts it
                self._start_clock(self.config.ws_start)
            market0, wall0 = self._market0, self._wall0
        assert market0 is not None
        elapsed = (time.monotonic() - wall0) * 1000 * self.config.ws_speed
        return min(market0 + int(elapsed), self._now())

    @property
    def finished(self) -> bool:
        """True once the streams' clock has started and reached the replay's clock:
        nothing more will be sent (unless the replay's clock moves)."""
        with self._lock:
            started = self._market0 is not None
        return started and self.clock() >= self._now()

    def restart_clock(self, start: int | str | None = None) -> None:
        """Start the streams' clock again at ``start`` (None: the replay's clock)."""
        with self._lock:
            self._start_clock(start)

    def _start_clock(self, start: int | str | None) -> None:
        self._market0 = self._now() if start is None else _to_ms(start)
        self._wall0 = time.monotonic()

    # faults and the log ----------------------------------------------------------
    def add_fault(self, kind: str, exchange: str | None = None, **options: Any) -> WsFaultRule:
        rule = WsFaultRule(kind, exchange, **options)
        with self._lock:
            self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def sent_to(self, exchange: str) -> list[SentLiquidation]:
        with self._lock:
            return [s for s in self.sent if s.exchange == exchange]

    def _take_fault(self, conn: _Conn, bases: set[str]) -> WsFaultRule | None:
        with self._lock:
            for rule in self.faults:
                live = rule.times is None or rule.fired < rule.times
                mine = rule.exchange is None or rule.exchange == conn.exchange
                mine = mine and (rule.base is None or rule.base in bases)
                if live and mine and conn.frames >= rule.after:
                    rule.fired += 1
                    return rule
        return None

    # server --------------------------------------------------------------------
    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("the replay's websocket server is not running")
        return f"ws://{self._host}:{self._port}"

    def start(self) -> WsStreams:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="brain-replay-ws", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _open(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(self._handle, self._host, 0, ping_interval=None)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._loop = None
        self._thread = None
        self._port = 0

    # one connection --------------------------------------------------------------
    async def _handle(self, ws: Any) -> None:
        path = ws.request.path.split("?")[0]
        exchange = _exchange_of(path)
        if exchange is None:
            await ws.close(1008, f"the replay serves no websocket at {path}")
            return
        with self._lock:
            self.connections += 1
            number = self.connections
        conn = _Conn(number, exchange)
        sender = asyncio.ensure_future(self._send_loop(ws, conn))
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode(errors="replace")
                for reply in _answer(conn, text, self):
                    await ws.send(reply)
        except Exception:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    async def _send_loop(self, ws: Any, conn: _Conn) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            if not conn.subscribed:
                continue
            now = self.clock()
            if not conn.cursor:  # live from the subscription on, as the real streams
                conn.cursor = now
                continue
            if now <= conn.cursor:
                continue
            frames = _frames(conn, self, conn.cursor, now)
            conn.cursor = now
            for text, events in frames:
                rule = self._take_fault(conn, {e.base for e in events})
                if rule is not None and rule.kind == "drop":
                    ws.transport.abort()
                    return
                if rule is not None and rule.kind in ("not_json", "truncated", "bad_values"):
                    await ws.send(_broken(rule.kind, conn.exchange, text, rule.base))
                conn.frames += 1
                await ws.send(text)
                self._log(events, conn.number, 0)
                if rule is not None and rule.kind == "duplicate":
                    await ws.send(text)
                    self._log(events, conn.number, 1)

    def _log(self, events: Iterable[SentLiquidation], number: int, copy: int) -> None:
        with self._lock:
            for e in events:
                self.sent.append(
                    SentLiquidation(
                        e.exchange, e.base, e.ts, e.side, e.price, e.quantity, e.ref, number, copy
                    )
                )


def _exchange_of(path: str) -> str | None:
    if path.startswith("/v5/public/"):
        return "bybit"
    if path.startswith("/ws/v5/"):
        return "okx"
    if path.startswith(("/market/ws", "/ws", "/public/ws", "/stream", "/market/stream")):
        return "binance"
    return None


def _base_of(exchange: str, market_id: str, quote: str) -> str | None:
    if exchange == "okx":
        parts = market_id.split("-")
        ok = len(parts) == 3 and parts[1] == quote and parts[2] == "SWAP"
        return parts[0] if ok else None
    market_id = market_id.upper()
    return market_id[: -len(quote)] if market_id.endswith(quote) else None


def _answer(conn: _Conn, text: str, streams: WsStreams) -> list[str]:
    """The replies to one client message (subscriptions and pings)."""
    quote = streams.config.quote
    listed = set(streams.config.bases)
    if conn.exchange == "okx":
        if text == "ping":
            return ["pong"]
        msg = _json(text)
        if msg.get("op") != "subscribe":
            return [
                json.dumps({"event": "error", "code": "60012", "msg": f"Illegal request: {text}"})
            ]
        replies = []
        for arg in msg.get("args") or []:
            if arg.get("channel") == "liquidation-orders" and arg.get("instType") == "SWAP":
                conn.all_markets = True
                replies.append(json.dumps({"event": "subscribe", "arg": arg, "connId": "r1"}))
            else:
                replies.append(
                    json.dumps(
                        {"event": "error", "code": "60018", "msg": f"Wrong URL or channel:{arg}"}
                    )
                )
        return replies
    msg = _json(text)
    if conn.exchange == "bybit":
        op, req_id = msg.get("op"), msg.get("req_id")
        if op == "ping":
            reply = {"success": True, "ret_msg": "pong", "conn_id": "r1", "op": "ping"}
            return [json.dumps({**reply, "req_id": req_id} if req_id else reply)]
        if op != "subscribe":
            return [json.dumps({"success": False, "ret_msg": f"unknown op {op}", "op": op})]
        bad = []
        for topic in msg.get("args") or []:
            name, _, market_id = str(topic).partition(".")
            base = _base_of("bybit", market_id, quote)
            if name in ("allLiquidation", "liquidation") and base in listed:
                conn.bases.add(base)
            else:
                bad.append(str(topic))
        reply = {
            "success": not bad,
            "ret_msg": f"Invalid symbol :[{','.join(bad)}]" if bad else "",
            "conn_id": "r1",
            "op": "subscribe",
        }
        return [json.dumps({**reply, "req_id": req_id} if req_id else reply)]
    # binance
    if msg.get("method") != "SUBSCRIBE":
        return [json.dumps({"result": None, "id": msg.get("id")})]
    for stream in msg.get("params") or []:
        name = str(stream)
        if name == "!forceOrder@arr":
            conn.all_markets = True
        elif name.endswith("@forceOrder"):
            base = _base_of("binance", name.split("@")[0], quote)
            if base in listed:
                conn.bases.add(base)
    return [json.dumps({"result": None, "id": msg.get("id")})]


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _frames(
    conn: _Conn, streams: WsStreams, lo: int, hi: int
) -> list[tuple[str, list[SentLiquidation]]]:
    """The frames carrying the liquidations stamped in ``(lo, hi]`` on this connection."""
    config = streams.config
    bases = list(config.bases) if conn.all_markets else sorted(conn.bases)
    per_base: list[tuple[str, list[Liquidation]]] = []
    for base in bases:
        events = streams.data.liquidations(base, lo, hi)
        if events:
            per_base.append((base, events))
    if not per_base:
        return []
    quote, ex = config.quote, conn.exchange
    out: list[tuple[str, list[SentLiquidation]]] = []
    if ex == "binance":
        merged = sorted(((e.ts, base, e) for base, events in per_base for e in events))
        for _, base, e in merged:
            order = "SELL" if e.side == "long" else "BUY"
            qty = f"{e.quantity:.3f}"
            body = {
                "e": "forceOrder",
                "E": e.ts + 3,
                "o": {
                    "s": f"{base}{quote}",
                    "S": order,
                    "o": "LIMIT",
                    "f": "IOC",
                    "q": qty,
                    "p": _num(e.price * (0.995 if order == "SELL" else 1.005)),
                    "ap": _num(e.price),
                    "X": "FILLED",
                    "l": qty,
                    "z": qty,
                    "T": e.ts,
                },
            }
            one = SentLiquidation(ex, base, e.ts, e.side, e.price, float(qty), e.ref, 0)
            out.append((json.dumps(body, separators=(",", ":")), [one]))
        return out
    if ex == "bybit":
        for base, events in per_base:
            rows: list[dict[str, Any]] = []
            sent: list[SentLiquidation] = []
            for e in events:
                qty = f"{e.quantity:.3f}"
                # bybit names the side of the liquidated POSITION: Buy = a long
                rows.append(
                    {
                        "T": e.ts,
                        "s": f"{base}{quote}",
                        "S": "Buy" if e.side == "long" else "Sell",
                        "v": qty,
                        "p": _num(e.price),
                    }
                )
                sent.append(SentLiquidation(ex, base, e.ts, e.side, e.price, float(qty), e.ref, 0))
            body = {
                "topic": f"allLiquidation.{base}{quote}",
                "type": "snapshot",
                "ts": events[-1].ts + 5,
                "data": rows,
            }
            out.append((json.dumps(body, separators=(",", ":")), sent))
        return out
    # okx: sizes in contracts of ctVal base units
    entries: list[dict[str, Any]] = []
    okx_sent: list[SentLiquidation] = []
    for base, events in per_base:
        ct = _OKX_CONTRACT_VALUE.get(base, 1)
        details = []
        for e in events:
            contracts = max(round(e.quantity / ct), 1)
            details.append(
                {
                    "bkLoss": "0",
                    "bkPx": _num(e.price),
                    "ccy": "",
                    "posSide": e.side,
                    "side": "sell" if e.side == "long" else "buy",
                    "sz": str(contracts),
                    "ts": str(e.ts),
                }
            )
            in_base = contracts * ct
            okx_sent.append(SentLiquidation(ex, base, e.ts, e.side, e.price, in_base, e.ref, 0))
        family = f"{base}-{quote}"
        entries.append(
            {
                "details": details,
                "instFamily": family,
                "instId": f"{family}-SWAP",
                "instType": "SWAP",
                "uly": family,
            }
        )
    body = {"arg": {"channel": "liquidation-orders", "instType": "SWAP"}, "data": entries}
    out.append((json.dumps(body, separators=(",", ":")), okx_sent))
    return out


def _num(value: float) -> str:
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def _broken(kind: str, exchange: str, text: str, base: str | None = None) -> str:
    """A broken frame of ``kind`` made from the good frame ``text`` (``bad_values``: the
    liquidation of ``base`` when given, else the frame's first)."""
    if kind == "not_json":
        return "Server busy: " + base64.b64encode(text[:24].encode()).decode()
    if kind == "truncated":
        return text[: max(len(text) // 2, 2)]
    body = json.loads(text)
    if exchange == "binance":
        body["o"].update(ap="abc", l="-1", q="-1", z="-1")
    elif exchange == "bybit":
        body["data"] = [{**body["data"][0], "p": "abc", "v": "-1"}]
    else:
        entries = body["data"]
        entry = next((e for e in entries if base and e["instId"].startswith(f"{base}-")), None)
        entry = entry or entries[0]
        entry["details"] = [{**entry["details"][0], "bkPx": "abc", "sz": "-1"}]
        body["data"] = [entry]
    return json.dumps(body, separators=(",", ":"))
