"""The replay exchange's dialects: the routes and real response formats of binance,
bybit and okx, answering from :class:`~brain_lib.market._replay_data.SyntheticData`."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
from typing import Any, ClassVar

from brain_lib.market._replay_data import (
    _OKX_CONTRACT_VALUE,
    DAY_MS,
    FUNDING_INTERVAL_MS,
    ReplayConfig,
    SyntheticData,
    _fmt,
    _price_decimals,
    recorded_body,
    recorded_name,
    timeframe_ms,
)


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
        start, end = _q_int(query, "start"), _q_int(query, "end")
        span = (limit + 1) * step + self.data.hole_span()
        if start is not None and end is None:
            # a lone `start`: the `limit` bars from `start` on (up to the clock), still
            # listed newest first
            bars = self.data.candles(base, timeframe, start, start + span, now)[:limit]
        else:
            # with `end` (or neither): the newest `limit` bars of [start, end or now]
            hi = now if end is None else end
            lo = hi - span if start is None else start
            bars = self.data.candles(base, timeframe, lo, hi, now)
        dec = _price_decimals(base)
        bars = self._newest(bars, limit)
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
        symbol, interval = f"{base}{self.config.quote}", query.get("intervalTime", "")
        if query.get("cursor"):
            hi = min(hi, self._read_cursor(query["cursor"], symbol, interval, now))
        newest_first = list(reversed(self.data.open_interest(base, step, lo, hi, now)))
        page = newest_first[:limit]
        more = len(newest_first) > limit
        rows = [{"openInterest": _fmt(amount, 8), "timestamp": str(ts)} for ts, amount, _ in page]
        return self._envelope(
            {
                "symbol": symbol,
                "category": category,
                "list": rows,
                "nextPageCursor": self._cursor(symbol, interval, page[-1][0] - 1) if more else "",
            },
            now,
        )

    # cursors -------------------------------------------------------------------
    # bybit's nextPageCursor is an opaque token: here the urlsafe base64 of a small JSON
    # (symbol, interval, the newest stamp the next page may hold) and its keyed hash, so
    # that a client can only send back what it was given; the next page continues below
    # the last row sent (a clock that moves on between pages neither repeats nor skips).
    _CURSOR_TAG = 12  # bytes of the keyed hash

    def _cursor_key(self) -> bytes:
        return hashlib.sha256(f"replay-bybit-cursor|{self.config.seed}".encode()).digest()

    def _cursor(self, symbol: str, interval: str, below: int) -> str:
        payload = json.dumps({"s": symbol, "i": interval, "t": below}, separators=(",", ":"))
        raw = payload.encode()
        tag = hmac.new(self._cursor_key(), raw, hashlib.sha256).digest()[: self._CURSOR_TAG]
        return base64.urlsafe_b64encode(raw + tag).decode().rstrip("=")

    def _read_cursor(self, token: str, symbol: str, interval: str, now: int) -> int:
        """The newest stamp the page after ``token`` may hold; bybit's params error for a
        cursor it did not hand out (garbled, tampered, or for another query)."""
        bad = self._error(10001, "params error: cursor is invalid", now)
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise bad from None
        if base64.urlsafe_b64encode(blob).decode().rstrip("=") != token:
            raise bad  # not the canonical encoding: characters changed or added
        raw, tag = blob[: -self._CURSOR_TAG], blob[-self._CURSOR_TAG :]
        want = hmac.new(self._cursor_key(), raw, hashlib.sha256).digest()[: self._CURSOR_TAG]
        if len(blob) <= self._CURSOR_TAG or not hmac.compare_digest(tag, want):
            raise bad
        state = json.loads(raw)
        if state.get("s") != symbol or state.get("i") != interval:
            raise bad
        return int(state["t"])


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
