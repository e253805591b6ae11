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
rows, rows dropped from a page, delays, and connections closed before or in the middle
of a body. Every request is logged (:attr:`ReplayServer.requests`).

Run it standalone: ``python -m brain_lib.market.replay --port 8765``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from statistics import NormalDist
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

from brain_lib.market._synthetic import generate_candles

log = logging.getLogger(__name__)

__all__ = [
    "FAULT_KINDS",
    "FaultPlan",
    "FaultRule",
    "Hole",
    "ReplayConfig",
    "ReplayServer",
    "SyntheticData",
    "exchange_of_path",
    "recorded_body",
    "recorded_files",
    "serve",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
FUNDING_INTERVAL_MS = 8 * HOUR_MS

FAULT_KINDS = (
    "rate_limit",  # the exchange's real rate-limit answer (status and body)
    "http_error",  # a JSON-less error status (default 500) with an empty body
    "html",  # an HTML error page (default 502, e.g. a proxy's Bad Gateway)
    "missing_field",  # one row loses a field (a dict key, or the tail of a list row)
    "shuffle",  # the rows of the page in reverse order (timestamps out of order)
    "duplicate",  # the first row repeated with a different value
    "drop_rows",  # the middle third of the page's rows left out
    "delay",  # answer after `seconds`
    "drop_connection",  # headers and half of the body, then the connection closes
    "reset",  # the connection closes without an answer
)

_OI_BASE = {"BTC": 80_000.0, "ETH": 1_000_000.0, "SOL": 10_000_000.0, "BNB": 2_000_000.0}
_OKX_CONTRACT_VALUE = {"BTC": 0.01, "ETH": 0.1}
_START_PRICES = {"BTC": 30_000.0, "ETH": 2_000.0, "SOL": 100.0, "BNB": 300.0, "XRP": 0.5}


# ------------------------------------------------------------------ recorded bodies


def recorded_files() -> dict[str, list[str]]:
    """Names of the recorded bodies per exchange (file names without ``.json``)."""
    root = resources.files("brain_lib.market") / "recorded"
    out: dict[str, list[str]] = {}
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if folder.is_dir() and not folder.name.startswith(("_", ".")):
            names = [p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")]
            out[folder.name] = sorted(names)
    return out


@cache
def _recorded_text(exchange: str, name: str) -> str:
    path = resources.files("brain_lib.market") / "recorded" / exchange / f"{name}.json"
    return path.read_text(encoding="utf-8")


def recorded_body(exchange: str, name: str) -> Any:
    """A recorded body, parsed (a fresh copy on every call)."""
    return json.loads(_recorded_text(exchange, name))


def recorded_name(path: str) -> str:
    """File name of the recorded body of a REST path: ``/fapi/v1/klines`` -> ``fapi_v1_klines``."""
    return path.strip("/").replace("/", "_")


# ------------------------------------------------------------------ config and faults


@dataclass(frozen=True)
class Hole:
    """A window the exchange itself has no data for (an outage): rows stamped in
    ``[start_ms, end_ms)`` are never served. ``dataset`` is ``ohlcv``, ``funding`` or
    ``oi``; ``base`` limits it to one base asset (None: all)."""

    dataset: str
    start_ms: int
    end_ms: int
    base: str | None = None


@dataclass(frozen=True)
class ReplayConfig:
    """What the replay exchange serves.

    ``now``: the replay's clock as epoch ms or an ISO timestamp (None: the wall clock);
    ``data_start``: the first bar of every series, a midnight UTC (synthetic data is
    prefix-stable from there); ``bases``: the listed base assets, quoted in ``quote``
    (spot and perpetuals); ``seed``, ``drift``, ``autocorr``, ``trend``,
    ``trend_half_life``: the synthetic market's settings
    (:class:`~brain_lib.market.SyntheticMarket`), e.g. the demo's planted trend.
    """

    seed: int = 7
    data_start: str = "2025-01-01T00:00:00Z"
    now: int | str | None = None
    bases: tuple[str, ...] = ("BTC", "ETH", "SOL")
    quote: str = "USDT"
    source: str = "synthetic"
    holes: tuple[Hole, ...] = ()
    drift: float = 0.0
    autocorr: float = 0.0
    trend: float = 0.0
    trend_half_life: float = 48.0

    def __post_init__(self) -> None:
        if self.source not in ("synthetic", "recorded"):
            raise ValueError(f"source must be 'synthetic' or 'recorded' (got {self.source!r})")
        if _to_ms(self.data_start) % DAY_MS:
            raise ValueError(
                f"data_start must be a midnight UTC, so that every timeframe's bars sit on "
                f"the exchanges' grid (got {self.data_start!r})"
            )


@dataclass
class FaultRule:
    """Serve ``kind`` instead of the normal answer to matching requests.

    A request matches when ``path`` is a substring of its path ("" matches every path)
    and, when set, ``exchange`` is the exchange the path belongs to. The first ``after``
    matching requests are answered normally, the next ``times`` get the fault (None:
    every one from then on).
    """

    kind: str
    path: str = ""
    exchange: str | None = None
    times: int | None = 1
    after: int = 0
    status: int | None = None
    field: str | None = None
    seconds: float = 0.0
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(FAULT_KINDS)})")

    def matches(self, exchange: str | None, path: str) -> bool:
        return self.path in path and (self.exchange is None or self.exchange == exchange)

    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class FaultPlan:
    """An ordered, thread-safe list of :class:`FaultRule`; the first live match fires."""

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = list(rules or [])

    def add(self, kind: str, path: str = "", **options: Any) -> FaultRule:
        """Append a rule; returns it (its ``fired`` counter tells how often it fired)."""
        rule = FaultRule(kind=kind, path=path, **options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, exchange: str | None, path: str) -> FaultRule | None:
        """The rule that fires for this request, counting it, or None."""
        with self._lock:
            for rule in self.rules:
                if rule.exhausted() or not rule.matches(exchange, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    continue
                rule.fired += 1
                return rule
        return None

    @classmethod
    def from_json(cls, items: list[dict[str, Any]]) -> FaultPlan:
        keys = {"kind", "path", "exchange", "times", "after", "status", "field", "seconds"}
        return cls([FaultRule(**{k: v for k, v in item.items() if k in keys}) for item in items])


@dataclass(frozen=True)
class RequestRecord:
    """One request the replay answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    fault: str | None


# ------------------------------------------------------------------ synthetic data


def timeframe_ms(timeframe: str) -> int:
    """Length of a ccxt-style timeframe (``5m``, ``1h``, ``1d``) in ms."""
    unit, amount = timeframe[-1], int(timeframe[:-1])
    scale = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
    if unit not in scale or amount < 1:
        raise ValueError(f"unsupported timeframe {timeframe!r}")
    return amount * scale[unit]


def _to_ms(value: int | str | pd.Timestamp) -> int:
    if isinstance(value, int):
        return value
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _unit_noise(*parts: object) -> float:
    """A deterministic standard-normal draw from the parts (no RNG state)."""
    h = zlib.crc32("|".join(map(str, parts)).encode())
    return NormalDist().inv_cdf((h + 0.5) / 2**32)


class SyntheticData:
    """Deterministic market data of the replay; every value depends only on the config.

    Candles of each (base, timeframe) are one synthetic path from ``data_start``; a
    value is the same whichever window asks for it. Funding prints every 8 hours
    (00, 08, 16 UTC) with a rate that follows the last 8 hours' return; open interest
    is a slow weekly wave with noise, valued at the hour's open.
    """

    def __init__(self, config: ReplayConfig) -> None:
        self.config = config
        self.start_ms = _to_ms(config.data_start)
        self._lock = threading.Lock()
        self._paths: dict[tuple[str, str], np.ndarray] = {}

    # candles -----------------------------------------------------------------
    def _path(self, base: str, timeframe: str, bars: int) -> np.ndarray:
        """The first ``bars`` closed bars: rows of (ts, open, high, low, close, volume)."""
        key = (base, timeframe)
        with self._lock:
            have = self._paths.get(key)
            if have is None or len(have) < bars:
                size = max(bars, 2 * len(have) if have is not None else 1024)
                frame = generate_candles(
                    f"{base}/{self.config.quote}",
                    size,
                    seed=self.config.seed,
                    start=self.config.data_start,
                    timeframe=timeframe,
                    drift=self.config.drift,
                    autocorr=self.config.autocorr,
                    trend=self.config.trend,
                    trend_half_life=self.config.trend_half_life,
                )
                ts = frame["ts"].astype("int64").to_numpy() // 1_000_000
                cols = [frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]
                have = np.column_stack([ts.astype("float64"), *cols])
                self._paths[key] = have
            return have[:bars]

    def hole_span(self) -> int:
        """Total length of the holes (ms): how much further back a "newest N" page must
        look to still find N rows."""
        return sum(h.end_ms - h.start_ms for h in self.config.holes)

    def _in_hole(self, dataset: str, base: str, ts: int) -> bool:
        return any(
            h.dataset == dataset
            and (h.base is None or h.base == base)
            and h.start_ms <= ts < h.end_ms
            for h in self.config.holes
        )

    def candles(
        self, base: str, timeframe: str, lo: int, hi: int, now: int
    ) -> list[tuple[int, float, float, float, float, float, bool]]:
        """Bars opened in ``[lo, hi]`` (ms, inclusive) up to ``now``, oldest first, as
        (ts, open, high, low, close, volume, closed). The bar in progress at ``now`` is
        included with partial values (closed=False), as exchanges do."""
        step = timeframe_ms(timeframe)
        first = max(0, -(-(lo - self.start_ms) // step))
        last = min((hi - self.start_ms) // step, (now - self.start_ms) // step)
        if last < first:
            return []
        path = self._path(base, timeframe, int(last) + 1)
        out = []
        for i in range(int(first), int(last) + 1):
            ts = self.start_ms + i * step
            if self._in_hole("ohlcv", base, ts):
                continue
            _, o, h, lw, c, v = (float(x) for x in path[i])
            closed = ts + step <= now
            if not closed:  # the forming bar: part of the move and volume so far
                frac = max((now - ts) / step, 1e-3)
                c = o + (c - o) * frac
                h = max(o, c) + (h - max(o, path[i][4])) * frac
                lw = min(o, c) - (min(o, path[i][4]) - lw) * frac
                v *= frac
            out.append((ts, o, h, lw, c, v, closed))
        return out

    def hourly_close(self, base: str, ts: int) -> float:
        """Close of the last hourly bar that closed at or before ``ts``."""
        i = (ts - self.start_ms) // HOUR_MS - 1
        if i < 0:
            return _START_PRICES.get(base, 100.0)
        return float(self._path(base, "1h", int(i) + 1)[int(i), 4])

    # funding -----------------------------------------------------------------
    def funding(self, base: str, lo: int, hi: int, now: int) -> list[tuple[int, float, float]]:
        """Funding prints stamped in ``[lo, hi]`` up to ``now``: (ts, rate, mark price)."""
        step = FUNDING_INTERVAL_MS
        first = max(0, -(-(lo - self.start_ms) // step))
        last = (min(hi, now) - self.start_ms) // step
        out = []
        for i in range(int(first), int(last) + 1):
            ts = self.start_ms + i * step
            if self._in_hole("funding", base, ts):
                continue
            mark = self.hourly_close(base, ts)
            before = self.hourly_close(base, ts - step)
            rate = 0.0001 + 0.05 * math.log(mark / before) + 0.00002 * _unit_noise(base, ts)
            out.append((ts, round(min(max(rate, -0.0075), 0.0075), 8), mark))
        return out

    # open interest -----------------------------------------------------------
    def open_interest(
        self, base: str, period_ms: int, lo: int, hi: int, now: int
    ) -> list[tuple[int, float, float]]:
        """Samples stamped in ``[lo, hi]`` up to ``now``: (ts, amount in base, value)."""
        first = max(0, -(-(lo - self.start_ms) // period_ms))
        last = (min(hi, now) - self.start_ms) // period_ms
        level = _OI_BASE.get(base, 5_000_000.0)
        out = []
        for i in range(int(first), int(last) + 1):
            ts = self.start_ms + i * period_ms
            if self._in_hole("oi", base, ts):
                continue
            wave = 1.0 + 0.2 * math.sin(2 * math.pi * ts / (7 * DAY_MS))
            amount = level * wave * math.exp(0.02 * _unit_noise("oi", base, ts))
            hour = ts - (ts - self.start_ms) % HOUR_MS
            price = self.hourly_close(base, hour)  # the hour's open (the last close)
            out.append((ts, amount, amount * price))
        return out


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _price_decimals(base: str) -> int:
    return 2 if _START_PRICES.get(base, 100.0) >= 10 else 5


# ------------------------------------------------------------------ exchange dialects


class ApiError(Exception):
    """An answer in the exchange's error format (status, body)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _q_int(query: dict[str, str], key: str) -> int | None:
    value = query.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        return None


class _Dialect:
    """Routes and formats of one exchange; subclasses fill in the endpoints."""

    name = ""
    routes: ClassVar[dict[str, str]] = {}  # path -> method name

    def __init__(self, data: SyntheticData, config: ReplayConfig) -> None:
        self.data = data
        self.config = config

    def owns(self, path: str) -> bool:
        return path in self.routes

    def handle(self, path: str, query: dict[str, str], now: int) -> tuple[int, Any]:
        if self.config.source == "recorded":
            return 200, recorded_body(self.name, recorded_name(path))
        try:
            return 200, getattr(self, self.routes[path])(query, now)
        except ApiError as exc:
            return exc.status, exc.body

    def rows(self, body: Any) -> list[Any] | None:
        """The list of records inside a body (what row faults act on)."""
        raise NotImplementedError

    def rate_limited(self, now: int) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def base_of(self, market_id: str | None) -> str:
        raise NotImplementedError


class _Binance(_Dialect):
    name = "binance"
    routes: ClassVar[dict[str, str]] = {
        "/api/v3/exchangeInfo": "spot_info",
        "/fapi/v1/exchangeInfo": "futures_info",
        "/api/v3/time": "time",
        "/fapi/v1/time": "time",
        "/api/v3/klines": "spot_klines",
        "/fapi/v1/klines": "futures_klines",
        "/fapi/v1/fundingRate": "funding",
        "/futures/data/openInterestHist": "open_interest",
    }
    oi_periods = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")

    def rows(self, body: Any) -> list[Any] | None:
        if isinstance(body, list):
            return body
        return body.get("symbols") if isinstance(body, dict) else None

    def rate_limited(self, now: int) -> tuple[int, Any, dict[str, str]]:
        return 429, recorded_body("binance", "error_rate_limit"), {"Retry-After": "1"}

    def invalid_symbol(self) -> ApiError:
        return ApiError(400, recorded_body("binance", "error_invalid_symbol"))

    def base_of(self, market_id: str | None) -> str:
        quote = self.config.quote
        if not market_id or not market_id.endswith(quote):
            raise self.invalid_symbol()
        base = market_id[: -len(quote)]
        if base not in self.config.bases:
            raise self.invalid_symbol()
        return base

    def _info(self, template_name: str, now: int) -> Any:
        body = recorded_body("binance", template_name)
        template = body["symbols"][0]
        symbols = []
        for base in self.config.bases:
            entry = copy.deepcopy(template)
            entry.update(symbol=f"{base}{self.config.quote}", baseAsset=base)
            entry["quoteAsset"] = self.config.quote
            if "pair" in entry:
                entry["pair"] = entry["symbol"]
                entry["marginAsset"] = self.config.quote
            symbols.append(entry)
        body["symbols"] = symbols
        body["serverTime"] = now
        return body

    def spot_info(self, query: dict[str, str], now: int) -> Any:
        return self._info("api_v3_exchangeInfo", now)

    def futures_info(self, query: dict[str, str], now: int) -> Any:
        return self._info("fapi_v1_exchangeInfo", now)

    def time(self, query: dict[str, str], now: int) -> Any:
        return {"serverTime": now}

    def _window(
        self, query: dict[str, str], now: int, default: int, cap: int, step: int
    ) -> tuple[int, int, int, bool]:
        """(lo, hi, limit, from_start): Binance pages run forward from startTime,
        otherwise they are the newest `limit` up to endTime (or now)."""
        limit = min(_q_int(query, "limit") or default, cap)
        start, end = _q_int(query, "startTime"), _q_int(query, "endTime")
        hi = now if end is None else end
        if start is not None:
            return start, hi, limit, True
        return hi - (limit + 1) * step - self.data.hole_span(), hi, limit, False

    def _klines(self, query: dict[str, str], now: int, cap: int, spot: bool) -> Any:
        base = self.base_of(query.get("symbol"))
        interval = query.get("interval", "")
        try:
            step = timeframe_ms(interval)
        except ValueError:
            raise ApiError(400, {"code": -1120, "msg": "Invalid interval."}) from None
        lo, hi, limit, forward = self._window(query, now, 500, cap, step)
        bars = self.data.candles(base, interval, lo, hi, now)
        bars = bars[:limit] if forward else bars[-limit:]
        dec = 8 if spot else _price_decimals(base)
        rows = []
        for ts, o, h, lw, c, v, _closed in bars:
            quote_volume = v * (o + c) / 2
            trades = 50 + int(v) % 1000
            rows.append(
                [
                    ts,
                    _fmt(o, dec),
                    _fmt(h, dec),
                    _fmt(lw, dec),
                    _fmt(c, dec),
                    _fmt(v, 8 if spot else 3),
                    ts + step - 1,
                    _fmt(quote_volume, 8 if spot else 5),
                    trades,
                    _fmt(v * 0.5, 8 if spot else 3),
                    _fmt(quote_volume * 0.5, 8 if spot else 5),
                    "0",
                ]
            )
        return rows

    def spot_klines(self, query: dict[str, str], now: int) -> Any:
        return self._klines(query, now, 1000, spot=True)

    def futures_klines(self, query: dict[str, str], now: int) -> Any:
        return self._klines(query, now, 1500, spot=False)

    def funding(self, query: dict[str, str], now: int) -> Any:
        base = self.base_of(query.get("symbol"))
        lo, hi, limit, forward = self._window(query, now, 100, 1000, FUNDING_INTERVAL_MS)
        prints = self.data.funding(base, lo, hi, now)
        prints = prints[:limit] if forward else prints[-limit:]
        return [
            {
                "symbol": f"{base}{self.config.quote}",
                "fundingTime": ts,
                "fundingRate": _fmt(rate, 8),
                "markPrice": _fmt(mark, 8),
            }
            for ts, rate, mark in prints
        ]

    def open_interest(self, query: dict[str, str], now: int) -> Any:
        base = self.base_of(query.get("symbol"))
        period = query.get("period", "")
        if period not in self.oi_periods:
            message = "Mandatory parameter 'period' was not sent, was empty/null, or malformed."
            raise ApiError(400, {"code": -1102, "msg": message})
        step = timeframe_ms(period)
        limit = min(_q_int(query, "limit") or 30, 500)
        start, end = _q_int(query, "startTime"), _q_int(query, "endTime")
        hi = now if end is None else end
        lo = hi - (limit + 1) * step - self.data.hole_span() if start is None else start
        # only the latest 30 days are kept; a window returns its newest `limit` samples
        lo = max(lo, now - 30 * DAY_MS)
        samples = self.data.open_interest(base, step, lo, hi, now)[-limit:]
        return [
            {
                "symbol": f"{base}{self.config.quote}",
                "sumOpenInterest": _fmt(amount, 8),
                "sumOpenInterestValue": _fmt(value, 8),
                "CMCCirculatingSupply": "19806134.000000",
                "timestamp": ts,
            }
            for ts, amount, value in samples
        ]


class _Bybit(_Dialect):
    name = "bybit"
    routes: ClassVar[dict[str, str]] = {
        "/v5/market/instruments-info": "instruments",
        "/v5/market/time": "time",
        "/v5/market/kline": "kline",
        "/v5/market/funding/history": "funding",
        "/v5/market/open-interest": "open_interest",
    }
    intervals: ClassVar[dict[str, str]] = {
        "1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h",
        "120": "2h", "240": "4h", "360": "6h", "720": "12h", "D": "1d",
    }  # fmt: skip
    oi_intervals: ClassVar[dict[str, str]] = {
        "5min": "5m",
        "15min": "15m",
        "30min": "30m",
        "1h": "1h",
        "4h": "4h",
        "1d": "1d",
    }

    def rows(self, body: Any) -> list[Any] | None:
        result = body.get("result") if isinstance(body, dict) else None
        return result.get("list") if isinstance(result, dict) else None

    def _envelope(self, result: Any, now: int) -> Any:
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now}

    def _error(self, code: int, message: str, now: int) -> ApiError:
        return ApiError(
            200, {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": now}
        )

    def rate_limited(self, now: int) -> tuple[int, Any, dict[str, str]]:
        body = recorded_body("bybit", "error_rate_limit")
        body["time"] = now
        return 200, body, {"X-Bapi-Limit-Status": "0"}

    def base_of(self, market_id: str | None) -> str:
        quote = self.config.quote
        if (
            market_id
            and market_id.endswith(quote)
            and market_id[: -len(quote)] in self.config.bases
        ):
            return market_id[: -len(quote)]
        body = recorded_body("bybit", "error_invalid_symbol")
        raise ApiError(200, body)

    def _category(self, query: dict[str, str], now: int) -> str:
        category = query.get("category", "")
        if category != "linear":
            raise self._error(10001, f"params error: category {category!r} is not served", now)
        return category

    def instruments(self, query: dict[str, str], now: int) -> Any:
        body = recorded_body("bybit", "v5_market_instruments-info")
        category = query.get("category", "")
        template = body["result"]["list"][0]
        entries = []
        if category == "linear" and query.get("status") != "PreLaunch":
            for base in self.config.bases:
                entry = copy.deepcopy(template)
                entry.update(symbol=f"{base}{self.config.quote}", baseCoin=base)
                entry.update(quoteCoin=self.config.quote, settleCoin=self.config.quote)
                entries.append(entry)
        body["result"].update(category=category, list=entries, nextPageCursor="")
        body["time"] = now
        return body

    def time(self, query: dict[str, str], now: int) -> Any:
        return self._envelope(
            {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}, now
        )

    @staticmethod
    def _newest(rows: list[Any], limit: int) -> list[Any]:
        """Bybit pages walk backwards from the end of the window: newest first."""
        return list(reversed(rows[-limit:]))

    def kline(self, query: dict[str, str], now: int) -> Any:
        category = self._category(query, now)
        base = self.base_of(query.get("symbol"))
        timeframe = self.intervals.get(query.get("interval", ""))
        if timeframe is None:
            raise self._error(10001, "params error: invalid interval", now)
        step = timeframe_ms(timeframe)
        limit = min(_q_int(query, "limit") or 200, 1000)
        end = _q_int(query, "end")
        hi = now if end is None else end
        lo = _q_int(query, "start")
        lo = hi - (limit + 1) * step - self.data.hole_span() if lo is None else lo
        dec = _price_decimals(base)
        bars = self._newest(self.data.candles(base, timeframe, lo, hi, now), limit)
        rows = [
            [str(ts), _fmt(o, dec), _fmt(h, dec), _fmt(lw, dec), _fmt(c, dec), _fmt(v, 3),
             _fmt(v * (o + c) / 2, 4)]
            for ts, o, h, lw, c, v, _closed in bars
        ]  # fmt: skip
        return self._envelope(
            {"symbol": f"{base}{self.config.quote}", "category": category, "list": rows}, now
        )

    def funding(self, query: dict[str, str], now: int) -> Any:
        category = self._category(query, now)
        base = self.base_of(query.get("symbol"))
        limit = min(_q_int(query, "limit") or 200, 200)
        start, end = _q_int(query, "startTime"), _q_int(query, "endTime")
        if start is not None and end is None:
            raise self._error(10001, "params error: endTime is required when startTime is set", now)
        hi = now if end is None else end
        span = (limit + 1) * FUNDING_INTERVAL_MS + self.data.hole_span()
        lo = hi - span if start is None else start
        prints = self._newest(self.data.funding(base, lo, hi, now), limit)
        rows = [
            {"symbol": f"{base}{self.config.quote}", "fundingRate": _fmt(rate, 8),
             "fundingRateTimestamp": str(ts)}
            for ts, rate, _mark in prints
        ]  # fmt: skip
        return self._envelope({"category": category, "list": rows}, now)

    def open_interest(self, query: dict[str, str], now: int) -> Any:
        category = self._category(query, now)
        base = self.base_of(query.get("symbol"))
        period = self.oi_intervals.get(query.get("intervalTime", ""))
        if period is None:
            raise self._error(10001, "params error: intervalTime is invalid", now)
        step = timeframe_ms(period)
        limit = min(_q_int(query, "limit") or 50, 200)
        start, end = _q_int(query, "startTime"), _q_int(query, "endTime")
        hi = now if end is None else end
        lo = hi - 10_000 * step if start is None else start
        samples = self.data.open_interest(base, step, lo, hi, now)
        offset = _q_int(query, "cursor") or 0
        newest_first = list(reversed(samples))
        page = newest_first[offset : offset + limit]
        more = offset + limit < len(newest_first)
        rows = [{"openInterest": _fmt(amount, 8), "timestamp": str(ts)} for ts, amount, _ in page]
        return self._envelope(
            {
                "symbol": f"{base}{self.config.quote}",
                "category": category,
                "list": rows,
                "nextPageCursor": str(offset + limit) if more else "",
            },
            now,
        )


class _Okx(_Dialect):
    name = "okx"
    routes: ClassVar[dict[str, str]] = {
        "/api/v5/public/instruments": "instruments",
        "/api/v5/public/time": "time",
        "/api/v5/market/candles": "candles",
        "/api/v5/market/history-candles": "history_candles",
        "/api/v5/public/funding-rate-history": "funding",
        "/api/v5/rubik/stat/contracts/open-interest-history": "open_interest",
    }
    oi_periods: ClassVar[dict[str, str]] = {"5m": "5m", "1H": "1h", "1D": "1d"}

    def rows(self, body: Any) -> list[Any] | None:
        return body.get("data") if isinstance(body, dict) else None

    def rate_limited(self, now: int) -> tuple[int, Any, dict[str, str]]:
        return 429, recorded_body("okx", "error_rate_limit"), {}

    def base_of(self, market_id: str | None) -> str:
        parts = (market_id or "").split("-")
        if (
            len(parts) == 3
            and parts[2] == "SWAP"
            and parts[1] == self.config.quote
            and parts[0] in self.config.bases
        ):
            return parts[0]
        raise ApiError(200, recorded_body("okx", "error_invalid_symbol"))

    @staticmethod
    def _ok(data: Any) -> Any:
        return {"code": "0", "msg": "", "data": data}

    def instruments(self, query: dict[str, str], now: int) -> Any:
        body = recorded_body("okx", "api_v5_public_instruments")
        template = body["data"][0]
        entries = []
        if query.get("instType") == "SWAP":
            for base in self.config.bases:
                entry = copy.deepcopy(template)
                family = f"{base}-{self.config.quote}"
                entry.update(instId=f"{family}-SWAP", instFamily=family, uly=family)
                entry.update(ctValCcy=base, settleCcy=self.config.quote)
                entry["ctVal"] = str(_OKX_CONTRACT_VALUE.get(base, 1))
                entries.append(entry)
        body["data"] = entries
        return body

    def time(self, query: dict[str, str], now: int) -> Any:
        return self._ok([{"ts": str(now)}])

    @staticmethod
    def _bar(bar: str) -> str:
        core = bar[:-3] if bar.endswith("utc") else bar
        if not core or core[-1] not in "mHD":
            raise ApiError(200, {"code": "51000", "msg": "Parameter bar error", "data": []})
        return core[:-1] + core[-1].lower()

    def _bounds(self, query: dict[str, str], now: int, span: int) -> tuple[int, int]:
        """OKX bounds are exclusive: ``after`` = older than, ``before`` = newer than."""
        after, before = _q_int(query, "after"), _q_int(query, "before")
        hi = now if after is None else after - 1
        lo = (hi - span - self.data.hole_span()) if before is None else before + 1
        return lo, hi

    def _candles(self, query: dict[str, str], now: int, recent_only: bool) -> Any:
        base = self.base_of(query.get("instId"))
        timeframe = self._bar(query.get("bar", "1m"))
        step = timeframe_ms(timeframe)
        limit = min(_q_int(query, "limit") or 100, 300)
        lo, hi = self._bounds(query, now, (limit + 1) * step)
        if recent_only:  # /market/candles keeps only the latest 1,440 bars
            lo = max(lo, now - 1440 * step)
        bars = self.data.candles(base, timeframe, lo, hi, now)[-limit:]
        ct_val = _OKX_CONTRACT_VALUE.get(base, 1.0)
        dec = _price_decimals(base)
        rows = [
            [str(ts), _fmt(o, dec), _fmt(h, dec), _fmt(lw, dec), _fmt(c, dec),
             _fmt(v / ct_val, 2), _fmt(v, 4), _fmt(v * (o + c) / 2, 5), "1" if closed else "0"]
            for ts, o, h, lw, c, v, closed in reversed(bars)
        ]  # fmt: skip
        return self._ok(rows)

    def candles(self, query: dict[str, str], now: int) -> Any:
        return self._candles(query, now, recent_only=True)

    def history_candles(self, query: dict[str, str], now: int) -> Any:
        return self._candles(query, now, recent_only=False)

    def funding(self, query: dict[str, str], now: int) -> Any:
        base = self.base_of(query.get("instId"))
        limit = min(_q_int(query, "limit") or 400, 400)
        lo, hi = self._bounds(query, now, (limit + 1) * FUNDING_INTERVAL_MS)
        prints = self.data.funding(base, lo, hi, now)[-limit:]
        rows = []
        for ts, rate, _mark in reversed(prints):
            value = _fmt(rate, 16)
            rows.append(
                {
                    "formulaType": "withRate",
                    "fundingRate": value,
                    "fundingTime": str(ts),
                    "instId": f"{base}-{self.config.quote}-SWAP",
                    "instType": "SWAP",
                    "method": "current_period",
                    "realizedRate": value,
                }
            )
        return self._ok(rows)

    def open_interest(self, query: dict[str, str], now: int) -> Any:
        base = self.base_of(query.get("instId"))
        period = self.oi_periods.get(query.get("period", "5m"))
        if period is None:
            raise ApiError(200, {"code": "51000", "msg": "Parameter period error", "data": []})
        step = timeframe_ms(period)
        limit = min(_q_int(query, "limit") or 100, 100)
        begin, end = _q_int(query, "begin"), _q_int(query, "end")
        hi = now if end is None else end - 1
        lo = hi - (limit + 1) * step - self.data.hole_span() if begin is None else begin + 1
        samples = self.data.open_interest(base, step, lo, hi, now)[-limit:]
        ct_val = _OKX_CONTRACT_VALUE.get(base, 1.0)
        rows = [
            [str(ts), _fmt(amount / ct_val, 2), _fmt(amount, 4), _fmt(value, 2)]
            for ts, amount, value in reversed(samples)
        ]
        return self._ok(rows)


_DIALECTS: tuple[type[_Dialect], ...] = (_Binance, _Bybit, _Okx)


def exchange_of_path(path: str) -> str | None:
    """The exchange whose REST path this is (None for an unknown path)."""
    for dialect in _DIALECTS:
        if path in dialect.routes:
            return dialect.name
    return None


# ------------------------------------------------------------------ the HTTP server


_HTML_PAGES = {
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n",
    503: "<!DOCTYPE html>\n<html><head><title>System maintenance</title></head><body>"
    "<h1>We'll be back soon</h1><p>The exchange is undergoing scheduled maintenance. "
    "Please try again later.</p></body></html>\n",
}


class _App:
    """Routing, data, faults and the request log, shared by the handler threads."""

    def __init__(self, config: ReplayConfig, faults: FaultPlan) -> None:
        self.config = config
        self.faults = faults
        self.data = SyntheticData(config)
        self.dialects = [cls(self.data, config) for cls in _DIALECTS]
        self._fixed_now: int | None = None if config.now is None else _to_ms(config.now)
        self._log_lock = threading.Lock()
        # the newest requests only, so that a long-running replay does not grow forever
        self.requests: deque[RequestRecord] = deque(maxlen=100_000)

    def now(self) -> int:
        return self._fixed_now if self._fixed_now is not None else int(time.time() * 1000)

    def set_now(self, value: int | str | None) -> None:
        self._fixed_now = None if value is None else _to_ms(value)

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
            if status == 200 and rule is not None:
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
        cut = rule is not None and rule.kind == "drop_connection"
        self._send(status, payload, headers=headers, cut=cut)


def _mutate(rule: FaultRule, dialect: _Dialect, body: Any) -> Any:
    """Apply a row fault to a copy of the body."""
    body = copy.deepcopy(body)
    rows = dialect.rows(body)
    if not rows:
        return body
    if rule.kind == "missing_field":
        first = rows[0]
        if isinstance(first, dict):
            key = rule.field or next(
                (k for k in ("fundingRate", "realizedRate", "sumOpenInterest", "openInterest")
                 if k in first), next(iter(first)),
            )  # fmt: skip
            if dialect.name == "okx" and key == "fundingRate":
                key = "realizedRate"  # what ccxt reads
            first.pop(key, None)
        elif isinstance(first, list):
            del first[4 if len(first) > 4 else len(first) - 1 :]  # close, volume, ... gone
    elif rule.kind == "shuffle":
        rows.reverse()
        if len(rows) > 2:
            rows[0], rows[1] = rows[1], rows[0]
    elif rule.kind == "duplicate":
        twin = copy.deepcopy(rows[0])
        if isinstance(twin, list) and len(twin) > 4:
            twin[4] = str(float(twin[4]) * 1.01)
        elif isinstance(twin, dict):
            for key in ("fundingRate", "realizedRate", "sumOpenInterest", "openInterest"):
                if key in twin:
                    twin[key] = str(float(twin[key]) * 1.01 + 1e-6)
        rows.insert(1, twin)
    elif rule.kind == "drop_rows" and len(rows) >= 3:
        third = len(rows) // 3
        del rows[third : 2 * third]
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        super().__init__(address, _Handler)
        self.app = app

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

    def set_now(self, value: int | str | None) -> None:
        """Move the replay's clock (None: follow the wall clock)."""
        self._app.set_now(value)

    def start(self) -> ReplayServer:
        if self._server is None:
            self._server = _Server(self._address, self._app)
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
    )
    serve(config, host=args.host, port=args.port, ready=lambda url: print(url, flush=True))


if __name__ == "__main__":
    main()
