"""marts.fct_features_hourly against a real PostgreSQL and a real dbt build.

Raw rows go into the landing tables of one database (``warehouse_dsn``); the mart is
built with ``dbt build --select +fct_features_hourly`` (which also runs the mart's dbt
unit tests and data tests). Three kinds of checks:

* a hand-computed scenario (SOL/USDT): the liquidation stamped one second after a
  bar's close, the funding print exactly at the close, the 24h boundary, NULLs;
* a brute-force Python reference of every formula on random, boundary-heavy data
  (ETH/USDT): every value of every bar;
* a look-ahead check: adding data stamped after a cut-off and rebuilding leaves every
  bar that closes at or before the cut-off unchanged.

Plus the readers: ``load_derivative_features`` and ``DataCollector``.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest

from brain_lib.dbt import DbtResult, run_dbt
from brain_lib.errors import ConfigError, MartNotBuiltError, UnknownSymbolError
from brain_lib.market.data import (
    FEATURE_COLUMNS,
    FUNDING_COLUMNS,
    LIQUIDATION_COLUMNS,
    DataCollector,
    load_derivative_features,
)

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent / "dbt_brain"
HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
SECOND = timedelta(seconds=1)
MICROSECOND = timedelta(microseconds=1)

# mart defaults (vars feature_window_hours, funding_zscore_prints, funding_zscore_min_prints)
ZSCORE_PRINTS = 21
ZSCORE_MIN_PRINTS = 3

UNIT_TESTS = [
    "fct_features_hourly::features_liquidations_point_in_time",
    "fct_features_hourly::features_funding_as_of_mean_and_zscore",
    "fct_features_hourly::features_open_interest_as_of_and_changes",
    "fct_features_hourly::features_sentiment_hourly",
    "fct_features_hourly::features_symbol_mapping",
    "stg_market__liquidations::liquidation_side_and_notional",
]


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ------------------------------------------------------------------ raw rows


@dataclass
class Raw:
    """Rows for the raw tables."""

    candles: list[tuple[Any, ...]]
    funding: list[tuple[Any, ...]]
    open_interest: list[tuple[Any, ...]]
    liquidations: list[tuple[Any, ...]]
    sentiment: list[tuple[Any, ...]]

    def insert(self, conn: psycopg.Connection[Any]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, "
                "close, volume) values (%s, %s, %s, %s, 1, 1, 1, 1, 1)",
                self.candles,
            )
            cur.executemany(
                "insert into raw.funding_rates (exchange, symbol, ts, funding_rate) "
                "values (%s, %s, %s, %s)",
                self.funding,
            )
            cur.executemany(
                "insert into raw.open_interest (exchange, symbol, period, ts, "
                "open_interest_amount, open_interest_value) values (%s, %s, %s, %s, %s, %s)",
                self.open_interest,
            )
            cur.executemany(
                "insert into raw.liquidations (exchange, symbol, liquidation_key, ts, side, "
                "price, quantity, notional) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                self.liquidations,
            )
            cur.executemany(
                "insert into raw.sentiment (source, item_key, ts, symbol, text, score) "
                "values (%s, %s, %s, %s, %s, %s)",
                self.sentiment,
            )


def hourly(exchange: str, symbol: str, first: datetime, n: int) -> list[tuple[Any, ...]]:
    return [(exchange, symbol, "1h", first + i * HOUR) for i in range(n)]


# The hand-computed scenario: binance SOL/USDT, bars 2024-06-01 00:00 .. 06-02 10:00.
SOL_FIRST = t("2024-06-01 00:00")
SOL_BARS = 35


def scenario() -> Raw:
    candles = hourly("binance", "SOL/USDT", SOL_FIRST, SOL_BARS)
    candles += hourly("okx", "SOL/USDT", SOL_FIRST, 1)  # the same symbol on a second venue
    candles += hourly("binance", "DOGE/USDT", SOL_FIRST, 3)  # no derivatives data at all
    candles += [("binance", "SOL/USDT", "4h", SOL_FIRST)]  # not an hourly candle
    return Raw(
        candles=candles,
        funding=[
            # exactly at the close of bar 07:00
            ("binance", "SOL/USDT", t("2024-06-01 08:00"), 0.0001),
            # a microsecond after the close of bar 15:00
            ("binance", "SOL/USDT", t("2024-06-01 16:00") + MICROSECOND, 0.0003),
            # unknown rate: skipped
            ("binance", "SOL/USDT", t("2024-06-01 20:00"), math.nan),
        ],
        open_interest=[],
        liquidations=[
            # exactly at the close of bar 09:00
            ("binance", "SOL/USDT", "A", t("2024-06-01 10:00"), "long", 10.0, 10.0, None),
            # one second after that close
            ("binance", "SOL/USDT", "B", t("2024-06-01 10:00:01"), "short", 4.0, 10.0, 40.0),
        ],
        sentiment=[],
    )


# The reference data: binance ETH/USDT candles, derivatives stored under the linear
# perpetual ETH/USDT:USDT, stamps crowded onto hour boundaries.
ETH_FIRST = t("2024-03-01 00:00")
ETH_BARS = 120
ETH_PERP = "ETH/USDT:USDT"


def _stamp(rng: random.Random, start: datetime, hours: int) -> datetime:
    """A random stamp; half of them on, a microsecond before or a second after a whole hour."""
    base = start + rng.randrange(hours) * HOUR
    kind = rng.random()
    if kind < 0.25:
        return base
    if kind < 0.35:
        return base - MICROSECOND
    if kind < 0.5:
        return base + SECOND
    return base + timedelta(seconds=rng.randrange(1, 3600))


def reference_data(seed: int = 7) -> Raw:
    rng = random.Random(seed)
    span_start, span_hours = ETH_FIRST - 30 * HOUR, ETH_BARS + 36
    funding = []
    for i in range(span_hours // 8):
        rate = rng.uniform(-0.0005, 0.001)
        if i == 7:
            rate = math.nan
        funding.append(("binance", ETH_PERP, span_start + i * 8 * HOUR, rate))
    # a print under the spot symbol of ANOTHER exchange must not leak in
    funding.append(("okx", "ETH/USDT", ETH_FIRST + 5 * HOUR, 0.5))

    oi_stamps = sorted({_stamp(rng, span_start, span_hours) for _ in range(400)})
    open_interest = []
    for stamp in oi_stamps:
        value = None if rng.random() < 0.1 else rng.uniform(1e6, 2e6)
        open_interest.append(("binance", ETH_PERP, "5m", stamp, rng.uniform(1000, 2000), value))
        if rng.random() < 0.1:  # a second period at the same stamp: averaged
            open_interest.append(("binance", ETH_PERP, "1h", stamp, rng.uniform(1000, 2000), None))

    liquidations = []
    for i in range(500):
        # from the 4th bar on, so the first bars come before the feed started
        stamp = _stamp(rng, ETH_FIRST + 3 * HOUR, ETH_BARS + 3)
        side = rng.choice(["long", "short", "long", "short", "LONG", " Short", None, "other"])
        price, quantity = rng.uniform(100, 200), rng.uniform(0.1, 5)
        notional = None if rng.random() < 0.2 else price * quantity * rng.uniform(0.9, 1.1)
        liquidations.append(
            ("binance", ETH_PERP, f"liq-{i}", stamp, side, price, quantity, notional)
        )

    sentiment = []
    for i in range(300):
        stamp = _stamp(rng, ETH_FIRST + 2 * HOUR, ETH_BARS + 3)
        symbol = rng.choice([None, "ETH", "eth", "ETH/USDT", "BTC", "ETH/USDT:USDT", ""])
        score = None if rng.random() < 0.05 else rng.uniform(-1, 1)
        sentiment.append(("news", f"item-{i}", stamp, symbol, f"text {i}", score))
    return Raw(
        candles=hourly("binance", "ETH/USDT", ETH_FIRST, ETH_BARS),
        funding=funding,
        open_interest=open_interest,
        liquidations=liquidations,
        sentiment=sentiment,
    )


# ------------------------------------------------------------- Python reference


def _notional(row: tuple[Any, ...]) -> float | None:
    _, _, _, _, _, price, quantity, notional = row
    if notional is not None:
        return float(notional)
    if price is None or quantity is None:
        return None
    return float(price) * float(quantity)


def _imbalance(long: float | None, short: float | None) -> float | None:
    if long is None or short is None or long + short == 0:
        return None
    return (long - short) / (long + short)


def reference_features(raw: Raw, exchange: str, symbol: str) -> dict[datetime, dict[str, Any]]:
    """Every feature of every 1h bar of (exchange, symbol), by brute force: for each bar,
    look at every data row and keep those stamped at or before its close."""
    data_symbol = ETH_PERP if symbol == "ETH/USDT" else symbol
    base = symbol.split("/")[0].upper()
    prints = sorted(
        (ts, rate)
        for ex, sym, ts, rate in raw.funding
        if ex == exchange and sym == data_symbol and not math.isnan(rate)
    )
    by_stamp: dict[datetime, list[tuple[float | None, float | None]]] = {}
    for ex, sym, _, ts, amount, value in raw.open_interest:
        if ex == exchange and sym == data_symbol:
            by_stamp.setdefault(ts, []).append((amount, value))

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    samples = sorted(
        (ts, mean([a for a, _ in rows]), mean([v for _, v in rows]))
        for ts, rows in by_stamp.items()
    )
    liquidations = [
        (row[3], (row[4] or "").strip().lower() or None, _notional(row))
        for row in raw.liquidations
        if row[0] == exchange and row[1] == data_symbol
    ]
    items = [
        (ts, score)
        for _, _, ts, sym, _, score in raw.sentiment
        if score is not None
        and ((sym or "").strip() == "" or sym.strip().upper() in (base, symbol.upper()))
    ]

    def oi_at(when: datetime) -> tuple[float | None, float | None] | None:
        known = [(a, v) for ts, a, v in samples if ts <= when]
        return known[-1] if known else None

    def change(now: float | None, then: tuple[float | None, float | None] | None) -> Any:
        if now is None or then is None or then[0] is None or then[0] == 0:
            return None
        return now / then[0] - 1

    out: dict[datetime, dict[str, Any]] = {}
    for ex, sym, timeframe, ts in raw.candles:
        if (ex, sym, timeframe) != (exchange, symbol, "1h"):
            continue
        close = ts + HOUR
        row: dict[str, Any] = {}
        known = [rate for stamp, rate in prints if stamp <= close]
        row["funding_rate"] = known[-1] if known else None
        in_day = [rate for stamp, rate in prints if close - DAY < stamp <= close]
        row["funding_rate_mean_24h"] = sum(in_day) / len(in_day) if in_day else None
        last = known[-ZSCORE_PRINTS:]
        z = None
        if len(last) >= ZSCORE_MIN_PRINTS and statistics.stdev(last) > 0:
            z = (last[-1] - statistics.fmean(last)) / statistics.stdev(last)
        row["funding_rate_zscore"] = z

        now = oi_at(close)
        row["open_interest"] = now[0] if now else None
        row["open_interest_value"] = now[1] if now else None
        row["open_interest_change_1h"] = change(row["open_interest"], oi_at(close - HOUR))
        row["open_interest_change_24h"] = change(row["open_interest"], oi_at(close - DAY))

        covered = any(stamp <= close for stamp, _, _ in liquidations)
        for suffix, width in (("1h", HOUR), ("24h", DAY)):
            window = [(s, n) for stamp, s, n in liquidations if close - width < stamp <= close]
            if not covered:
                long = short = count = None
            else:
                long = sum(n for s, n in window if s == "long" and n is not None)
                short = sum(n for s, n in window if s == "short" and n is not None)
                count = len(window)
            row[f"liq_long_notional_{suffix}"] = long
            row[f"liq_short_notional_{suffix}"] = short
            row[f"liq_count_{suffix}"] = count
            row[f"liq_imbalance_{suffix}"] = _imbalance(long, short)

        scores = [score for stamp, score in items if close - DAY < stamp <= close]
        started = any(stamp <= close for stamp, _ in items)
        row["sentiment_score_mean_24h"] = sum(scores) / len(scores) if scores else None
        row["sentiment_count_24h"] = len(scores) if started else None
        out[ts] = row
    return out


# ------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dbt_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dbt-derivatives")


@pytest.fixture(scope="module")
def raw_rows() -> Raw:
    a, b = scenario(), reference_data()
    return Raw(
        candles=a.candles + b.candles,
        funding=a.funding + b.funding,
        open_interest=a.open_interest + b.open_interest,
        liquidations=a.liquidations + b.liquidations,
        sentiment=a.sentiment + b.sentiment,
    )


@pytest.fixture(scope="module")
def built(warehouse_dsn: str, dbt_state: Path, raw_rows: Raw) -> DbtResult:
    with psycopg.connect(warehouse_dsn) as conn:
        raw_rows.insert(conn)
    return run_dbt(
        ["build", "--select", "+fct_features_hourly"],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
    )


@pytest.fixture(scope="module")
def mart(built: DbtResult, warehouse_dsn: str) -> pd.DataFrame:
    """The whole mart, indexed by (exchange, symbol, ts)."""
    with psycopg.connect(warehouse_dsn) as conn:
        cur = conn.execute("select * from marts.fct_features_hourly")
        names = [d.name for d in cur.description or []]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.set_index(["exchange", "symbol", "ts"]).sort_index()


@pytest.fixture
def collector(built: DbtResult, warehouse_dsn: str) -> Iterator[DataCollector]:
    with DataCollector(warehouse_dsn) as c:
        yield c


def bar(mart: pd.DataFrame, symbol: str, ts: str, exchange: str = "binance") -> pd.Series:
    return mart.loc[(exchange, symbol, pd.Timestamp(ts, tz="UTC"))]


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ----------------------------------------------------------------------- build


def test_build_runs_the_unit_tests(built: DbtResult) -> None:
    assert built.ok
    for name in UNIT_TESTS:
        assert re.search(rf"PASS {re.escape(name)}\b", built.output), name


def test_one_row_per_hourly_candle(mart: pd.DataFrame, raw_rows: Raw) -> None:
    hourly_keys = {
        (ex, sym, pd.Timestamp(ts)) for ex, sym, tf, ts in raw_rows.candles if tf == "1h"
    }
    assert set(mart.index) == hourly_keys
    assert (mart["closed_at"] == mart.index.get_level_values("ts") + HOUR).all()
    assert list(mart.columns) == ["closed_at", *FEATURE_COLUMNS]


# -------------------------------------------------------- the hand-made scenario


def test_liquidation_one_second_after_the_close_is_not_in_the_bar(mart: pd.DataFrame) -> None:
    # A (long 10 x 10, no notional given: price x quantity = 100) at 10:00:00, the
    # close of bar 09:00; B (short 40) at 10:00:01
    at_close = bar(mart, "SOL/USDT", "2024-06-01 09:00")
    assert at_close["liq_long_notional_1h"] == 100.0
    assert at_close["liq_short_notional_1h"] == 0.0
    assert at_close["liq_count_1h"] == 1
    assert at_close["liq_imbalance_1h"] == 1.0
    assert at_close["liq_short_notional_24h"] == 0.0
    assert at_close["liq_count_24h"] == 1

    after = bar(mart, "SOL/USDT", "2024-06-01 10:00")
    assert after["liq_long_notional_1h"] == 0.0
    assert after["liq_short_notional_1h"] == 40.0
    assert after["liq_count_1h"] == 1
    assert after["liq_imbalance_1h"] == -1.0
    assert after["liq_long_notional_24h"] == 100.0
    assert after["liq_short_notional_24h"] == 40.0
    assert after["liq_count_24h"] == 2
    assert after["liq_imbalance_24h"] == pytest.approx((100 - 40) / 140, rel=1e-15)


def test_liquidations_before_the_first_are_null_and_quiet_hours_zero(
    mart: pd.DataFrame,
) -> None:
    before = bar(mart, "SOL/USDT", "2024-06-01 08:00")  # closes 09:00, before A
    assert all(is_null(before[c]) for c in LIQUIDATION_COLUMNS)
    quiet = bar(mart, "SOL/USDT", "2024-06-01 12:00")
    assert quiet["liq_count_1h"] == 0
    assert quiet["liq_long_notional_1h"] == 0.0
    assert is_null(quiet["liq_imbalance_1h"])  # both zero
    assert quiet["liq_count_24h"] == 2


def test_24h_window_excludes_a_stamp_exactly_24h_before_the_close(mart: pd.DataFrame) -> None:
    # bar 06-02 09:00 closes 06-02 10:00: A (06-01 10:00:00) is out, B (10:00:01) in
    day_later = bar(mart, "SOL/USDT", "2024-06-02 09:00")
    assert day_later["liq_long_notional_24h"] == 0.0
    assert day_later["liq_short_notional_24h"] == 40.0
    assert day_later["liq_count_24h"] == 1
    assert day_later["liq_imbalance_24h"] == -1.0
    # and an hour later B has left too: zero, zero, NULL imbalance
    last = bar(mart, "SOL/USDT", "2024-06-02 10:00")
    assert last["liq_count_24h"] == 0
    assert is_null(last["liq_imbalance_24h"])


def test_funding_print_exactly_at_the_close_is_in(mart: pd.DataFrame) -> None:
    assert is_null(bar(mart, "SOL/USDT", "2024-06-01 06:00")["funding_rate"])
    at_close = bar(mart, "SOL/USDT", "2024-06-01 07:00")  # closes 08:00, the print's time
    assert at_close["funding_rate"] == 0.0001
    assert at_close["funding_rate_mean_24h"] == 0.0001
    assert is_null(at_close["funding_rate_zscore"])  # 1 print < 3
    # the 16:00:00.000001 print is a microsecond too late for bar 15:00
    assert bar(mart, "SOL/USDT", "2024-06-01 15:00")["funding_rate"] == 0.0001
    assert bar(mart, "SOL/USDT", "2024-06-01 16:00")["funding_rate"] == 0.0003
    # the NaN print at 20:00 is skipped: the latest known rate stays
    after_nan = bar(mart, "SOL/USDT", "2024-06-01 20:00")
    assert after_nan["funding_rate"] == 0.0003
    assert after_nan["funding_rate_mean_24h"] == pytest.approx(0.0002, rel=1e-12)


def test_candles_without_any_data_get_null_rows(mart: pd.DataFrame) -> None:
    doge = mart.loc[("binance", "DOGE/USDT")]
    assert len(doge) == 3
    derivatives = [c for c in FEATURE_COLUMNS if c != "sentiment_count_24h"]
    assert doge[derivatives].isna().all().all()
    # market-wide items (symbol NULL) of March count for every symbol: the sentiment
    # feed has started, and nothing falls in these bars' windows
    assert (doge["sentiment_count_24h"] == 0).all()
    okx = bar(mart, "SOL/USDT", "2024-06-01 00:00", exchange="okx")
    assert all(is_null(okx[c]) for c in derivatives)


# ------------------------------------------------------------ the reference


def test_every_feature_matches_the_reference(mart: pd.DataFrame, raw_rows: Raw) -> None:
    expected = reference_features(raw_rows, "binance", "ETH/USDT")
    assert len(expected) == ETH_BARS
    actual = mart.loc[("binance", "ETH/USDT")]
    mismatches = []
    for ts, row in expected.items():
        got = actual.loc[pd.Timestamp(ts)]
        for column, want in row.items():
            have = got[column]
            if want is None:
                ok = is_null(have)
            else:
                ok = not is_null(have) and have == pytest.approx(want, rel=1e-9, abs=1e-12)
            if not ok:
                mismatches.append(f"{ts:%m-%d %H:%M} {column}: mart {have!r}, reference {want!r}")
    assert not mismatches, "\n".join(mismatches[:20])
    # the data exercise every branch: values, NULLs and zeros all occur
    frame = pd.DataFrame.from_dict(expected, orient="index")
    for column in ("funding_rate_zscore", "open_interest_change_1h", "liq_imbalance_1h"):
        assert frame[column].notna().sum() > 10, column
    assert (frame["liq_count_1h"] == 0).any()
    assert frame["liq_count_1h"].isna().any()
    assert frame["sentiment_count_24h"].isna().any()


# ------------------------------------------------------------------- readers


def test_load_derivative_features(built: DbtResult, warehouse_dsn: str, mart: pd.DataFrame) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        frame = load_derivative_features(
            conn, "binance", "SOL/USDT", "2024-06-01 08:00", t("2024-06-01 11:00")
        )
        everything = load_derivative_features(conn, "binance", "SOL/USDT")
        none = load_derivative_features(conn, "binance", "NOPE/USDT")
        some = load_derivative_features(
            conn, "binance", "SOL/USDT", columns=["liq_count_1h", "funding_rate"]
        )
    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.index.name == "ts"
    assert list(frame.index) == [
        pd.Timestamp(f"2024-06-01 {h:02d}:00", tz="UTC") for h in (8, 9, 10)
    ]
    assert (frame.dtypes == "float64").all()
    assert frame.loc["2024-06-01 09:00", "liq_long_notional_1h"] == 100.0
    assert math.isnan(frame.loc["2024-06-01 08:00", "liq_count_1h"])
    assert len(everything) == SOL_BARS and everything.index.is_monotonic_increasing
    expected = mart.loc[("binance", "SOL/USDT")][list(FEATURE_COLUMNS)].astype("float64")
    pd.testing.assert_frame_equal(everything, expected, check_names=False, check_freq=False)
    assert none.empty and list(none.columns) == list(FEATURE_COLUMNS)
    assert isinstance(none.index, pd.DatetimeIndex)
    assert list(some.columns) == ["liq_count_1h", "funding_rate"]
    with (
        psycopg.connect(warehouse_dsn) as conn,
        pytest.raises(ConfigError, match="unknown feature"),
    ):
        load_derivative_features(conn, "binance", "SOL/USDT", columns=["close"])


def test_missing_mart_is_a_clear_error(fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn) as conn, pytest.raises(MartNotBuiltError, match="dbt build"):
        load_derivative_features(conn, "binance", "SOL/USDT")
    with (
        DataCollector(fresh_dsn) as c,
        pytest.raises(MartNotBuiltError, match="fct_features_hourly"),
    ):
        c.get_liquidation_features("SOL/USDT")


def test_collector_latest_bars(collector: DataCollector, mart: pd.DataFrame) -> None:
    liq = collector.get_liquidation_features("SOL/USDT", hours=3, exchange="binance")
    assert list(liq.columns) == list(LIQUIDATION_COLUMNS)
    assert list(liq.index) == [pd.Timestamp(f"2024-06-02 {h:02d}:00", tz="UTC") for h in (8, 9, 10)]
    assert liq.loc["2024-06-02 09:00", "liq_short_notional_24h"] == 40.0
    assert liq.loc["2024-06-02 10:00", "liq_count_24h"] == 0.0
    eth = collector.get_funding_features("ETH/USDT", hours=24)  # one exchange: no need to say
    assert list(eth.columns) == list(FUNDING_COLUMNS) and len(eth) == 24
    expected = mart.loc[("binance", "ETH/USDT")][list(FUNDING_COLUMNS)].iloc[-24:]
    pd.testing.assert_frame_equal(eth, expected.astype("float64"), check_names=False)
    oi = collector.get_open_interest_features("ETH/USDT", hours=2)
    assert oi["open_interest"].notna().all()
    assert len(collector.get_sentiment_features("ETH/USDT", hours=500)) == ETH_BARS


def test_collector_errors(collector: DataCollector) -> None:
    with pytest.raises(ConfigError, match="several exchanges"):
        collector.get_liquidation_features("SOL/USDT")
    with pytest.raises(UnknownSymbolError, match="NOPE/USDT"):
        collector.get_liquidation_features("NOPE/USDT")
    with pytest.raises(UnknownSymbolError, match=r"stored: .*ETH/USDT"):
        collector.get_funding_features("NOPE/USDT", exchange="binance")
    with pytest.raises(UnknownSymbolError, match="nothing at all on 'bybit'"):
        collector.get_funding_features("SOL/USDT", exchange="bybit")
    with pytest.raises(ConfigError, match="hours"):
        collector.get_funding_features("ETH/USDT", hours=0)


# ---------------------------------------------------- look-ahead (changes the data: last)


def test_no_look_ahead_when_later_data_arrives(
    mart: pd.DataFrame, warehouse_dsn: str, dbt_state: Path
) -> None:
    """Data stamped after a cut-off (even by one second) changes no bar that closes at
    or before the cut-off; bars after it do change."""
    cutoff = ETH_FIRST + 60 * HOUR
    rng = random.Random(99)
    late = [cutoff + SECOND, cutoff + MICROSECOND, cutoff + 30 * HOUR, cutoff + 2 * HOUR]
    with psycopg.connect(warehouse_dsn) as conn:
        for i, stamp in enumerate(late):
            conn.execute(
                "insert into raw.liquidations (exchange, symbol, liquidation_key, ts, side, "
                "notional) values ('binance', %s, %s, %s, %s, %s)",
                (ETH_PERP, f"late-{i}", stamp, rng.choice(["long", "short"]), 1e6),
            )
            conn.execute(
                "insert into raw.funding_rates (exchange, symbol, ts, funding_rate) "
                "values ('binance', %s, %s, %s) on conflict do nothing",
                (ETH_PERP, stamp, 0.05),
            )
            conn.execute(
                "insert into raw.open_interest (exchange, symbol, period, ts, "
                "open_interest_amount) values ('binance', %s, '1m', %s, %s)",
                (ETH_PERP, stamp, 1e9),
            )
            conn.execute(
                "insert into raw.sentiment (source, item_key, ts, symbol, score) "
                "values ('late', %s, %s, 'ETH', 1.0)",
                (f"late-{i}", stamp),
            )
    run_dbt(
        ["run", "--select", "fct_features_hourly"],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
    )
    with psycopg.connect(warehouse_dsn) as conn:
        cur = conn.execute(
            "select * from marts.fct_features_hourly where exchange = 'binance' "
            "and symbol = 'ETH/USDT' order by ts"
        )
        names = [d.name for d in cur.description or []]
        rebuilt = pd.DataFrame(cur.fetchall(), columns=names)
    rebuilt["ts"] = pd.to_datetime(rebuilt["ts"], utc=True)
    rebuilt = rebuilt.set_index("ts")[list(FEATURE_COLUMNS)]
    before = mart.loc[("binance", "ETH/USDT")][list(FEATURE_COLUMNS)]
    closes = rebuilt.index + HOUR
    known = closes <= cutoff
    assert known.sum() == 60
    # equal up to the last bits: a sum of doubles within an hour is added in the order
    # PostgreSQL reads the rows, which the new rows may change
    pd.testing.assert_frame_equal(
        rebuilt[known], before[known], check_exact=False, rtol=1e-12, atol=0
    )
    assert not rebuilt[~known].equals(before[~known])
    first_after = rebuilt.loc[pd.Timestamp(cutoff)]
    assert first_after["funding_rate"] == 0.05  # the prints just after the cut-off
    assert first_after["liq_long_notional_1h"] + first_after["liq_short_notional_1h"] >= 2e6
