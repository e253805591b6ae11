"""The replay exchange over real HTTP: paths, query semantics, clock, faults, and the
exchange factory that points ccxt at it."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from brain_lib.errors import ConfigError, UnknownExchangeError
from brain_lib.market.exchanges import EXCHANGES, make_exchange, point_at_replay
from brain_lib.market.replay import (
    FaultPlan,
    Hole,
    ReplayConfig,
    ReplayServer,
    exchange_of_path,
    recorded_files,
)

NOW = "2025-02-01T00:30:00Z"
NOW_MS = 1738369800000
HOUR = 3_600_000


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer(ReplayConfig(now=NOW)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_faults(server: ReplayServer) -> Iterator[None]:
    server.faults.clear()
    yield
    server.faults.clear()


def get(url: str, path: str, **params: Any) -> tuple[int, Any, dict[str, str]]:
    """GET with the standard library: (status, parsed body or text, headers)."""
    query = f"?{urlencode(params)}" if params else ""
    try:
        with urllib.request.urlopen(f"{url}{path}{query}", timeout=5) as resp:
            raw = resp.read().decode()
            status, headers = resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read().decode(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, raw, headers


# ------------------------------------------------------------------ serving


def test_listens_on_loopback_with_an_os_assigned_port(server: ReplayServer) -> None:
    parts = urlsplit(server.url)
    assert parts.hostname == "127.0.0.1"
    assert parts.port and parts.port > 0
    status, body, _ = get(server.url, "/__replay__/health")
    assert status == 200 and body == {"now": NOW_MS}


def test_unknown_path_is_a_404_and_paths_map_to_their_exchange(server: ReplayServer) -> None:
    status, body, _ = get(server.url, "/api/v9/nothing")
    assert status == 404 and "does not serve" in body["error"]
    assert exchange_of_path("/fapi/v1/klines") == "binance"
    assert exchange_of_path("/v5/market/kline") == "bybit"
    assert exchange_of_path("/api/v5/market/history-candles") == "okx"
    assert exchange_of_path("/nope") is None


def test_binance_klines_run_forward_from_start_time_and_cap_the_limit(
    server: ReplayServer,
) -> None:
    start = NOW_MS - 1800_000 - 48 * HOUR  # on the hour
    status, rows, headers = get(
        server.url, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", startTime=start, limit=10
    )
    assert status == 200 and "X-MBX-USED-WEIGHT-1M" in headers
    assert [r[0] for r in rows] == [start + i * HOUR for i in range(10)]
    assert all(len(r) == 12 and r[6] == r[0] + HOUR - 1 for r in rows)
    # the spot endpoint caps at 1000, the futures one at 1500
    _, big, _ = get(
        server.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m", startTime=start, limit=5000
    )
    assert len(big) == 1000


def test_the_forming_candle_is_served_and_nothing_after_the_clock(server: ReplayServer) -> None:
    _, rows, _ = get(server.url, "/api/v3/klines", symbol="ETHUSDT", interval="1h", limit=3)
    assert [r[0] for r in rows] == [NOW_MS - 2.5 * HOUR, NOW_MS - 1.5 * HOUR, NOW_MS - 0.5 * HOUR]
    _, okx, _ = get(server.url, "/api/v5/market/candles", instId="ETH-USDT-SWAP", bar="1H", limit=2)
    assert [r[8] for r in okx["data"]] == ["0", "1"]  # newest first; the newest still forming
    assert int(okx["data"][0][0]) == NOW_MS - 0.5 * HOUR


def test_bybit_pages_are_newest_first_within_the_window(server: ReplayServer) -> None:
    start, end = NOW_MS - 24 * HOUR - 1800_000, NOW_MS - 1800_000 - 12 * HOUR
    _, body, _ = get(
        server.url,
        "/v5/market/kline",
        category="linear",
        symbol="SOLUSDT",
        interval="60",
        start=start,
        end=end,
        limit=5,
    )
    stamps = [int(r[0]) for r in body["result"]["list"]]
    assert body["retCode"] == 0 and stamps == sorted(stamps, reverse=True)
    assert stamps[0] == end and len(stamps) == 5  # the newest `limit` of the window
    _, missing_end, _ = get(
        server.url, "/v5/market/funding/history", category="linear", symbol="BTCUSDT",
        startTime=start,
    )  # fmt: skip
    assert missing_end["retCode"] == 10001  # bybit wants endTime with startTime


def test_bybit_kline_with_a_lone_start_answers_the_bars_from_start(server: ReplayServer) -> None:
    """No `end`: the `limit` bars from `start` on (up to the clock), newest first, so that
    ccxt's fetch_ohlcv with `since` alone gets the bars from `since`."""
    start = NOW_MS - 1800_000 - 48 * HOUR  # on the hour
    kline = {"category": "linear", "symbol": "BTCUSDT", "interval": "60"}
    _, body, _ = get(server.url, "/v5/market/kline", **kline, start=start, limit=5)
    _, near, _ = get(server.url, "/v5/market/kline", **kline, start=NOW_MS - 3 * HOUR, limit=10)
    stamps, near_stamps = ([int(r[0]) for r in b["result"]["list"]] for b in (body, near))
    assert stamps == [start + i * HOUR for i in (4, 3, 2, 1, 0)]
    assert near_stamps == [NOW_MS - k * HOUR for k in (0.5, 1.5, 2.5)]  # up to the clock
    bars = make_exchange("bybit", replay_url=server.url).fetch_ohlcv(
        "BTC/USDT:USDT", "1h", start, 5
    )
    expected = server.data.candles("BTC", "1h", start, start + 4 * HOUR, NOW_MS)
    assert [b[0] for b in bars] == [e[0] for e in expected] and len(bars) == 5
    assert [b[4] for b in bars] == [round(e[4], 2) for e in expected]  # served to 2 dp


def test_bybit_cursor_is_an_opaque_token_that_pages_every_row_once(server: ReplayServer) -> None:
    since, until = NOW_MS - 1800_000 - 200 * HOUR, NOW_MS - 1800_000 - 80 * HOUR
    oi = {"category": "linear", "symbol": "BTCUSDT", "intervalTime": "1h"}
    _, first, _ = get(
        server.url, "/v5/market/open-interest", **oi, startTime=since, endTime=until, limit=50
    )
    cursor = first["result"]["nextPageCursor"]
    assert cursor and not cursor.isdecimal()
    # ccxt follows the cursor (pages of 50 here): 121 hourly samples, each exactly once
    got = make_exchange("bybit", replay_url=server.url).fetch_open_interest_history(
        "BTC/USDT:USDT", "1h", since, None,
        {"paginate": True, "until": until, "maxEntriesPerRequest": 50},
    )  # fmt: skip
    sent = [r.query.get("cursor") for r in server.requests_to("/v5/market/open-interest")[-3:]]
    assert sent[0] is None and sent[1] == cursor and sent[2] not in (None, cursor)
    expected = server.data.open_interest("BTC", HOUR, since, until, NOW_MS)
    assert sorted(r["timestamp"] for r in got) == [ts for ts, _, _ in expected]
    assert len(expected) == 121
    # a cursor the exchange did not hand out is bybit's params error, not a crash
    tampered = ("A" if cursor[0] != "A" else "B") + cursor[1:]
    for bad in (tampered, cursor + "A", "50", "%%"):
        status, body, _ = get(server.url, "/v5/market/open-interest", **oi, cursor=bad)
        assert status == 200 and body["retCode"] == 10001 and body["result"] == {}
        assert body["retMsg"].startswith("params error")
    eth = {**oi, "symbol": "ETHUSDT"}
    _, other, _ = get(server.url, "/v5/market/open-interest", **eth, cursor=cursor)
    assert other["retCode"] == 10001  # a cursor belongs to its own query


def test_okx_bounds_are_exclusive(server: ReplayServer) -> None:
    lo, hi = NOW_MS - 10.5 * HOUR, NOW_MS - 5.5 * HOUR
    _, body, _ = get(
        server.url,
        "/api/v5/market/history-candles",
        instId="BTC-USDT-SWAP",
        bar="1H",
        before=int(lo),
        after=int(hi),
    )
    stamps = sorted(int(r[0]) for r in body["data"])
    assert stamps[0] == lo + HOUR and stamps[-1] == hi - HOUR


def test_funding_and_open_interest_follow_the_synthetic_market(server: ReplayServer) -> None:
    _, funding, _ = get(
        server.url, "/fapi/v1/fundingRate", symbol="BTCUSDT", startTime=NOW_MS - 3 * 86400_000
    )
    stamps = [r["fundingTime"] for r in funding]
    assert all(b - a == 8 * HOUR for a, b in itertools.pairwise(stamps))
    assert all(ts % (8 * HOUR) == 0 for ts in stamps)
    _, okx, _ = get(
        server.url,
        "/api/v5/public/funding-rate-history",
        instId="BTC-USDT-SWAP",
        before=NOW_MS - 3 * 86400_000 - 1,
    )
    by_ts = {int(r["fundingTime"]): float(r["realizedRate"]) for r in okx["data"]}
    assert all(by_ts[r["fundingTime"]] == pytest.approx(float(r["fundingRate"])) for r in funding)
    # open interest: okx reports contracts (ctVal 0.01 BTC) and the base amount
    _, oi, _ = get(
        server.url,
        "/api/v5/rubik/stat/contracts/open-interest-history",
        instId="BTC-USDT-SWAP",
        period="1H",
        limit=3,
    )
    for _ts, contracts, base, usd in oi["data"]:
        assert float(contracts) * 0.01 == pytest.approx(float(base), rel=1e-6)
        assert float(usd) / float(base) > 1000  # valued at the BTC price


def test_the_data_is_deterministic_and_prefix_stable() -> None:
    config = ReplayConfig(now=NOW)
    with ReplayServer(config) as a:
        _, first, _ = get(a.url, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=50)
    with ReplayServer(ReplayConfig(now="2025-03-01T00:00:00Z")) as b:
        _, later, _ = get(
            b.url, "/api/v3/klines", symbol="BTCUSDT", interval="1h", startTime=first[0][0],
            limit=49,
        )  # fmt: skip
    assert later == first[:49]  # the forming bar (last of `first`) differs, the rest is equal


def test_holes_are_windows_the_exchange_never_serves() -> None:
    hole = Hole("ohlcv", NOW_MS - 10 * HOUR - 1800_000, NOW_MS - 7 * HOUR - 1800_000, base="BTC")
    with ReplayServer(ReplayConfig(now=NOW, holes=(hole,))) as srv:
        _, rows, _ = get(srv.url, "/api/v3/klines", symbol="BTCUSDT", interval="1h", limit=12)
        _, eth, _ = get(srv.url, "/api/v3/klines", symbol="ETHUSDT", interval="1h", limit=12)
    stamps = [r[0] for r in rows]
    assert not any(hole.start_ms <= ts < hole.end_ms for ts in stamps)
    assert len(stamps) == 12 and stamps[0] == NOW_MS - 14.5 * HOUR  # the newest 12 there are
    assert [r[0] for r in eth] == [NOW_MS - (11.5 - i) * HOUR for i in range(12)]


def test_markets_endpoints_list_the_configured_bases() -> None:
    with ReplayServer(ReplayConfig(now=NOW, bases=("BTC", "XRP"))) as srv:
        _, spot, _ = get(srv.url, "/api/v3/exchangeInfo")
        _, bybit, _ = get(srv.url, "/v5/market/instruments-info", category="linear")
        _, okx, _ = get(srv.url, "/api/v5/public/instruments", instType="SWAP")
        _, none, _ = get(srv.url, "/api/v5/public/instruments", instType="SPOT")
    assert [s["symbol"] for s in spot["symbols"]] == ["BTCUSDT", "XRPUSDT"]
    assert [s["symbol"] for s in bybit["result"]["list"]] == ["BTCUSDT", "XRPUSDT"]
    assert [s["instId"] for s in okx["data"]] == ["BTC-USDT-SWAP", "XRP-USDT-SWAP"]
    assert none["data"] == []


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1h"}, 429, -1003),
        ("/v5/market/kline", {"category": "linear", "symbol": "BTCUSDT", "interval": "60"}, 200,
         10006),
        ("/api/v5/market/candles", {"instId": "BTC-USDT-SWAP", "bar": "1H"}, 429, "50011"),
    ],
)  # fmt: skip
def test_rate_limit_answers_in_each_exchanges_format_n_times_then_ok(
    server: ReplayServer, path: str, params: dict[str, Any], status: int, code: Any
) -> None:
    rule = server.faults.add("rate_limit", path, times=2)
    for _ in range(2):
        got, body, _ = get(server.url, path, **params)
        assert got == status
        assert (
            body.get("code") if isinstance(body, dict) and "code" in body else body["retCode"]
        ) == code
    got, body, _ = get(server.url, path, **params)
    assert got == 200 and rule.fired == 2
    assert [r.fault for r in server.requests_to(path)][-3:] == ["rate_limit", "rate_limit", None]


def test_html_error_pages_and_bare_error_statuses(server: ReplayServer) -> None:
    server.faults.add("html", "/fapi/v1/klines", status=502)
    server.faults.add("html", "/fapi/v1/klines", status=503)
    server.faults.add("http_error", "/fapi/v1/klines", status=500)
    params = {"symbol": "BTCUSDT", "interval": "1h"}
    s1, page1, h1 = get(server.url, "/fapi/v1/klines", **params)
    s2, page2, _ = get(server.url, "/fapi/v1/klines", **params)
    s3, page3, _ = get(server.url, "/fapi/v1/klines", **params)
    assert (s1, s2, s3) == (502, 503, 500)
    assert "<title>502 Bad Gateway</title>" in page1 and h1["Content-Type"] == "text/html"
    assert "maintenance" in page2 and page3 == ""


def test_row_faults_change_one_answer(server: ReplayServer) -> None:
    params = {"symbol": "BTCUSDT", "interval": "1h", "startTime": NOW_MS - 20 * HOUR, "limit": 9}
    _, clean, _ = get(server.url, "/api/v3/klines", **params)
    server.faults.add("missing_field", "/api/v3/klines")
    server.faults.add("shuffle", "/api/v3/klines")
    server.faults.add("duplicate", "/api/v3/klines")
    server.faults.add("drop_rows", "/api/v3/klines")
    _, missing, _ = get(server.url, "/api/v3/klines", **params)
    _, shuffled, _ = get(server.url, "/api/v3/klines", **params)
    _, doubled, _ = get(server.url, "/api/v3/klines", **params)
    _, dropped, _ = get(server.url, "/api/v3/klines", **params)
    _, again, _ = get(server.url, "/api/v3/klines", **params)
    assert len(missing[0]) == 4 and missing[1:] == clean[1:]
    assert sorted(shuffled) == sorted(clean) and shuffled != clean
    assert len(doubled) == 10 and doubled[1][0] == doubled[0][0] and doubled[1] != doubled[0]
    assert [r[0] for r in dropped] == [r[0] for r in clean[:3] + clean[6:]]
    assert again == clean


def test_a_connection_dropped_mid_body_and_a_reset(server: ReplayServer) -> None:
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    server.faults.add("drop_connection", "/api/v3/klines")
    conn = http.client.HTTPConnection(host or "", port, timeout=5)
    conn.request("GET", "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=50")
    resp = conn.getresponse()
    declared = int(resp.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert 0 < len(info.value.partial) < declared
    conn.close()
    server.faults.add("reset", "/api/v3/time")
    conn = http.client.HTTPConnection(host or "", port, timeout=5)
    conn.request("GET", "/api/v3/time")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, socket.error)):
        conn.getresponse()
    conn.close()


def test_hostile_200_answers(server: ReplayServer) -> None:
    """Random bytes, plain text and cut JSON under status 200 and a JSON content type; a
    page of 50 x the rows asked for, most outside the window; a body of many MB."""
    params = {"symbol": "BTCUSDT", "interval": "1h", "startTime": NOW_MS - 20 * HOUR, "limit": 9}
    for kind in ("garbage", "plain_text", "truncated"):
        server.faults.add(kind, "/api/v3/klines")
    server.faults.add("huge_page", "/api/v3/klines")
    server.faults.add("huge_body", "/api/v3/klines", size=3 * 2**20)
    host, port = urlsplit(server.url).hostname or "", urlsplit(server.url).port
    bodies = []
    for _ in range(5):
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", f"/api/v3/klines?{urlencode(params)}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
        bodies.append(resp.read())
        assert len(bodies[-1]) == int(resp.headers["Content-Length"])
        conn.close()
    _, clean, _ = get(server.url, "/api/v3/klines", **params)
    garbage, text, cut, huge, padded = bodies
    for body in (garbage, text, cut):
        with pytest.raises(ValueError):
            json.loads(body)
    assert len(garbage) == 512 and text.startswith(b"upstream connect error")
    assert json.dumps(clean, separators=(",", ":")).encode().startswith(cut)
    rows = json.loads(huge)
    stamps = [r[0] for r in rows]
    assert len(rows) == 450 and stamps == sorted(stamps) and len(set(stamps)) == 450
    assert rows[220:229] == clean  # 220 copies of the oldest row, the real ones, 221 more
    assert stamps[-1] > NOW_MS and stamps[0] < params["startTime"]  # ... past the clock
    assert len(padded) == 3 * 2**20 and json.loads(padded) == clean


def test_the_clock_can_be_skewed_and_what_is_served_moves_with_it(server: ReplayServer) -> None:
    server.set_now(NOW, skew_s=3 * 3600)
    try:
        assert get(server.url, "/api/v5/public/time")[1]["data"] == [{"ts": str(NOW_MS + 3 * HOUR)}]
        _, rows, _ = get(server.url, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", limit=1)
        assert rows[0][0] == NOW_MS + 2.5 * HOUR  # the forming candle of the skewed clock
    finally:
        server.set_now(NOW)
    assert server.now() == NOW_MS


def test_faults_after_n_requests_and_the_admin_endpoint(server: ReplayServer) -> None:
    request = urllib.request.Request(
        f"{server.url}/__replay__/faults",
        data=json.dumps([{"kind": "http_error", "path": "/api/v3/time", "after": 1, "times": 1,
                          "status": 503}]).encode(),
        method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert json.loads(resp.read()) == {"rules": 1}
    statuses = [get(server.url, "/api/v3/time")[0] for _ in range(3)]
    assert statuses == [200, 503, 200]
    delete = urllib.request.Request(f"{server.url}/__replay__/faults", method="DELETE")
    with urllib.request.urlopen(delete, timeout=5):
        pass
    assert server.faults.rules == []
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan().add("explode")


def test_the_clock_can_move(server: ReplayServer) -> None:
    server.set_now(NOW_MS + 5 * HOUR)
    try:
        assert get(server.url, "/fapi/v1/time")[1] == {"serverTime": NOW_MS + 5 * HOUR}
    finally:
        server.set_now(NOW)
    assert get(server.url, "/v5/market/time")[1]["time"] == NOW_MS


def test_every_recorded_body_is_valid_json() -> None:
    files = recorded_files()
    assert set(files) == {"binance", "bybit", "okx"}
    for exchange, names in files.items():
        assert "error_rate_limit" in names and "error_invalid_symbol" in names, exchange


# ------------------------------------------------------------------ the exchange factory


@pytest.mark.parametrize("exchange_id", list(EXCHANGES))
def test_make_exchange_points_every_api_url_at_the_replay(
    server: ReplayServer, exchange_id: str
) -> None:
    exchange = make_exchange(exchange_id, replay_url=server.url)
    assert exchange.enableRateLimit is True
    urls: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, str):
            urls.append(value)

    walk(exchange.urls["api"])
    assert urls and all(u.startswith(server.url) for u in urls)
    assert exchange.apiKey in (None, "") and exchange.secret in (None, "")
    markets = exchange.load_markets()
    assert "BTC/USDT:USDT" in markets


def test_requests_outside_the_replay_are_refused(server: ReplayServer) -> None:
    exchange = make_exchange("binance", replay_url=server.url)
    exchange.urls["api"]["public"] = "https://api.binance.com/api/v3"  # a leak, on purpose
    with pytest.raises(ConfigError, match=r"refusing a request to api\.binance\.com"):
        exchange.fetch_time()
    with pytest.raises(ConfigError, match="replay url"):
        point_at_replay(exchange, "127.0.0.1:8765")


def test_unknown_exchange_is_a_clear_error() -> None:
    with pytest.raises(
        UnknownExchangeError, match=r"unknown exchange 'kraken'.*binance, bybit, okx"
    ):
        make_exchange("kraken")


def test_the_replay_serves_the_synthetic_market_it_is_given() -> None:
    """Candles are the synthetic market's (seed, autocorr ...), bar for bar: the demo's
    learnable market can be collected through the replay."""
    from brain_lib.market import SyntheticMarket

    with ReplayServer(ReplayConfig(now=NOW, seed=11, autocorr=-0.1)) as srv:
        _, rows, _ = get(
            srv.url, "/api/v3/klines", symbol="ETHUSDT", interval="1h", startTime=1735689600000,
            limit=5,
        )  # fmt: skip
    expected = SyntheticMarket(seed=11, autocorr=-0.1).candles("ETH/USDT", 5)
    assert [float(r[4]) for r in rows] == pytest.approx(expected["close"].tolist(), abs=1e-8)
    assert [float(r[5]) for r in rows] == pytest.approx(expected["volume"].tolist(), abs=1e-8)
    with pytest.raises(ValueError, match="midnight UTC"):
        ReplayConfig(data_start="2025-01-01T05:00:00Z")
