"""Collection end to end: real ccxt over HTTP to the replay exchange, into a real
PostgreSQL with the raw schema dbt creates. Incremental, idempotent, resumable; bad
answers retried or failed loudly; gaps recorded."""

from __future__ import annotations

import json
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from brain_lib.errors import WarehouseUnavailableError
from brain_lib.market.collect import (
    ExchangePool,
    RetryPolicy,
    StreamReport,
    StreamSpec,
    _norm_liquidation,
    _write_liquidations,
    collect,
    collect_stream,
    stream_specs,
    summary_markdown,
)
from brain_lib.market.replay import Hole, ReplayConfig, ReplayServer, recorded_body
from brain_lib.warehouse import connect

NOW = "2025-02-01T00:30:00Z"
NOW_MS = 1738369800000
HOUR = 3_600_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SINCE = datetime(2025, 1, 29, 0, 30, tzinfo=UTC)  # three days before NOW
FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)
DATA_TABLES = (
    "raw.ohlcv",
    "raw.funding_rates",
    "raw.open_interest",
    "raw.liquidations",
    "raw.collection_gaps",
    "raw.collection_streams",
)


def ms(value: datetime) -> int:
    return (value - EPOCH) // timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    with ReplayServer(ReplayConfig(now=NOW)) as srv:
        yield srv


@pytest.fixture
def dsn(warehouse_dsn: str, replay: ReplayServer) -> Iterator[str]:
    """The module's warehouse, emptied of market data (the run log is append-only and
    kept: tests tell their runs apart by run_id); the replay's faults and clock reset."""
    with connect(warehouse_dsn) as conn:
        conn.execute(f"truncate {', '.join(DATA_TABLES)}")
    replay.faults.clear()
    replay.set_now(NOW)
    yield warehouse_dsn
    replay.faults.clear()
    replay.set_now(NOW)


@pytest.fixture
def pool(replay: ReplayServer) -> ExchangePool:
    """The limiter stays on, at 10 ms between requests instead of the exchanges' own
    50-110 ms (the end-to-end test keeps those)."""
    return ExchangePool(replay.url, timeout_ms=2000, rate_limit_ms=10)


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def served(url: str, path: str, **params: Any) -> Any:
    """What the replay answers, read with the standard library (not ccxt): the oracle."""
    with urllib.request.urlopen(f"{url}{path}?{urlencode(params)}", timeout=5) as resp:
        return json.loads(resp.read())


def stored_candles(dsn: str, exchange: str, symbol: str, timeframe: str = "1h") -> list[Any]:
    rows = query(
        dsn,
        "select ts, open, high, low, close, volume from raw.ohlcv "
        "where exchange = %s and symbol = %s and timeframe = %s order by ts",
        exchange,
        symbol,
        timeframe,
    )
    return [[ms(r[0]), *r[1:]] for r in rows]


def closed_hours(since: datetime, now_ms: int) -> list[int]:
    first = -(-ms(since) // HOUR) * HOUR
    return list(range(first, now_ms - HOUR + 1, HOUR))


def run(dsn: str, pool: ExchangePool, specs: list[StreamSpec], **kw: Any) -> list[StreamReport]:
    kw.setdefault("since", SINCE)
    kw.setdefault("retry", FAST)
    return collect(dsn, specs, pool=pool, **kw)


# ------------------------------------------------------------------ end to end

SPECS = [
    StreamSpec("binance", "BTC/USDT", "ohlcv", "1h"),
    *stream_specs(["binance"], ["BTC/USDT:USDT"]),
    *stream_specs(["bybit"], ["ETH/USDT:USDT"]),
    *stream_specs(["okx"], ["SOL/USDT:USDT"]),
]


def test_end_to_end_through_ccxt_and_the_replay_into_the_raw_tables(
    dsn: str, replay: ReplayServer
) -> None:
    pool = ExchangePool(replay.url)  # ccxt's own rate limits
    reports = run(dsn, pool, SPECS, run_id="e2e")
    by = {(r.exchange, r.symbol, r.dataset): r for r in reports}
    assert len(reports) == 13
    hours = closed_hours(SINCE, NOW_MS)
    fundings = list(range(-(-ms(SINCE) // (8 * HOUR)) * 8 * HOUR, NOW_MS + 1, 8 * HOUR))
    samples = [t for t in range(-(-ms(SINCE) // HOUR) * HOUR, NOW_MS + 1, HOUR)]
    for (exchange, _symbol, dataset), r in by.items():
        if dataset == "liquidations":
            assert r.status == "unsupported" and "fetchLiquidations" in r.message
            continue
        assert r.status == "ok", r.message
        expected = {"ohlcv": hours, "funding": fundings, "oi": samples}[dataset]
        assert r.new_rows == len(expected) and r.unchanged_rows == 0, (exchange, dataset)
        assert (ms(r.first_ts), ms(r.last_ts)) == (expected[0], expected[-1])  # type: ignore[arg-type]
        assert r.gaps == [] and r.retries == 0
    # candles: exactly what the exchange served (read without ccxt), forming candle excluded
    raw = served(
        replay.url, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", startTime=hours[0],
        limit=1000,
    )  # fmt: skip
    assert raw[-1][0] == NOW_MS - HOUR / 2  # the exchange did serve the forming candle
    oracle = [[r[0], *(float(x) for x in r[1:6])] for r in raw[:-1]]
    assert stored_candles(dsn, "binance", "BTC/USDT:USDT") == oracle
    assert [c[0] for c in stored_candles(dsn, "okx", "SOL/USDT:USDT")] == hours
    assert by[("binance", "BTC/USDT", "ohlcv")].lag_seconds == 1800.0
    # funding: binance gives the mark price, bybit and okx do not
    marks = query(
        dsn,
        "select exchange, count(*), count(mark_price) from raw.funding_rates group by 1 order by 1",
    )
    assert marks == [("binance", 9, 9), ("bybit", 9, 0), ("okx", 9, 0)]
    # open interest in base currency: okx's contracts x 0.01 ... x 1 for SOL (ctVal 1)
    okx_oi = served(
        replay.url, "/api/v5/rubik/stat/contracts/open-interest-history",
        instId="SOL-USDT-SWAP", period="1H", limit=3,
    )  # fmt: skip
    newest = {int(r[0]): float(r[2]) for r in okx_oi["data"]}
    stored = dict(
        query(
            dsn,
            "select ts, open_interest_amount from raw.open_interest where exchange = 'okx'",
        )
    )
    assert {ms(t): v for t, v in stored.items() if ms(t) in newest} == pytest.approx(newest)
    # every row carries loaded_at; bookkeeping per stream
    assert query(dsn, "select count(*) from raw.ohlcv where loaded_at is null") == [(0,)]
    runs = query(
        dsn,
        "select status, count(*), sum(new_rows) from raw.collection_runs "
        "where run_id = 'e2e' group by 1 order by 1",
    )
    assert runs == [("ok", 10, sum(r.new_rows for r in reports)), ("unsupported", 3, 0)]
    states = query(dsn, "select status, count(*) from raw.collection_streams group by 1 order by 1")
    assert states == [("ok", 10), ("unsupported", 3)]
    markdown = summary_markdown(reports)
    assert "13 streams: 10 ok, 3 unsupported, 0 failed" in markdown
    assert markdown.count("\n| ") == 14  # header + one line per stream
    # a re-run adds nothing
    again = run(dsn, pool, SPECS)
    assert [(r.new_rows, r.unchanged_rows) for r in again] == [(0, 0)] * 13
    assert query(dsn, "select count(*) from raw.ohlcv") == [(4 * len(hours),)]


def test_recollecting_a_window_adds_nothing(dsn: str, pool: ExchangePool) -> None:
    specs = stream_specs(["bybit"], ["BTC/USDT:USDT"], ["ohlcv", "funding", "oi"])
    first = run(dsn, pool, specs)
    counts = query(
        dsn,
        "select (select count(*) from raw.ohlcv), (select count(*) from raw.funding_rates), "
        "(select count(*) from raw.open_interest)",
    )
    again = run(dsn, pool, specs, resume=False)  # the same window, from SINCE again
    assert [r.new_rows for r in again] == [0, 0, 0]
    assert [r.unchanged_rows for r in again] == [r.new_rows for r in first]
    assert (
        query(
            dsn,
            "select (select count(*) from raw.ohlcv), (select count(*) from raw.funding_rates), "
            "(select count(*) from raw.open_interest)",
        )
        == counts
    )


def test_each_stream_resumes_from_its_last_stored_stamp(
    dsn: str, pool: ExchangePool, replay: ReplayServer
) -> None:
    specs = stream_specs(["okx"], ["BTC/USDT:USDT"], ["ohlcv", "funding", "oi"])
    run(dsn, pool, specs)
    replay.set_now(NOW_MS + 9 * HOUR)  # 09:30: nine more candles and samples, one funding
    start = len(replay.requests)
    later = run(dsn, pool, specs)
    assert [r.new_rows for r in later] == [9, 1, 9]
    assert all(r.unchanged_rows == 0 and r.gaps == [] for r in later)
    # it asked for the new stretch only, not the three days again
    asked = [r for r in replay.requests[start:] if "candles" in r.path]
    assert len(asked) == 1 and int(asked[0].query["before"]) == NOW_MS - HOUR / 2 - 1
    hours = closed_hours(SINCE, NOW_MS + 9 * HOUR)
    assert [c[0] for c in stored_candles(dsn, "okx", "BTC/USDT:USDT")] == hours


def test_an_interrupted_backfill_resumes_without_gaps_or_duplicates(
    dsn: str, pool: ExchangePool, replay: ReplayServer
) -> None:
    spec = StreamSpec("binance", "ETH/USDT:USDT", "ohlcv", "5m")
    since = datetime(2025, 1, 24, tzinfo=UTC)  # 8 days of 5m candles: 3 pages of <= 1000
    # the exchange goes away after two pages and stays away through every retry
    replay.faults.add("http_error", "/fapi/v1/klines", after=2, times=None, status=503)
    (broken,) = run(dsn, pool, [spec], since=since)
    assert broken.status == "failed"
    assert "binance ETH/USDT:USDT ohlcv 5m" in broken.message
    assert "gave up after 4 attempts (transient errors)" in broken.message
    assert "ExchangeNotAvailable" in broken.message
    assert broken.new_rows == 2000 and broken.pages == 2
    replay.faults.clear()
    (resumed,) = run(dsn, pool, [spec], since=since)
    assert resumed.status == "ok" and resumed.gaps == []
    expected = list(range(ms(since), NOW_MS - 5 * 60_000 + 1, 5 * 60_000))
    assert resumed.new_rows == len(expected) - 2000 and resumed.unchanged_rows == 0
    stamps = [c[0] for c in stored_candles(dsn, "binance", "ETH/USDT:USDT", "5m")]
    assert stamps == expected  # contiguous, no duplicate, no hole
    assert query(dsn, "select count(*) from raw.collection_gaps") == [(0,)]
    assert query(
        dsn,
        "select status from raw.collection_runs where exchange = 'binance' "
        "and symbol = 'ETH/USDT:USDT' and series = '5m' order by collection_run_id desc limit 2",
    ) == [("ok",), ("failed",)]


# ------------------------------------------------------------------ bad answers


def _clean_then_faulty(
    dsn: str, pool: ExchangePool, replay: ReplayServer, spec: StreamSpec, fault: dict[str, Any]
) -> tuple[list[Any], StreamReport, list[Any]]:
    """Collect clean, keep the rows, empty the tables, collect again with the fault."""
    table = {"ohlcv": "raw.ohlcv", "funding": "raw.funding_rates", "oi": "raw.open_interest"}
    sql = f"select * from {table[spec.dataset]} order by ts"
    run(dsn, pool, [spec])
    clean = [r[:-1] for r in query(dsn, sql)]  # without loaded_at
    with connect(dsn) as conn:
        conn.execute(f"truncate {', '.join(DATA_TABLES)}")
    replay.faults.add(**fault)
    (report,) = run(dsn, pool, [spec])
    return clean, report, [r[:-1] for r in query(dsn, sql)]


KLINES = {"binance": "/fapi/v1/klines", "bybit": "/v5/market/kline", "okx": "candles"}
FUNDING = {
    "binance": "/fapi/v1/fundingRate",
    "bybit": "/v5/market/funding/history",
    "okx": "funding-rate-history",
}


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
@pytest.mark.parametrize(
    ("kind", "options", "retries"),
    [
        ("rate_limit", {"times": 3}, 3),  # a burst of 429s (bybit: retCode 10006)
        ("html", {"status": 502}, 1),
        ("html", {"status": 200}, 1),  # an HTML page with status 200
        ("missing_field", {}, 1),
        ("duplicate", {}, 1),  # two different candles with one stamp
        ("drop_connection", {}, 1),  # the connection closes mid-body
        ("shuffle", {}, 0),  # timestamps out of order: ccxt sorts them
    ],
)
def test_bad_answers_are_retried_and_land_the_same_rows(
    dsn: str,
    pool: ExchangePool,
    replay: ReplayServer,
    exchange: str,
    kind: str,
    options: dict[str, Any],
    retries: int,
) -> None:
    spec = StreamSpec(exchange, "BTC/USDT:USDT", "ohlcv", "1h")
    clean, report, rows = _clean_then_faulty(
        dsn, pool, replay, spec, {"kind": kind, "path": KLINES[exchange], **options}
    )
    assert report.status == "ok", report.message
    assert report.retries == retries
    assert rows == clean and len(rows) == len(closed_hours(SINCE, NOW_MS))
    assert report.gaps == []


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
def test_a_funding_record_without_its_rate_is_asked_for_again(
    dsn: str, pool: ExchangePool, replay: ReplayServer, exchange: str
) -> None:
    spec = StreamSpec(exchange, "BTC/USDT:USDT", "funding")
    fault = {"kind": "missing_field", "path": FUNDING[exchange]}
    clean, report, rows = _clean_then_faulty(dsn, pool, replay, spec, fault)
    assert report.status == "ok" and report.retries == 1
    assert rows == clean and len(rows) == 9


def test_a_field_missing_every_time_fails_the_stream_and_writes_nothing_of_the_page(
    dsn: str, pool: ExchangePool, replay: ReplayServer
) -> None:
    replay.faults.add("missing_field", "/fapi/v1/klines", times=None)
    spec = StreamSpec("binance", "BTC/USDT:USDT", "ohlcv", "1h")
    other = StreamSpec("binance", "BTC/USDT:USDT", "oi", "1h")
    broken, fine = run(dsn, pool, [spec, other])
    assert broken.status == "failed"
    assert "binance BTC/USDT:USDT ohlcv 1h" in broken.message
    assert "gave up after 4 attempts (bad answers)" in broken.message
    assert "has no close (the response is missing a field)" in broken.message
    assert broken.new_rows == 0 and stored_candles(dsn, "binance", "BTC/USDT:USDT") == []
    assert fine.status == "ok" and fine.new_rows == 72  # the other stream went on
    state = query(
        dsn,
        "select status, message from raw.collection_streams where dataset = 'ohlcv'",
    )
    assert state == [("failed", broken.message)]


def test_a_burst_longer_than_the_retries_fails_with_a_clear_message(
    dsn: str, pool: ExchangePool, replay: ReplayServer
) -> None:
    replay.faults.add("rate_limit", "/v5/market/kline", times=10)
    (report,) = run(dsn, pool, [StreamSpec("bybit", "SOL/USDT:USDT", "ohlcv")])
    assert report.status == "failed" and report.retries == 3
    assert "bybit SOL/USDT:USDT ohlcv 1h" in report.message
    assert "RateLimitExceeded" in report.message and "transient errors" in report.message


def test_unknown_exchange_and_symbol_fail_their_stream_only(dsn: str, pool: ExchangePool) -> None:
    specs = [
        StreamSpec("kraken", "BTC/USDT", "ohlcv"),
        StreamSpec("binance", "DOGE/USDT", "ohlcv"),
        StreamSpec("okx", "BTC/USDT", "ohlcv"),  # okx is read for swaps only
        StreamSpec("binance", "BTC/USDT", "ohlcv"),
    ]
    kraken, doge, okx_spot, good = run(dsn, pool, specs, run_id="bad-input")
    assert kraken.status == "failed"
    assert "unknown exchange 'kraken': Brain collects from binance, bybit, okx" in kraken.message
    assert doge.status == "failed" and "binance DOGE/USDT ohlcv 1h: unknown symbol" in doge.message
    assert "binance does not have market symbol DOGE/USDT" in doge.message
    assert okx_spot.status == "failed" and "okx does not have market symbol" in okx_spot.message
    assert good.status == "ok" and good.new_rows == len(closed_hours(SINCE, NOW_MS))
    logged = query(
        dsn,
        "select exchange, symbol, status from raw.collection_runs where run_id = 'bad-input' "
        "order by collection_run_id",
    )
    assert logged == [
        ("kraken", "BTC/USDT", "failed"),
        ("binance", "DOGE/USDT", "failed"),
        ("okx", "BTC/USDT", "failed"),
        ("binance", "BTC/USDT", "ok"),
    ]


def test_unsupported_combinations_are_recorded_not_crashed(dsn: str, pool: ExchangePool) -> None:
    specs = [
        StreamSpec("binance", "BTC/USDT", "funding"),  # spot: no funding
        StreamSpec("okx", "BTC/USDT:USDT", "oi", "15m"),  # okx samples 5m, 1h, 1d
        StreamSpec("bybit", "BTC/USDT:USDT", "ohlcv", "8h"),  # bybit has no 8h candles
        StreamSpec("okx", "BTC/USDT:USDT", "liquidations"),
    ]
    reports = run(dsn, pool, specs)
    assert [r.status for r in reports] == ["unsupported"] * 4
    assert (
        "funding exists for perpetual swaps only; BTC/USDT is a spot market" in reports[0].message
    )
    assert "okx samples open interest at 5m, 1h, 1d only, not 15m" in reports[1].message
    assert "bybit has no 8h candles" in reports[2].message
    assert "has['fetchLiquidations'] is None" in reports[3].message
    assert query(
        dsn, "select count(*) from raw.collection_streams where status = 'unsupported'"
    ) == [(4,)]


# ------------------------------------------------------------------ hostile answers


@pytest.mark.slow
@pytest.mark.parametrize(
    ("exchange", "dataset", "fault", "retries"),
    [
        ("binance", "ohlcv", {"kind": "garbage"}, 1),  # random bytes, status 200, JSON type
        ("bybit", "ohlcv", {"kind": "plain_text"}, 1),
        ("okx", "ohlcv", {"kind": "truncated"}, 1),  # JSON cut in the middle
        ("bybit", "funding", {"kind": "truncated"}, 1),
        ("binance", "ohlcv", {"kind": "huge_body"}, 1),  # 16 MiB: refused unread
        ("binance", "ohlcv", {"kind": "huge_page"}, 1),  # 50 x 1000 rows, 6 MiB: refused
        ("okx", "ohlcv", {"kind": "huge_page"}, 0),  # 50 x 100 rows fit: the window is kept
        ("bybit", "oi", {"kind": "huge_page", "factor": 20}, 0),
    ],
)
def test_hostile_200_answers_are_retried_or_trimmed_and_land_the_same_rows(
    dsn: str,
    pool: ExchangePool,
    replay: ReplayServer,
    exchange: str,
    dataset: str,
    fault: dict[str, Any],
    retries: int,
) -> None:
    """Every row stored is one of the clean run's: none outside the window asked for
    (a huge page's extra rows lie before SINCE and after the exchange's clock), none
    twice."""
    spec = StreamSpec(exchange, "BTC/USDT:USDT", dataset, "1h")
    path = {"ohlcv": KLINES, "funding": FUNDING}.get(dataset, {}).get(exchange, "open-interest")
    clean, report, rows = _clean_then_faulty(dsn, pool, replay, spec, {"path": path, **fault})
    assert report.status == "ok", report.message
    assert report.retries == retries and report.gaps == []
    assert rows == clean and len(rows) == report.new_rows
    assert replay.faults.rules[0].fired == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("garbage", "answered with something that is not JSON"),
        ("truncated", "answered with something that is not JSON: [[1738"),
        ("huge_body", "answered 16.0 MiB, more than the 2.0 MiB one answer may hold"),
    ],
)
def test_a_hostile_answer_every_time_fails_its_stream_in_one_line_bounded(
    dsn: str, pool: ExchangePool, replay: ReplayServer, kind: str, reason: str
) -> None:
    spec = StreamSpec("binance", "ETH/USDT:USDT", "ohlcv", "1h")
    other = StreamSpec("bybit", "ETH/USDT:USDT", "ohlcv", "1h")
    run(dsn, pool, [StreamSpec("binance", "ETH/USDT", "ohlcv")])  # markets loaded
    replay.faults.add(kind, "/fapi/v1/klines", times=None)
    tracemalloc.start()
    try:
        broken, fine = run(dsn, pool, [spec, other])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert broken.status == "failed" and "\n" not in broken.message
    assert broken.message.startswith("binance ETH/USDT:USDT ohlcv 1h: fetching ")
    assert "gave up after 4 attempts (bad answers)" in broken.message and reason in broken.message
    assert all(ch.isprintable() for ch in broken.message)  # no NUL reaches the warehouse
    assert stored_candles(dsn, "binance", "ETH/USDT:USDT") == []
    assert fine.status == "ok" and fine.new_rows == len(closed_hours(SINCE, NOW_MS))
    assert query(dsn, "select message from raw.collection_streams where exchange = 'binance'"
                 " and symbol = 'ETH/USDT:USDT'") == [(broken.message,)]  # fmt: skip
    assert peak < 8 * 2**20  # four answers of 16 MiB were offered, none was held


@pytest.mark.slow
@pytest.mark.parametrize("skew_h", [3, -3])
def test_an_exchange_clock_off_by_hours_stores_nothing_from_the_future(
    dsn: str, pool: ExchangePool, replay: ReplayServer, skew_h: int
) -> None:
    """The replay follows the wall clock, skewed: ahead, it serves candles, funding
    prints and samples that have not happened by the local clock; none is stored."""
    replay.set_now(None, skew_s=skew_h * 3600)
    start = time.time() * 1000
    since = datetime.fromtimestamp(start / 1000 - 86_400, UTC)
    specs = [
        StreamSpec("binance", "BTC/USDT:USDT", "ohlcv", "1h"),
        StreamSpec("okx", "BTC/USDT:USDT", "funding"),
        StreamSpec("bybit", "BTC/USDT:USDT", "oi", "1h"),
    ]
    reports = run(dsn, pool, specs, since=since)
    end = time.time() * 1000
    assert [r.status for r in reports] == ["ok"] * 3, [r.message for r in reports]
    clock = min(end, end + skew_h * HOUR)  # where the data must end, at the latest
    candles = [c[0] for c in stored_candles(dsn, "binance", "BTC/USDT:USDT")]
    assert candles[-1] + HOUR <= clock and candles[-1] + 2 * HOUR > min(
        start, start + skew_h * HOUR
    )
    assert candles == list(range(candles[0], candles[-1] + 1, HOUR)) and candles[0] >= ms(since)
    for table in ("raw.funding_rates", "raw.open_interest"):
        ((newest,),) = query(dsn, f"select max(ts) from {table}")
        assert ms(newest) <= clock
    notes = [f"the {r.exchange} clock is 3.0 h ahead of the local clock" in r.message
             for r in reports]  # fmt: skip
    assert notes == [skew_h > 0] * 3
    if skew_h > 0:  # the exchange did offer what had not closed here
        offered = served(replay.url, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", limit=2)
        assert offered[0][0] + HOUR > end


@pytest.mark.slow
def test_ten_years_of_hourly_candles_are_paged_with_bounded_memory(dsn: str) -> None:
    """``since`` ten years back on 1h candles, from an exchange that keeps two years:
    one request per 1,000 hours of the range (the empty ones before its first candle
    too), one transaction per page of at most 1,000 rows, the memory of one page."""
    first = datetime(2023, 2, 1, tzinfo=UTC)  # the exchange's first candle
    config = ReplayConfig(now=NOW, data_start=first.isoformat(), bases=("BTC",))
    since = datetime(2015, 2, 1, 0, 30, tzinfo=UTC)
    with ReplayServer(config) as srv:
        srv.data.candles("BTC", "1h", ms(first), NOW_MS, NOW_MS)  # the path, made once
        pool = ExchangePool(srv.url, rate_limit_ms=0)
        run(dsn, pool, [StreamSpec("binance", "BTC/USDT:USDT", "ohlcv", "1d")])  # markets
        tracemalloc.start()
        try:
            (report,) = run(dsn, pool, [StreamSpec("binance", "BTC/USDT", "ohlcv")], since=since)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    hours = closed_hours(first, NOW_MS)
    assert report.status == "ok" and report.gaps == [], report.message
    assert report.requests == 1 + -(-len(closed_hours(since, NOW_MS)) // 1000)  # clock, 88
    assert report.new_rows == len(hours) and report.pages == -(-len(hours) // 1000)
    per_transaction = query(
        dsn, "select count(*) from raw.ohlcv where symbol = 'BTC/USDT' group by loaded_at"
    )
    assert max(n for (n,) in per_transaction) <= 1000 and len(per_transaction) == report.pages
    assert [c[0] for c in stored_candles(dsn, "binance", "BTC/USDT")] == hours
    assert peak < 12 * 2**20  # one page takes ~5 MiB; the 17,500 rows at once, far more


# ------------------------------------------------------------------ gaps and retention


def test_a_hole_the_exchange_cannot_fill_is_recorded_once(dsn: str) -> None:
    hole = Hole("ohlcv", NOW_MS - 30 * HOUR, NOW_MS - 26 * HOUR, base="BTC")  # 4 candles
    with ReplayServer(ReplayConfig(now=NOW, holes=(hole,))) as srv:
        pool = ExchangePool(srv.url, rate_limit_ms=10)
        spec = StreamSpec("binance", "BTC/USDT:USDT", "ohlcv", "1h")
        (report,) = run(dsn, pool, [spec])
        (again,) = run(dsn, pool, [spec], resume=False)
        holes = [r for r in srv.requests if r.path == "/fapi/v1/klines"]
    assert report.status == "ok" and "1 gap(s) remain" in report.message
    assert [(g.missing_rows, ms(g.last_before), ms(g.first_after)) for g in report.gaps] == [
        (4, NOW_MS - 30.5 * HOUR, NOW_MS - 25.5 * HOUR)
    ]
    assert report.new_rows == len(closed_hours(SINCE, NOW_MS)) - 4
    assert len(holes) == 4  # per run: the page, then the hole asked for once more
    assert again.new_rows == 0 and len(again.gaps) == 1
    assert query(dsn, "select dataset, series, missing_rows from raw.collection_gaps") == [
        ("ohlcv", "1h", 4)
    ]
    # the exchange later has the candles: re-collecting the window fills and clears the gap
    with ReplayServer(ReplayConfig(now=NOW)) as healed:
        (refill,) = run(dsn, ExchangePool(healed.url, rate_limit_ms=10), [spec], resume=False)
    assert refill.new_rows == 4 and refill.gaps == []
    assert query(dsn, "select count(*) from raw.collection_gaps") == [(0,)]
    stamps = [c[0] for c in stored_candles(dsn, "binance", "BTC/USDT:USDT")]
    assert stamps == closed_hours(SINCE, NOW_MS)


def test_rows_missing_from_one_answer_are_fetched_again_not_left_as_a_gap(
    dsn: str, pool: ExchangePool, replay: ReplayServer
) -> None:
    spec = StreamSpec("okx", "ETH/USDT:USDT", "oi", "1h")
    fault = {"kind": "drop_rows", "path": "open-interest-history"}
    clean, report, rows = _clean_then_faulty(dsn, pool, replay, spec, fault)
    assert report.status == "ok" and report.gaps == [] and rows == clean


def test_a_missing_funding_print_is_a_gap(dsn: str) -> None:
    hole = Hole("funding", NOW_MS - 40 * HOUR, NOW_MS - 30 * HOUR)  # the 16:00 print of Jan 30
    with ReplayServer(ReplayConfig(now=NOW, holes=(hole,))) as srv:
        (report,) = run(
            dsn, ExchangePool(srv.url), [StreamSpec("bybit", "ETH/USDT:USDT", "funding")]
        )
    assert report.status == "ok" and report.new_rows == 8
    assert [(g.missing_rows, g.last_before.hour, g.first_after.hour) for g in report.gaps] == [
        (1, 8, 0)
    ]


def test_history_beyond_the_exchanges_retention_is_not_asked_for(
    dsn: str, pool: ExchangePool
) -> None:
    spec = StreamSpec("binance", "SOL/USDT:USDT", "oi", "1h")
    (report,) = run(dsn, pool, [spec], since=datetime(2024, 12, 1, tzinfo=UTC))
    assert report.status == "ok"
    assert "binance keeps oi for 30 days: collected from 2025-01-02T00:30:00Z" in report.message
    assert ms(report.first_ts) == NOW_MS - 30 * 24 * HOUR + HOUR / 2  # type: ignore[arg-type]


# ------------------------------------------------------------------ recorded bodies land


def test_recorded_bodies_land_in_the_raw_tables(dsn: str) -> None:
    with ReplayServer(ReplayConfig(source="recorded")) as srv:
        pool = ExchangePool(srv.url, rate_limit_ms=10)
        since = datetime(2025, 1, 1, tzinfo=UTC)
        specs = stream_specs(["binance", "okx"], ["BTC/USDT:USDT"], ["ohlcv", "funding", "oi"])
        reports = run(dsn, pool, specs, since=since)
    assert [r.status for r in reports] == ["ok"] * 6, [r.message for r in reports]
    klines = recorded_body("binance", "fapi_v1_klines")
    assert stored_candles(dsn, "binance", "BTC/USDT:USDT") == [
        [r[0], *(float(x) for x in r[1:6])] for r in klines
    ]
    # the recorded clock is 03:00: the first funding print only; okx OI in base currency
    assert query(
        dsn, "select exchange, funding_rate, mark_price from raw.funding_rates order by 1"
    ) == [
        ("binance", 0.0001, 93527.8),
        ("okx", 0.0001, None),
    ]
    okx = query(
        dsn,
        "select open_interest_amount, open_interest_value from raw.open_interest "
        "where exchange = 'okx' order by ts",
    )
    assert okx == [
        pytest.approx((29431.1506, 2776568340.51)),
        pytest.approx((29512.2752, 2777116911.35)),
        pytest.approx((29586.1377, 2781743815.53)),
    ]


# ------------------------------------------------------------------ writers and warehouse


def test_liquidations_land_idempotently_with_the_position_side(dsn: str) -> None:
    """No exchange here offers liquidations through ccxt 4.5.90; the writer is ready for
    one that does (ccxt's unified liquidation structure)."""
    market = {"contractSize": 1.0}
    unified = [
        {"timestamp": NOW_MS, "side": "sell", "price": 95000.0, "contracts": 0.5,
         "contractSize": 1.0, "baseValue": None, "quoteValue": 47500.0, "info": {}},
        {"timestamp": NOW_MS + 1, "side": "buy", "price": 95100.0, "contracts": 1.0,
         "contractSize": 1.0, "baseValue": None, "quoteValue": 95100.0, "info": {"id": "L1"}},
    ]  # fmt: skip
    rows = [_norm_liquidation(item, market) for item in unified]
    spec = StreamSpec("binance", "BTC/USDT:USDT", "liquidations")
    with connect(dsn) as conn:
        assert _write_liquidations(conn, spec, rows) == (2, 0)
        assert _write_liquidations(conn, spec, rows) == (0, 2)
    stored = query(dsn, "select liquidation_key, side, quantity from raw.liquidations order by ts")
    assert [(len(k), s, q) for k, s, q in stored] == [(64, "long", 0.5), (2, "short", 1.0)]


def test_an_unreachable_warehouse_raises_instead_of_being_swallowed(pool: ExchangePool) -> None:
    dead = "postgresql://nobody@127.0.0.1:1/brain"
    with pytest.raises(WarehouseUnavailableError):
        collect_stream(dead, StreamSpec("binance", "BTC/USDT", "ohlcv"), pool=pool, retry=FAST)
