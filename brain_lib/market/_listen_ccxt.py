"""The listener's side of ccxt.pro (:mod:`brain_lib.market.listen`): which exchanges have
websocket liquidations, the subclass that hands every parsed liquidation and every broken
frame to the listener, pointing the websockets at the replay exchange, and the symbol a
liquidation stream is for."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from brain_lib.errors import ConfigError, UnknownExchangeError, UnknownSymbolError
from brain_lib.market.exchanges import EXCHANGES, exchange_profile

__all__ = ["check_exchange", "resolve_perpetual"]


class _Listener(Protocol):
    def _take(self, parsed: dict[str, Any], raw: Any) -> None: ...
    def _reject(self, raw: Any, reason: str, symbol: str | None = None) -> None: ...
    def _on_connected(self) -> None: ...


def _pro_class(ccxt_class: str) -> type:
    import ccxt.pro

    cls = getattr(ccxt.pro, ccxt_class, None)
    if cls is None:
        raise UnknownExchangeError(f"ccxt.pro has no exchange {ccxt_class!r}")
    return cls


def check_exchange(exchange_id: str) -> None:
    """Refuse an exchange Brain cannot listen to, in one line naming why."""
    import ccxt.pro

    if exchange_id not in EXCHANGES:
        cls = getattr(ccxt.pro, exchange_id, None)
        if cls is not None:
            has = cls().has
            if not (has.get("watchLiquidations") or has.get("watchLiquidationsForSymbols")):
                raise UnknownExchangeError(
                    f"{exchange_id} publishes no liquidations over websocket in ccxt.pro "
                    f"(has['watchLiquidations'] is {has.get('watchLiquidations')!r}); Brain "
                    f"listens to {', '.join(EXCHANGES)}"
                )
        exchange_profile(exchange_id)  # raises: unknown exchange
    has = _pro_class(exchange_profile(exchange_id).ccxt_class)().has
    if not (has.get("watchLiquidations") or has.get("watchLiquidationsForSymbols")):
        raise UnknownExchangeError(f"ccxt.pro's {exchange_id} has no websocket liquidations")


class _Sink:
    """Where the hooked exchange object hands what it parsed (same event loop)."""

    def __init__(self, listener: _Listener) -> None:
        self.listener = listener

    def liquidation(self, parsed: dict[str, Any], raw: Any) -> None:
        self.listener._take(parsed, raw)

    def reject(self, raw: Any, reason: str, symbol: str | None = None) -> None:
        self.listener._reject(raw, reason, symbol)

    def connected(self) -> None:
        self.listener._on_connected()


def _listening_exchange(ccxt_class: str, sink: _Sink, allowed_prefixes: tuple[str, ...]) -> Any:
    """A ccxt.pro exchange object whose parsed liquidations and broken frames go to
    ``sink``; with ``allowed_prefixes`` set (replay mode) it refuses other addresses."""
    base = _pro_class(ccxt_class)

    class Listening(base):  # type: ignore[misc, valid-type]
        def client(self, url: str) -> Any:
            if allowed_prefixes and not url.startswith(allowed_prefixes):
                raise ConfigError(
                    f"refusing a websocket to {urlsplit(url).netloc or url}: this listener "
                    f"only talks to the replay exchange"
                )
            client = super().client(url)
            if not getattr(client, "_brain_guarded", False):
                decode = client.handle_text_or_binary_message

                def guarded(data: Any) -> Any:
                    try:
                        return decode(data)
                    except ValueError as exc:  # orjson's and json's decode errors
                        sink.reject(data, f"not valid JSON: {exc}")
                        return None

                client.handle_text_or_binary_message = guarded
                client._brain_guarded = True
            return client

        def handle_message(self, client: Any, message: Any) -> Any:
            if isinstance(message, str) and message.strip().lower() == "pong":
                return super().handle_message(client, message)
            if not isinstance(message, dict | list):
                sink.reject(message, "not JSON")
                return None
            try:
                return super().handle_message(client, message)
            except Exception as exc:
                sink.reject(message, f"ccxt could not read it: {type(exc).__name__}: {exc}")
                return None

        def parse_ws_liquidation(self, liquidation: Any, market: Any = None) -> Any:
            details = liquidation.get("details") if isinstance(liquidation, dict) else None
            if isinstance(details, list) and len(details) > 1:
                # okx: one entry per instrument, one detail per liquidation
                parsed = None
                for detail in details:
                    one = {**liquidation, "details": [detail]}
                    parsed = super().parse_ws_liquidation(one, market)
                    sink.liquidation(parsed, one)
                return parsed
            parsed = super().parse_ws_liquidation(liquidation, market)
            sink.liquidation(parsed, liquidation)
            return parsed

        def on_connected(self, client: Any, message: Any = None) -> Any:
            sink.connected()
            return super().on_connected(client, message)

    Listening.__name__ = f"Listening_{ccxt_class}"
    return Listening


def _replay_ws_root(replay_url: str) -> str:
    """``ws://host:port`` of a replay exchange's websocket streams."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(replay_url.rstrip("/") + "/__replay__/ws", timeout=5) as r:
            found = json.loads(r.read()).get("url")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the replay exchange at {replay_url} did not answer: {exc}") from None
    if not found:
        raise ConfigError(f"the replay exchange at {replay_url} serves no websocket streams")
    return str(found)


def _point_ws_at(exchange: Any, ws_root: str) -> None:
    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, str):
            return ws_root + urlsplit(value.replace("{hostname}", "replay")).path.rstrip("/")
        return value

    exchange.urls = dict(exchange.urls)
    exchange.urls["api"] = dict(exchange.urls["api"])
    exchange.urls["api"]["ws"] = rewrite(exchange.urls["api"]["ws"])


def resolve_perpetual(markets: dict[str, Any], symbol: str, exchange_id: str) -> str:
    """The unified symbol of the perpetual whose liquidations ``symbol`` means: itself
    when it is a listed swap, ``B/Q:Q`` for a spot ``B/Q``; else a clear error."""
    market = markets.get(symbol)
    if market is not None and market.get("swap"):
        return symbol
    if ":" not in symbol and "/" in symbol:
        perp = f"{symbol}:{symbol.split('/')[1]}"
        if markets.get(perp, {}).get("swap"):
            return perp
    swaps = sorted(s for s, m in markets.items() if m.get("swap"))
    listed = ", ".join(swaps[:6]) + (" ..." if len(swaps) > 6 else "")
    raise UnknownSymbolError(
        f"unknown symbol {symbol!r} on {exchange_id}: liquidations are published for "
        f"perpetual swaps only, and {exchange_id} lists none by that name "
        f"({len(swaps)} listed: {listed})"
    )
