"""The exchanges Brain collects from, as configured ccxt objects.

One Brain exchange id per ccxt exchange class; the market type comes from the unified
symbol (``BTC/USDT`` is binance spot, ``BTC/USDT:USDT`` the USD-M perpetual):

=========  ============  ==================================================
id         ccxt class    markets loaded (ccxt ``options['fetchMarkets']``)
=========  ============  ==================================================
binance    binance       spot and USD-M (linear) perpetuals
bybit      bybit         linear perpetuals
okx        okx           swaps
=========  ============  ==================================================

Every object has ccxt's rate limiter on and uses public endpoints only: no API key is
read, so none can leak into a log. With ``replay_url`` every entry of ``urls['api']``
points at the replay exchange (:mod:`brain_lib.market.replay`), and a guard refuses any
request to another address, so a replay run can never reach a real exchange.

A 200 answer that is not JSON (a proxy's HTML page, an empty body, random bytes, JSON
cut in the middle) raises ccxt's ``BadResponse`` instead of reaching the parsers, which
would read it as an empty page; its snippet in the message is printable text only.

Every answer is bounded: a body larger than ``brain_body_limit`` bytes (default
:data:`MAX_BODY_BYTES`; the collector lowers it per page with :func:`body_limit`) is
refused with ``BadResponse`` as soon as its ``Content-Length`` says so, or once that many
(decoded) bytes have been read, so that no answer can take more memory than that.

The objects are instrumented (:class:`ExchangeTimings`): time in HTTP (including the
JSON decode), in the JSON decode alone and in the rate limiter's sleeps, so that the
collection can tell ccxt's parsing apart from the network and the warehouse.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from brain_lib.errors import ConfigError, UnknownExchangeError

__all__ = [
    "EXCHANGES",
    "MAX_BODY_BYTES",
    "ExchangeProfile",
    "ExchangeTimings",
    "body_limit",
    "exchange_profile",
    "make_exchange",
    "point_at_replay",
]


@dataclass(frozen=True)
class ExchangeProfile:
    """What Brain needs to know about one exchange beyond ccxt's ``has``.

    ``page_limits``: rows asked for per request and dataset (at most the exchange's
    documented maximum); ``oi_periods``: the open-interest periods it samples;
    ``retention``: how far back a dataset reaches (None: no documented limit);
    ``until_params``: per dataset, the parameter that bounds a request's end and whether
    the exchange reads it as exclusive (then the collector asks for one millisecond
    more); default ccxt's inclusive ``until``; ``funding_interval_field``: where the market's
    funding interval (minutes) is in ccxt's ``market['info']``, when given.
    """

    id: str
    ccxt_class: str
    market_types: tuple[str, ...]
    page_limits: MappingProxyType[str, int]
    oi_periods: tuple[str, ...]
    retention: MappingProxyType[str, timedelta] = field(
        default_factory=lambda: MappingProxyType({})
    )
    until_params: MappingProxyType[str, tuple[str, bool]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    funding_interval_field: str | None = None


EXCHANGES: MappingProxyType[str, ExchangeProfile] = MappingProxyType(
    {
        "binance": ExchangeProfile(
            id="binance",
            ccxt_class="binance",
            market_types=("spot", "linear"),
            page_limits=MappingProxyType(
                {"ohlcv": 1000, "funding": 1000, "oi": 500, "liquidations": 1000}
            ),
            oi_periods=("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"),
            # /futures/data/openInterestHist keeps the latest 30 days only
            retention=MappingProxyType({"oi": timedelta(days=30)}),
        ),
        "bybit": ExchangeProfile(
            id="bybit",
            ccxt_class="bybit",
            market_types=("linear",),
            page_limits=MappingProxyType(
                {"ohlcv": 1000, "funding": 200, "oi": 200, "liquidations": 200}
            ),
            oi_periods=("5m", "15m", "30m", "1h", "4h", "1d"),
            funding_interval_field="fundingInterval",
        ),
        "okx": ExchangeProfile(
            id="okx",
            ccxt_class="okx",
            market_types=("swap",),
            page_limits=MappingProxyType(
                {"ohlcv": 100, "funding": 100, "oi": 100, "liquidations": 100}
            ),
            oi_periods=("5m", "1h", "1d"),
            # funding-rate-history reaches back three months
            retention=MappingProxyType({"funding": timedelta(days=90)}),
            # fetchOHLCV passes `until` as okx's exclusive `after`; fetchFundingRateHistory
            # has no `until`, so okx's own exclusive `after` goes through params
            until_params=MappingProxyType({"ohlcv": ("until", True), "funding": ("after", True)}),
        ),
    }
)


def exchange_profile(exchange_id: str) -> ExchangeProfile:
    """The profile of a supported exchange; :class:`UnknownExchangeError` otherwise."""
    profile = EXCHANGES.get(exchange_id)
    if profile is None:
        raise UnknownExchangeError(
            f"unknown exchange {exchange_id!r}: Brain collects from {', '.join(EXCHANGES)}"
        )
    return profile


MAX_BODY_BYTES = 64 * 1024 * 1024  # any answer: real market lists run to a few MB
_READ_CHUNK = 64 * 1024


def _mib(nbytes: int) -> str:
    return f"{nbytes / 1024 / 1024:.1f} MiB"


def _printable(text: str, limit: int = 120) -> str:
    """One line of printable characters (no NUL or control bytes reach a log or the
    warehouse), at most ``limit`` long."""
    flat = " ".join(text.split())
    return "".join(ch if ch.isprintable() else "?" for ch in flat)[:limit]


def _bound_body(exchange: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
    """A ``requests`` response hook (it runs before the body is read): read the body,
    refusing it once it is past ``exchange.brain_body_limit`` bytes."""
    import ccxt

    limit = int(getattr(exchange, "brain_body_limit", MAX_BODY_BYTES))
    where = (
        f"{getattr(exchange, 'id', 'exchange')} {response.request.method} "
        + str(response.url).split("?")[0]
    )
    declared = str(response.headers.get("Content-Length") or "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise ccxt.BadResponse(
            f"{where} answered {_mib(int(declared))}, more than the {_mib(limit)} "
            f"one answer may hold: refused unread"
        )
    chunks, total = [], 0
    for chunk in response.iter_content(_READ_CHUNK):
        total += len(chunk)
        if total > limit:
            response.close()
            raise ccxt.BadResponse(
                f"{where} answered more than the {_mib(limit)} one answer may hold: "
                f"refused after reading that much"
            )
        chunks.append(chunk)
    response._content = b"".join(chunks)
    response._content_consumed = True
    return response


@contextlib.contextmanager
def body_limit(exchange: Any, nbytes: int) -> Iterator[None]:
    """Bound the answers of the requests made inside (hold the exchange's lock)."""
    before = getattr(exchange, "brain_body_limit", MAX_BODY_BYTES)
    exchange.brain_body_limit = min(nbytes, before)
    try:
        yield
    finally:
        exchange.brain_body_limit = before


@dataclass
class ExchangeTimings:
    """Running totals of one exchange object (seconds, and requests made)."""

    requests: int = 0
    http_s: float = 0.0
    json_s: float = 0.0
    throttle_s: float = 0.0

    def snapshot(self) -> ExchangeTimings:
        return ExchangeTimings(self.requests, self.http_s, self.json_s, self.throttle_s)


class _Instrumented:
    """Mixed in front of a ccxt class: times HTTP, JSON decoding and throttling, and
    refuses requests outside ``brain_allowed_prefix`` (set in replay mode)."""

    brain_allowed_prefix: str | None = None
    brain_body_limit: int = MAX_BODY_BYTES
    brain_timings: ExchangeTimings

    def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        prefix = self.brain_allowed_prefix
        if prefix is not None and not url.startswith(prefix):
            raise ConfigError(
                f"refusing a request to {urlsplit(url).netloc or url}: "
                f"this exchange object only talks to the replay exchange at {prefix}"
            )
        start = time.perf_counter()
        try:
            result = super().fetch(url, method, headers, body)  # type: ignore[misc]
        finally:
            self.brain_timings.requests += 1
            self.brain_timings.http_s += time.perf_counter() - start
        if isinstance(result, str | bytes):
            # ccxt hands a non-JSON 200 answer (an HTML page from a proxy, an empty body)
            # to the parsers as text, which then yield an empty page: refuse it here
            import ccxt

            text = result.decode(errors="replace") if isinstance(result, bytes) else result
            snippet = _printable(text) or "an empty body"
            raise ccxt.BadResponse(
                f"{getattr(self, 'id', 'exchange')} {method} {url.split('?')[0]} answered "
                f"with something that is not JSON: {snippet}"
            )
        return result

    def parse_json(self, http_response: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().parse_json(http_response)  # type: ignore[misc]
        finally:
            self.brain_timings.json_s += time.perf_counter() - start

    def throttle(self, cost: Any = None) -> Any:
        start = time.perf_counter()
        try:
            return super().throttle(cost)  # type: ignore[misc]
        finally:
            self.brain_timings.throttle_s += time.perf_counter() - start


_CLASSES: dict[str, type] = {}


def _instrumented_class(ccxt_class: str) -> type:
    if ccxt_class not in _CLASSES:
        import ccxt

        base = getattr(ccxt, ccxt_class)
        _CLASSES[ccxt_class] = type(f"Brain_{ccxt_class}", (_Instrumented, base), {})
    return _CLASSES[ccxt_class]


def point_at_replay(exchange: Any, replay_url: str) -> None:
    """Point every ``urls['api']`` entry at ``replay_url``, keeping each entry's path
    (``https://fapi.binance.com/fapi/v1`` -> ``<replay_url>/fapi/v1``), and make the
    object refuse any other address."""
    parts = urlsplit(replay_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"replay url must look like http://127.0.0.1:PORT (got {replay_url!r})")
    root = f"{parts.scheme}://{parts.netloc}"

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rewrite(item) for key, item in value.items()}
        if isinstance(value, str):
            return root + urlsplit(value).path.rstrip("/")
        return value

    exchange.urls = dict(exchange.urls)
    exchange.urls["api"] = rewrite(exchange.urls["api"])
    exchange.brain_allowed_prefix = root + "/"


def make_exchange(
    exchange_id: str,
    *,
    replay_url: str | None = None,
    timeout_ms: int = 10_000,
    rate_limit_ms: float | None = None,
) -> Any:
    """A ccxt exchange object for public market data, rate limiter on.

    ``replay_url``: talk to the replay exchange instead of the real one.
    ``rate_limit_ms``: override ccxt's delay between requests (ccxt's default for the
    exchange otherwise; the limiter itself stays on). Raises
    :class:`UnknownExchangeError` for an exchange Brain does not collect from.
    """
    profile = exchange_profile(exchange_id)
    cls = _instrumented_class(profile.ccxt_class)
    exchange = cls(
        {
            "enableRateLimit": True,
            "timeout": timeout_ms,
            "options": {
                "fetchMarkets": {"types": list(profile.market_types)},
                "adjustForTimeDifference": False,
            },
        }
    )
    exchange.brain_timings = ExchangeTimings()
    exchange.session.hooks["response"].append(functools.partial(_bound_body, exchange))
    if rate_limit_ms is not None:
        exchange.rateLimit = rate_limit_ms
    if replay_url is not None:
        point_at_replay(exchange, replay_url)
    return exchange
