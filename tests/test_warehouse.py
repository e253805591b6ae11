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


def test_a_revision_of_the_open_last_bar_is_applied_of_a_settled_one_refused(
    warehouse_dsn: str,
) -> None:
    """An exchange revises its last bar: a candle stored while its bar (or the next)
    was still open is provisional and its revision applied; a settled candle keeps
    its values. Both arrivals are kept in raw.ohlcv_revisions, neither is
    "unchanged"; the same values again are unchanged and no revision."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    bars = pd.DataFrame(
        {
            "ts": [now - pd.Timedelta(hours=6), now],  # settled, still open
            "open": [1.0, 1.0],
            "high": [2.0, 2.0],
            "low": [0.5, 0.5],
            "close": [1.5, 1.5],
            "volume": [10.0, 10.0],
        }
    )
    key = {"exchange": "rev", "symbol": "SOL/USDT", "timeframe": "1h"}
    with connect(warehouse_dsn) as conn:
        # the settled candle was stored long ago (its loaded_at is what decides)
        copy_ohlcv(conn, bars.iloc[:1], **key)
        conn.execute(
            "update raw.ohlcv set loaded_at = ts + interval '3 hours' where exchange = 'rev'"
        )
        copy_ohlcv(conn, bars.iloc[1:], **key)
    later = bars.assign(close=[1.25, 1.75], volume=[10.0, 12.0])
    with connect(warehouse_dsn) as conn:
        report = copy_ohlcv(conn, later, source="replay", **key)
    assert (report.added, report.unchanged, report.revised, report.refused) == (0, 0, 1, 1)
    assert report.refused_ts == (now - pd.Timedelta(hours=6),)
    with connect(warehouse_dsn) as conn:
        stored = conn.execute(
            "select close, volume from raw.ohlcv where exchange = 'rev' order by ts"
        ).fetchall()
        revisions = conn.execute(
            "select ts, old_close, new_close, decision, rule, source from raw.ohlcv_revisions "
            "where exchange = 'rev' order by ts"
        ).fetchall()
    assert stored == [(1.5, 10.0), (1.75, 12.0)]
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in revisions] == [
        (now - pd.Timedelta(hours=6), 1.5, 1.25, "refused", "replay"),
        (now, 1.5, 1.75, "applied", "replay"),
    ]
    assert "settled" in revisions[0][4] and "provisional" in revisions[1][4]
    with connect(warehouse_dsn) as conn:
        again = copy_ohlcv(conn, later.iloc[1:], **key)
        count = conn.execute(
            "select count(*) from raw.ohlcv_revisions where exchange = 'rev'"
        ).fetchone()
    assert (again.added, again.unchanged, again.revised) == (0, 1, 0) and count == (2,)


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
