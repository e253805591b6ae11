"""The warehouse on a real PostgreSQL: COPY loads, idempotence, reads, clear errors."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from brain_lib.config import Settings
from brain_lib.errors import ConfigError, DataError, UnknownSymbolError, WarehouseUnavailableError
from brain_lib.market import generate_candles
from brain_lib.warehouse import (
    EmbeddedWarehouse,
    connect,
    copy_ohlcv,
    load_ohlcv,
    parse_dsn,
    resolve_dsn,
)


def _count(dsn: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute("select count(*) from raw.ohlcv").fetchone()
    assert row is not None
    return int(row[0])


def test_copy_is_idempotent_and_round_trips(warehouse_dsn: str) -> None:
    candles = generate_candles("BTC/USDT", 500, seed=1)
    with connect(warehouse_dsn) as conn:
        first = copy_ohlcv(conn, candles, exchange="ex", symbol="BTC/USDT", timeframe="1h")
    assert (first.added, first.unchanged) == (500, 0)
    # the same range again, plus 100 new bars: only the new bars are added
    longer = generate_candles("BTC/USDT", 600, seed=1)
    with connect(warehouse_dsn) as conn:
        second = copy_ohlcv(conn, longer, exchange="ex", symbol="BTC/USDT", timeframe="1h")
    assert (second.added, second.unchanged) == (100, 500)
    assert _count(warehouse_dsn) == 600
    with connect(warehouse_dsn) as conn:
        back = load_ohlcv(conn, exchange="ex", symbol="BTC/USDT", timeframe="1h")
    expected = longer.set_index("ts")[["open", "high", "low", "close", "volume"]]
    pd.testing.assert_frame_equal(back, expected, check_freq=False, check_names=False)
    assert str(back.index.tz) == "UTC"


def test_load_window_is_half_open(warehouse_dsn: str) -> None:
    with connect(warehouse_dsn) as conn:
        frame = load_ohlcv(
            conn,
            exchange="ex",
            symbol="BTC/USDT",
            timeframe="1h",
            start=pd.Timestamp("2025-01-01T10:00Z"),
            end=pd.Timestamp("2025-01-01T20:00Z"),
        )
    assert len(frame) == 10
    assert frame.index[0] == pd.Timestamp("2025-01-01T10:00Z")
    assert frame.index[-1] == pd.Timestamp("2025-01-01T19:00Z")


def test_unknown_symbol_and_empty_range_are_named(warehouse_dsn: str) -> None:
    with connect(warehouse_dsn) as conn:
        with pytest.raises(UnknownSymbolError, match=r"unknown symbol 'DOGE/USDT'.*BTC/USDT"):
            load_ohlcv(conn, exchange="ex", symbol="DOGE/USDT", timeframe="1h")
        with pytest.raises(DataError, match="no 1h candles for BTC/USDT"):
            load_ohlcv(
                conn,
                exchange="ex",
                symbol="BTC/USDT",
                timeframe="1h",
                start=pd.Timestamp("2030-01-01T00:00Z"),
                end=pd.Timestamp("2030-02-01T00:00Z"),
            )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="volume"), "missing column"),
        (
            lambda f: f.assign(close=f["close"].astype(object).where(f.index != 7, "abc")),
            "row 8: column close is not a number",
        ),
        (
            lambda f: f.assign(high=f["high"].where(f.index != 3, None)),
            "row 4: empty value in high",
        ),
        (
            lambda f: f.assign(ts=f["ts"].where(f.index != 5, f["ts"].iloc[4])),
            "row 6: duplicate timestamp",
        ),
    ],
)
def test_malformed_candles_write_nothing(warehouse_dsn: str, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    before = _count(warehouse_dsn)
    bad = mutate(generate_candles("ETH/USDT", 20, seed=2))
    with pytest.raises(DataError, match=message), connect(warehouse_dsn) as conn:
        copy_ohlcv(conn, bad, exchange="ex", symbol="ETH/USDT", timeframe="1h", source="file.csv")
    assert _count(warehouse_dsn) == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "must start with postgresql://"),
        ("postgresql://user@/db", "names no host"),
        ("postgresql://user@host:5432/", "names no database"),
        ("postgresql://user@host:notaport/db", "invalid port"),
    ],
)
def test_malformed_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_dsn(url)


def test_unreachable_warehouse_is_one_clear_error() -> None:
    with (
        pytest.raises(
            WarehouseUnavailableError,
            match=re.escape("cannot reach the warehouse at postgresql://u@127.0.0.1:1/db"),
        ),
        connect("postgresql://u:secret@127.0.0.1:1/db", timeout=2),
    ):
        pass


def test_database_url_setting_wins_over_embedded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path, database_url="postgresql://u@127.0.0.1:1/db")
    assert resolve_dsn(settings) == "postgresql://u@127.0.0.1:1/db"
    assert not (tmp_path / "pg").exists()  # nothing embedded was started or created


def test_embedded_lifecycle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    warehouse = EmbeddedWarehouse(home)
    assert warehouse.status()["running"] is False
    url = warehouse.start()
    try:
        assert warehouse.is_running() and "/brain?" in url
        with connect(url) as conn:
            assert conn.execute("select current_database()").fetchone() == ("brain",)
        assert warehouse.start() == url  # starting again reuses the running server
    finally:
        assert warehouse.stop() is True
    assert warehouse.stop() is False
    assert warehouse.status()["running"] is False
