"""The recorded real-format bodies parse, through real ccxt over HTTP, into the unified
structures we expect; and ccxt maps each exchange's error answers to the exception
classes the collector sorts into transient and permanent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from brain_lib.market.collect import _classify
from brain_lib.market.exchanges import make_exchange
from brain_lib.market.replay import ReplayConfig, ReplayServer, recorded_body, recorded_files

T0 = 1735689600000  # 2025-01-01T00:00:00Z, the first stamp of every recorded series
HOUR = 3_600_000


@pytest.fixture(scope="module")
def recorded() -> Iterator[ReplayServer]:
    """The recorded bodies, served verbatim whatever the query."""
    with ReplayServer(ReplayConfig(source="recorded")) as srv:
        yield srv


@pytest.fixture(scope="module")
def synthetic() -> Iterator[ReplayServer]:
    with ReplayServer(ReplayConfig(now="2025-02-01T00:30:00Z")) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_faults(recorded: ReplayServer, synthetic: ReplayServer) -> Iterator[None]:
    yield
    recorded.faults.clear()
    synthetic.faults.clear()


def exchange(server: ReplayServer, exchange_id: str) -> Any:
    ex = make_exchange(exchange_id, replay_url=server.url, timeout_ms=1000, rate_limit_ms=1)
    ex.load_markets()
    return ex


def test_every_recorded_body_is_used_here() -> None:
    """The files the replay and these tests rely on, and no stray ones."""
    assert recorded_files() == {
        "binance": [
            "api_v3_exchangeInfo",
            "api_v3_klines",
            "api_v3_time",
            "error_invalid_symbol",
            "error_rate_limit",
            "fapi_v1_exchangeInfo",
            "fapi_v1_fundingRate",
            "fapi_v1_klines",
            "fapi_v1_time",
            "futures_data_openInterestHist",
        ],
        "bybit": [
            "error_invalid_symbol",
            "error_rate_limit",
            "v5_market_funding_history",
            "v5_market_instruments-info",
            "v5_market_kline",
            "v5_market_open-interest",
            "v5_market_time",
        ],
        "okx": [
            "api_v5_market_candles",
            "api_v5_market_history-candles",
            "api_v5_public_funding-rate-history",
            "api_v5_public_instruments",
            "api_v5_public_time",
            "api_v5_rubik_stat_contracts_open-interest-history",
            "error_invalid_symbol",
            "error_rate_limit",
        ],
    }


# ------------------------------------------------------------------ markets


def test_binance_markets_spot_and_usdm_perpetuals(recorded: ReplayServer) -> None:
    ex = exchange(recorded, "binance")
    assert sorted(ex.markets) == ["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT"]
    spot, perp = ex.market("BTC/USDT"), ex.market("BTC/USDT:USDT")
    assert (spot["id"], spot["type"], spot["spot"], spot["contract"]) == (
        "BTCUSDT", "spot", True, False,
    )  # fmt: skip
    assert (perp["id"], perp["type"], perp["linear"], perp["settle"]) == (
        "BTCUSDT", "swap", True, "USDT",
    )  # fmt: skip
    assert perp["contractSize"] == 1.0 and perp["precision"]["price"] == 0.1
    assert spot["precision"]["amount"] == 0.00001 and spot["limits"]["cost"]["min"] == 5.0
    # load_markets asks spot and USD-M only (options['fetchMarkets']), never sapi/dapi/eapi
    assert [r.path for r in recorded.requests[-2:]] == [
        "/api/v3/exchangeInfo",
        "/fapi/v1/exchangeInfo",
    ]


def test_bybit_markets_linear_perpetuals(recorded: ReplayServer) -> None:
    ex = exchange(recorded, "bybit")
    assert sorted(ex.markets) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    btc = ex.market("BTC/USDT:USDT")
    assert (btc["id"], btc["swap"], btc["linear"], btc["contractSize"]) == (
        "BTCUSDT", True, True, 1.0,
    )  # fmt: skip
    assert btc["info"]["fundingInterval"] == 480 and btc["precision"]["price"] == 0.1


def test_okx_markets_swaps(recorded: ReplayServer) -> None:
    ex = exchange(recorded, "okx")
    assert sorted(ex.markets) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    btc, eth = ex.market("BTC/USDT:USDT"), ex.market("ETH/USDT:USDT")
    assert (btc["id"], btc["swap"], btc["linear"]) == ("BTC-USDT-SWAP", True, True)
    assert (btc["contractSize"], eth["contractSize"]) == (0.01, 0.1)


@pytest.mark.parametrize(
    ("exchange_id", "expected"),
    [("binance", 1735700400000), ("bybit", 1735700400123), ("okx", 1735700400123)],
)
def test_server_time(recorded: ReplayServer, exchange_id: str, expected: int) -> None:
    assert exchange(recorded, exchange_id).fetch_time() == expected


# ------------------------------------------------------------------ OHLCV


@pytest.mark.parametrize(
    ("exchange_id", "symbol", "path", "first", "count"),
    [
        ("binance", "BTC/USDT", "/api/v3/klines",
         [T0, 93576.0, 94509.42, 93489.03, 94401.14, 755.99676], 3),
        ("binance", "BTC/USDT:USDT", "/fapi/v1/klines",
         [T0, 93530.0, 94450.0, 93433.3, 94335.0, 10232.184], 3),
        # bybit answers newest first; linear volume is in the base coin (index 5)
        ("bybit", "BTC/USDT:USDT", "/v5/market/kline",
         [T0, 93531.6, 94451.9, 93437.2, 94340.5, 3110.672], 3),
        # okx swap volume is volCcy (base, index 6), not contracts (index 5); the recent
        # endpoint's forming candle (confirm "0") comes back too
        ("okx", "BTC/USDT:USDT", "/api/v5/market/candles",
         [T0 + HOUR, 94335.9, 94349.6, 93905.1, 94102.3, 991.0681], 3),
    ],
)  # fmt: skip
def test_ohlcv(
    recorded: ReplayServer,
    exchange_id: str,
    symbol: str,
    path: str,
    first: list[float],
    count: int,
) -> None:
    ex = exchange(recorded, exchange_id)
    candles = ex.fetch_ohlcv(symbol, "1h", limit=count)
    assert recorded.requests[-1].path == path
    assert len(candles) == count
    assert candles[0] == first
    assert [c[0] for c in candles] == sorted(c[0] for c in candles)  # oldest first
    assert all(c[2] >= max(c[1], c[4]) and c[3] <= min(c[1], c[4]) for c in candles)


def test_okx_history_candles(recorded: ReplayServer) -> None:
    ex = exchange(recorded, "okx")
    candles = ex.fetch_ohlcv(
        "BTC/USDT:USDT", "1h", since=T0, limit=3, params={"until": T0 + 3 * HOUR}
    )
    assert recorded.requests[-1].path == "/api/v5/market/history-candles"
    assert candles[0] == [T0, 93528.4, 94447.2, 93435.6, 94335.9, 1528.7009]
    assert [c[0] for c in candles] == [T0, T0 + HOUR, T0 + 2 * HOUR]


# ------------------------------------------------------------------ funding


@pytest.mark.parametrize(
    ("exchange_id", "path", "rates", "info_mark"),
    [
        ("binance", "/fapi/v1/fundingRate", [0.0001, 0.00008873, 0.0001], "93527.80000000"),
        ("bybit", "/v5/market/funding/history", [0.0001, 0.00007925, 0.0001], None),
        # ccxt reads okx's realizedRate
        ("okx", "/api/v5/public/funding-rate-history", [0.0001, 0.000081234568, 0.0001], None),
    ],
)
def test_funding_rate_history(
    recorded: ReplayServer,
    exchange_id: str,
    path: str,
    rates: list[float],
    info_mark: str | None,
) -> None:
    ex = exchange(recorded, exchange_id)
    history = ex.fetch_funding_rate_history("BTC/USDT:USDT", since=T0, limit=10)
    assert recorded.requests[-1].path == path
    assert [h["timestamp"] for h in history] == [T0, T0 + 8 * HOUR, T0 + 16 * HOUR]
    assert [h["fundingRate"] for h in history] == pytest.approx(rates)
    assert all(h["symbol"] == "BTC/USDT:USDT" for h in history)
    assert history[0]["info"].get("markPrice") == info_mark


# ------------------------------------------------------------------ open interest


@pytest.mark.parametrize(
    ("exchange_id", "path", "amount", "value"),
    [
        ("binance", "/futures/data/openInterestHist", 78425.745, 7336082536.2995),
        ("bybit", "/v5/market/open-interest", 54982.738, None),
        # okx: openInterestAmount is in contracts (ctVal 0.01 BTC), value in USD
        ("okx", "/api/v5/rubik/stat/contracts/open-interest-history", 2943115.06, 2776568340.51),
    ],
)
def test_open_interest_history(
    recorded: ReplayServer,
    exchange_id: str,
    path: str,
    amount: float,
    value: float | None,
) -> None:
    ex = exchange(recorded, exchange_id)
    history = ex.fetch_open_interest_history("BTC/USDT:USDT", "1h", since=T0, limit=3)
    assert recorded.requests[-1].path == path
    assert [h["timestamp"] for h in history] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert history[0]["openInterestAmount"] == pytest.approx(amount)
    if value is None:
        assert history[0]["openInterestValue"] is None
    else:
        assert history[0]["openInterestValue"] == pytest.approx(value)


def test_the_recorded_bodies_are_what_the_replay_serves(recorded: ReplayServer) -> None:
    """Recorded mode is verbatim: the bytes on disk are the body ccxt gets."""
    ex = exchange(recorded, "binance")
    raw = ex.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1h"})
    assert raw == recorded_body("binance", "fapi_v1_klines")


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("exchange_id", "symbol", "path", "error", "kind"),
    [
        ("binance", "BTC/USDT:USDT", "/fapi/v1/klines", ccxt.DDoSProtection, "transient"),
        ("bybit", "BTC/USDT:USDT", "/v5/market/kline", ccxt.RateLimitExceeded, "transient"),
        ("okx", "BTC/USDT:USDT", "candles", ccxt.RateLimitExceeded, "transient"),
    ],
)
def test_rate_limit_answers_map_to_transient_errors(
    synthetic: ReplayServer,
    exchange_id: str,
    symbol: str,
    path: str,
    error: type[Exception],
    kind: str,
) -> None:
    ex = exchange(synthetic, exchange_id)
    synthetic.faults.add("rate_limit", path)
    with pytest.raises(error) as info:
        ex.fetch_ohlcv(symbol, "1h", limit=5)
    assert _classify(info.value) == kind


@pytest.mark.parametrize(
    ("fault", "options", "error", "kind"),
    [
        ("html", {"status": 502}, ccxt.ExchangeNotAvailable, "transient"),
        ("html", {"status": 503}, ccxt.ExchangeNotAvailable, "transient"),
        ("http_error", {"status": 500}, ccxt.ExchangeNotAvailable, "transient"),
        ("http_error", {"status": 504}, ccxt.RequestTimeout, "transient"),
        ("http_error", {"status": 401}, ccxt.AuthenticationError, "permanent"),
        ("drop_connection", {}, ccxt.NetworkError, "transient"),
        ("reset", {}, ccxt.NetworkError, "transient"),
        ("delay", {"seconds": 1.3}, ccxt.RequestTimeout, "transient"),
        # ccxt would read a 200 HTML page as an empty page; Brain's guard refuses it
        ("html", {"status": 200}, ccxt.BadResponse, "malformed"),
    ],
)
@pytest.mark.parametrize(
    ("exchange_id", "path"),
    [("binance", "/fapi/v1/klines"), ("bybit", "/v5/market/kline"), ("okx", "candles")],
)
def test_http_failures_map_to_ccxt_exceptions(
    synthetic: ReplayServer,
    exchange_id: str,
    path: str,
    fault: str,
    options: dict[str, Any],
    error: type[Exception],
    kind: str,
) -> None:
    ex = exchange(synthetic, exchange_id)
    synthetic.faults.add(fault, path, **options)
    with pytest.raises(error) as info:
        ex.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=5)
    assert _classify(info.value) == kind


@pytest.mark.parametrize(
    ("exchange_id", "call", "error", "kind"),
    [
        ("binance", lambda ex: ex.fapiPublicGetKlines({"symbol": "FOOUSDT", "interval": "1h"}),
         ccxt.BadSymbol, "symbol"),
        ("bybit", lambda ex: ex.publicGetV5MarketKline(
            {"category": "linear", "symbol": "FOOUSDT", "interval": "60"}),
         ccxt.BadRequest, "permanent"),
        ("okx", lambda ex: ex.publicGetMarketCandles({"instId": "FOO-USDT-SWAP", "bar": "1H"}),
         ccxt.BadSymbol, "symbol"),
        # a symbol ccxt does not know never reaches the wire
        ("binance", lambda ex: ex.fetch_ohlcv("FOO/USDT", "1h"), ccxt.BadSymbol, "symbol"),
    ],
)  # fmt: skip
def test_unknown_symbol_answers(
    synthetic: ReplayServer, exchange_id: str, call: Any, error: type[Exception], kind: str
) -> None:
    ex = exchange(synthetic, exchange_id)
    with pytest.raises(error) as info:
        call(ex)
    assert _classify(info.value) == kind
