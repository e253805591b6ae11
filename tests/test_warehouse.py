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


# ------------------------------------------------ the append-only fast path of copy_ohlcv


def _series(dsn: str, exchange: str) -> list[tuple]:  # type: ignore[type-arg]
    with connect(dsn) as conn:
        return conn.execute(
            "select symbol, timeframe, ts, open, high, low, close, volume from raw.ohlcv "
            "where exchange = %s order by symbol, ts",
            (exchange,),
        ).fetchall()


def test_the_fast_path_and_the_upsert_path_land_the_same_rows_exactly_once(
    warehouse_dsn: str,
) -> None:
    """The same 900 candles in three batches: oldest first (each batch newer than
    everything stored: COPYed straight in) and newest first (each batch older than the
    newest stored: staged and merged). Both land every candle once, with equal values."""
    candles = generate_candles("ETH/USDT", 900, seed=3)
    batches = [candles.iloc[i : i + 300] for i in (0, 300, 600)]
    key = {"symbol": "ETH/USDT", "timeframe": "1h"}
    with connect(warehouse_dsn) as conn:
        forward = [copy_ohlcv(conn, b, exchange="fast", **key) for b in batches]
        backward = [copy_ohlcv(conn, b, exchange="merge", **key) for b in reversed(batches)]
    assert [(r.added, r.copied, r.unchanged) for r in forward] == [(300, 300, 0)] * 3
    # the newest batch goes first into an empty series (straight COPY), the older ones merge
    assert [(r.added, r.copied, r.unchanged) for r in backward] == [
        (300, 300, 0),
        (300, 0, 0),
        (300, 0, 0),
    ]
    fast, merged = _series(warehouse_dsn, "fast"), _series(warehouse_dsn, "merge")
    assert len(fast) == 900 and fast == merged
    # everything again, in one batch: nothing is newer than the newest stored candle
    with connect(warehouse_dsn) as conn:
        again = copy_ohlcv(conn, candles, exchange="fast", **key)
    assert (again.added, again.copied, again.unchanged, again.revised) == (0, 0, 900, 0)
    assert _series(warehouse_dsn, "fast") == fast


def test_a_partly_overlapping_batch_copies_only_what_is_newer_than_the_newest_stored(
    warehouse_dsn: str,
) -> None:
    candles = generate_candles("SOL/USDT", 400, seed=4)
    key = {"exchange": "overlap", "symbol": "SOL/USDT", "timeframe": "1h"}
    with connect(warehouse_dsn) as conn:
        copy_ohlcv(conn, candles.iloc[:100], **key)
        copy_ohlcv(conn, candles.iloc[300:350], **key)
        # 50..99 stored, 100..299 missing (older than the newest stored: merged),
        # 300..349 stored, 350..399 new (newer than the newest: copied)
        report = copy_ohlcv(conn, candles.iloc[50:400], **key)
    assert (report.added, report.copied, report.unchanged, report.revised) == (250, 50, 100, 0)
    stored = _series(warehouse_dsn, "overlap")
    assert len(stored) == 400 == len({row[2] for row in stored})
    assert [row[2] for row in stored] == list(candles["ts"])
    assert [row[6] for row in stored] == list(candles["close"])


@pytest.mark.parametrize(("second_start", "total"), [(0, 1000), (500, 1500)])
def test_two_concurrent_loads_of_one_series_land_every_row_once(
    warehouse_dsn: str, second_start: int, total: int
) -> None:
    """The second load starts while the first has copied but not committed: it waits on
    the series' lock, then sees the first's rows and merges (no duplicate-key error,
    no row twice). Without the lock both would COPY into an empty series."""
    import threading
    import time

    candles = generate_candles("BTC/USDT", 1500, seed=5)
    key = {"exchange": f"race{second_start}", "symbol": "BTC/USDT", "timeframe": "1h"}
    reports: dict[str, object] = {}

    def second() -> None:
        try:
            with connect(warehouse_dsn) as conn:
                reports["second"] = copy_ohlcv(
                    conn, candles.iloc[second_start : second_start + 1000], **key
                )
        except Exception as exc:  # surfaced below
            reports["second"] = exc

    with connect(warehouse_dsn) as first:
        reports["first"] = copy_ohlcv(first, candles.iloc[:1000], **key)
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 20
        with connect(warehouse_dsn, autocommit=True) as probe:
            while time.monotonic() < deadline:
                waiting = probe.execute("select count(*) from pg_locks where not granted")
                row = waiting.fetchone()
                if row and row[0]:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the second load never waited for the first")
    thread.join(timeout=30)
    first_report, second_report = reports["first"], reports["second"]
    assert not isinstance(second_report, Exception), second_report
    assert (first_report.added, first_report.copied) == (1000, 1000)  # type: ignore[attr-defined]
    assert second_report.unchanged == 1000 - second_start  # type: ignore[attr-defined]
    assert second_report.added == total - 1000  # type: ignore[attr-defined]
    stored = _series(warehouse_dsn, key["exchange"])
    assert [row[2] for row in stored] == list(candles["ts"].iloc[:total])
