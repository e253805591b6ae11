"""Data quality on a real PostgreSQL, through real Great Expectations checkpoint runs.

One database for the module (``warehouse_dsn``). Each planted defect lives in its own
series (symbol), so every test validates a batch that holds exactly one kind of defect
and checks that exactly the expectation meant for it fails, with the right count.
Quarantine tables are append-only, so tests that quarantine use their own symbols.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from brain_lib import quality
from brain_lib.errors import ConfigError, QualityError
from brain_lib.market import generate_candles
from brain_lib.warehouse import connect, copy_ohlcv, load_ohlcv
from expectations import QualitySettings, build_suites

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
EXCHANGE = "test"
TF = "1h"
BARS = 200
START = pd.Timestamp("2025-01-01T00:00Z")
END = START + pd.Timedelta(hours=BARS)
HOUR = pd.Timedelta(hours=1)

OHLCV_EXPECTATIONS = {
    "expect_candle_high_at_top": "blocking",
    "expect_candle_low_at_bottom": "blocking",
    "expect_candle_prices_positive": "blocking",
    "expect_candle_volume_non_negative": "blocking",
    "expect_one_candle_per_bar": "blocking",
    "expect_candle_ts_aligned": "blocking",
    "expect_candle_prices_plausible": "blocking",
    "expect_candle_ts_in_range": "blocking",
    "expect_candle_not_a_spike": "blocking",
    "expect_no_candle_gap_longer_than": "warning",
    "expect_candle_move_within": "warning",
}


def _clean(symbol: str) -> pd.DataFrame:
    frame = generate_candles(symbol, BARS, seed=3, start=START).drop(columns=["regime"])
    return frame.reset_index(drop=True)


def _high_below_low(frame: pd.DataFrame) -> pd.DataFrame:
    lo, hi = frame.loc[50, "low"], frame.loc[50, "high"]
    frame.loc[50, ["high", "low"]] = [lo, hi]  # swapped: high < low
    return frame


def _second_candle_in_a_bar(frame: pd.DataFrame) -> pd.DataFrame:
    extra = frame.loc[[40]].copy()
    extra["ts"] = extra["ts"] + pd.Timedelta(minutes=30)  # a close-time-ish stamp
    return pd.concat([frame, extra]).sort_values("ts").reset_index(drop=True)


def _gap(frame: pd.DataFrame) -> pd.DataFrame:
    # 6 missing bars (more than the default 3) and, elsewhere, 2 (allowed)
    return frame.drop(index=[*range(60, 66), 120, 121]).reset_index(drop=True)


def _huge(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[90, "high"] = 1e10  # above any price: a typo or an overflow
    return frame


def _wick(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[95, "low"] = frame.loc[95, "low"] / 50  # a bad print, both neighbours normal
    return frame


def _far_future(frame: pd.DataFrame) -> pd.DataFrame:
    extra = frame.iloc[[-1]].copy()
    extra["ts"] = pd.Timestamp("2074-02-02", tz="UTC")  # epoch seconds read as ms, or a typo
    return pd.concat([frame, extra]).reset_index(drop=True)


def _negative_volume(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[70, "volume"] = -5.0
    return frame


def _spike(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[80, ["close", "high"]] = frame.loc[80, "close"] * 3  # +200%, then back
    return frame


def _misaligned(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[90, "ts"] = frame.loc[90, "ts"] + pd.Timedelta(minutes=1)
    return frame


def _zero_price(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[30, "low"] = 0.0
    return frame


# symbol -> (defect, {expectation: unexpected rows})
DEFECTS = {
    "HILO/USDT": (
        _high_below_low,
        {"expect_candle_high_at_top": 1, "expect_candle_low_at_bottom": 1},
    ),
    "DUP/USDT": (
        _second_candle_in_a_bar,
        {"expect_one_candle_per_bar": 2, "expect_candle_ts_aligned": 1},
    ),
    "GAP/USDT": (_gap, {"expect_no_candle_gap_longer_than": 1}),
    "NEGVOL/USDT": (_negative_volume, {"expect_candle_volume_non_negative": 1}),
    "SPIKE/USDT": (_spike, {"expect_candle_move_within": 2}),
    "MISALIGNED/USDT": (_misaligned, {"expect_candle_ts_aligned": 1}),
    "ZERO/USDT": (_zero_price, {"expect_candle_prices_positive": 1}),
    "HUGE/USDT": (_huge, {"expect_candle_prices_plausible": 1, "expect_candle_not_a_spike": 1}),
    "WICK/USDT": (_wick, {"expect_candle_not_a_spike": 1}),
    "FAR/USDT": (
        _far_future,
        {"expect_candle_ts_in_range": 1, "expect_no_candle_gap_longer_than": 1},
    ),
}
# symbols of the gate tests (their rows get quarantined), loaded with the same defects
GATE_SYMBOLS = {
    "GATE-CLEAN/USDT": None,
    "GATE-HILO/USDT": _high_below_low,
    "GATE-SPIKE/USDT": _spike,
    "GATE-SEVERITY/USDT": _spike,
    "Q-HILO/USDT": _high_below_low,
    "Q-SPIKE/USDT": _spike,
    "Q-GAP/USDT": _gap,
    "EXCL/USDT": _high_below_low,
}


@pytest.fixture(scope="module")
def dsn(warehouse_dsn: str) -> str:
    with connect(warehouse_dsn) as conn:
        for symbol in ["CLEAN/USDT", "BTC/USDT:USDT", "O'DD\\:X/USDT", *DEFECTS]:
            frame = _clean(symbol)
            if symbol in DEFECTS:
                frame = DEFECTS[symbol][0](frame)
            copy_ohlcv(conn, frame, exchange=EXCHANGE, symbol=symbol, timeframe=TF)
        for symbol, defect in GATE_SYMBOLS.items():
            frame = _clean(symbol)
            frame = defect(frame) if defect is not None else frame
            copy_ohlcv(conn, frame, exchange=EXCHANGE, symbol=symbol, timeframe=TF)
    return warehouse_dsn


SYMBOLS_TWO = ("SPIKE/USDT", "CLEAN/USDT")


def _validate(dsn: str, symbol: str, **kwargs: object) -> quality.QualityReport:
    return quality.validate_table(
        dsn, "ohlcv", exchange=EXCHANGE, symbol=symbol, timeframe=TF, **kwargs
    )


def _failed(report: quality.QualityReport) -> dict[str, int | None]:
    return {r.expectation: r.unexpected_count for r in report.failures}


def _rows(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with connect(dsn) as conn:
        return list(conn.execute(query, params).fetchall())


# ------------------------------------------------------------------ the suites


def test_a_clean_batch_passes_every_expectation(dsn: str) -> None:
    report = _validate(dsn, "CLEAN/USDT", start=START, end=END)
    assert report.success and report.ok
    assert {r.expectation: r.severity for r in report.results} == OHLCV_EXPECTATIONS
    assert all(r.observed_value == 0 and r.unexpected_count == 0 for r in report.results)
    assert report.row_count == BARS
    assert report.first_ts == START and report.last_ts == END - HOUR
    assert report.suite == "raw.ohlcv"
    # a psycopg connection works as well as a URL (GX connects on its own)
    with connect(dsn) as conn:
        again = quality.validate_table(
            conn, "ohlcv", exchange=EXCHANGE, symbol="CLEAN/USDT", start=START + 100 * HOUR
        )
    assert again.success and again.row_count == BARS - 100


@pytest.mark.parametrize("symbol", list(DEFECTS))
def test_each_planted_defect_is_caught_by_its_expectation(dsn: str, symbol: str) -> None:
    expected = DEFECTS[symbol][1]
    report = _validate(dsn, symbol)
    assert _failed(report) == expected
    blocking = {e for e in expected if OHLCV_EXPECTATIONS[e] == "blocking"}
    assert {r.expectation for r in report.blocking_failures} == blocking
    assert report.ok is (not blocking)


def test_high_below_low_is_caught_by_both_price_rules(dsn: str) -> None:
    # high < low can only happen when high < max(open, close) or low > min(open, close)
    rows = _rows(
        dsn,
        "select high < low from raw.ohlcv where symbol = %s and ts = %s",
        ("HILO/USDT", START + 50 * HOUR),
    )
    assert rows == [(True,)]
    assert set(_failed(_validate(dsn, "HILO/USDT"))) == {
        "expect_candle_high_at_top",
        "expect_candle_low_at_bottom",
    }


def test_a_literal_duplicate_key_cannot_land_in_raw_ohlcv(dsn: str) -> None:
    """Why the uniqueness rule is per bar: raw.ohlcv's key refuses a literal duplicate."""
    with (
        pytest.raises(psycopg.errors.UniqueViolation),
        connect(dsn) as conn,
    ):
        conn.execute(
            "insert into raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, "
            "volume) select exchange, symbol, timeframe, ts, open, high, low, close, volume "
            "from raw.ohlcv where symbol = 'CLEAN/USDT' limit 1"
        )


def test_one_candle_per_bar_catches_a_literal_duplicate_where_no_key_holds(dsn: str) -> None:
    """The ohlcv suite is table-agnostic: on a copy without the key (a landing table),
    the same expectation catches an exact duplicate (exchange, symbol, timeframe, ts)."""
    with connect(dsn) as conn:
        conn.execute("create table public.ohlcv_landing as select * from raw.ohlcv limit 0")
        conn.execute(
            "insert into public.ohlcv_landing select * from raw.ohlcv where symbol = 'CLEAN/USDT'"
        )
        conn.execute(
            "insert into public.ohlcv_landing select * from raw.ohlcv "
            "where symbol = 'CLEAN/USDT' and ts = %s",
            (START + 10 * HOUR,),
        )
    results, _, _ = quality._run_checkpoint(
        dsn,
        quality.TABLES["ohlcv"],
        {},
        "SELECT * FROM public.ohlcv_landing",
        "landing-run",
        QualitySettings(),
        None,
    )
    failed = {r.expectation: r.unexpected_count for r in results if not r.success}
    assert failed == {"expect_one_candle_per_bar": 2}


def test_an_expectation_that_cannot_run_fails_and_says_why(dsn: str) -> None:
    results, _, _ = quality._run_checkpoint(
        dsn,
        quality.TABLES["ohlcv"],
        {},
        "SELECT 1 AS nothing",  # no candle columns at all
        "broken-run",
        QualitySettings(),
        None,
    )
    assert len(results) == len(OHLCV_EXPECTATIONS)
    assert not any(r.success for r in results)
    assert all("does not exist" in (r.exception or "") for r in results)


def test_filters_with_quotes_colons_and_backslashes_reach_postgresql_intact(dsn: str) -> None:
    for symbol in ("BTC/USDT:USDT", "O'DD\\:X/USDT"):
        report = _validate(dsn, symbol, start=START + 10 * HOUR, end=START + 20 * HOUR)
        assert report.row_count == 10 and report.success, symbol


def test_bounds_come_from_settings(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAIN_QUALITY_MAX_GAP_BARS", "6")
    monkeypatch.setenv("BRAIN_QUALITY_MAX_BAR_MOVE", "5")
    loose = QualitySettings()
    assert (loose.max_gap_bars, loose.max_bar_move) == (6, 5.0)
    assert _validate(dsn, "GAP/USDT", settings=loose).success
    assert _validate(dsn, "SPIKE/USDT", settings=loose).success
    tight = QualitySettings(max_gap_bars=1)  # the 2-bar gap now counts too
    assert _failed(_validate(dsn, "GAP/USDT", settings=tight)) == {
        "expect_no_candle_gap_longer_than": 2
    }


def test_suites_keep_severity_and_bounds_through_the_context() -> None:
    """GX stores expectations without fields equal to a class default and reloads a
    missing severity as critical; the suites must survive add_or_update unchanged."""
    settings = QualitySettings(max_gap_bars=7, severity={"expect_candle_high_at_top": "warning"})
    context = quality._gx_context()
    stored = {s.name: context.suites.add_or_update(s) for s in build_suites(settings)}
    assert set(stored) == {
        "raw.ohlcv",
        "raw.funding_rates",
        "raw.open_interest",
        "raw.liquidations",
        "raw.model_metrics",
    }
    reloaded = context.suites.get("raw.ohlcv")
    by_type = {e.expectation_type: e for e in reloaded.expectations}
    assert by_type["expect_candle_high_at_top"].severity.value == "warning"
    assert by_type["expect_candle_move_within"].severity.value == "warning"
    assert by_type["expect_candle_low_at_bottom"].severity.value == "critical"
    gap = by_type["expect_no_candle_gap_longer_than"]
    assert gap.max_gap_bars == 7 and "* 8" in gap.unexpected_rows_query
    quality._GX.suites_key = None  # the next validation re-syncs the default suites


# ------------------------------------------------------- results and quarantine


def test_every_result_is_recorded(dsn: str) -> None:
    report = _validate(dsn, "NEGVOL/USDT", start=START, end=END, run_id="run-record")
    with connect(dsn) as conn:
        assert quality.record_results(conn, report) == len(OHLCV_EXPECTATIONS)
    rows = _rows(
        dsn,
        "select expectation, severity, success, observed_value, unexpected_count, "
        "element_count, suite, table_name, exchange, symbol, timeframe, batch_start, "
        "batch_end, column_name from raw.data_quality_results where run_id = %s",
        ("run-record",),
    )
    assert len(rows) == len(OHLCV_EXPECTATIONS)
    by_name = {row[0]: row for row in rows}
    volume = by_name["expect_candle_volume_non_negative"]
    assert volume[1:6] == ("blocking", False, 1, 1, BARS)
    assert volume[6:11] == ("raw.ohlcv", "ohlcv", EXCHANGE, "NEGVOL/USDT", TF)
    assert (volume[11], volume[12]) == (START, END)
    assert volume[13] == "volume"
    assert all(row[2] for name, row in by_name.items() if name != volume[0])
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), connect(dsn) as conn:
        conn.execute("delete from raw.data_quality_results where run_id = 'run-record'")


def test_failing_rows_are_quarantined_with_their_reason_once(dsn: str) -> None:
    report = _validate(dsn, "Q-HILO/USDT", run_id="run-q1")
    with connect(dsn) as conn:
        added = quality.quarantine(conn, report)
    assert added == {"expect_candle_high_at_top": 1, "expect_candle_low_at_bottom": 1}
    rows = _rows(
        dsn,
        "select ts, expectation, reason, severity, run_id, high < low "
        "from raw.quarantine_ohlcv where symbol = 'Q-HILO/USDT' order by expectation",
    )
    bad_ts = START + 50 * HOUR
    assert rows == [
        (
            bad_ts,
            "expect_candle_high_at_top",
            "high is at least max(open, close)",
            "blocking",
            "run-q1",
            True,
        ),
        (
            bad_ts,
            "expect_candle_low_at_bottom",
            "low is at most min(open, close)",
            "blocking",
            "run-q1",
            True,
        ),
    ]
    # the same batch again: nothing new; the raw row is still there
    again = _validate(dsn, "Q-HILO/USDT", run_id="run-q2")
    with connect(dsn) as conn:
        assert quality.quarantine(conn, again) == {
            "expect_candle_high_at_top": 0,
            "expect_candle_low_at_bottom": 0,
        }
    assert _rows(dsn, "select count(*) from raw.quarantine_ohlcv where symbol = 'Q-HILO/USDT'") == [
        (2,)
    ]
    assert _rows(
        dsn, "select count(*) from raw.ohlcv where symbol = 'Q-HILO/USDT' and ts = %s", (bad_ts,)
    ) == [(1,)]
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), connect(dsn) as conn:
        conn.execute("delete from raw.quarantine_ohlcv where symbol = 'Q-HILO/USDT'")


def test_gaps_are_reported_not_quarantined_and_warnings_can_be_kept(dsn: str) -> None:
    with connect(dsn) as conn:
        assert quality.quarantine(conn, _validate(dsn, "Q-GAP/USDT")) == {}
    kept = QualitySettings(quarantine_warnings=False)
    with connect(dsn) as conn:
        assert quality.quarantine(conn, _validate(dsn, "Q-SPIKE/USDT", settings=kept)) == {}
        assert quality.quarantine(conn, _validate(dsn, "Q-SPIKE/USDT")) == {
            "expect_candle_move_within": 2
        }
    assert _rows(dsn, "select count(*) from raw.quarantine_ohlcv where symbol = 'Q-GAP/USDT'") == [
        (0,)
    ]


def test_training_leaves_quarantined_candles_out(dsn: str) -> None:
    report = _validate(dsn, "EXCL/USDT")
    with connect(dsn) as conn:
        quality.quarantine(conn, report)
    with connect(dsn) as conn:
        stamps = quality.quarantined_timestamps(conn, EXCHANGE, "EXCL/USDT", TF, START, END)
        candles = load_ohlcv(conn, exchange=EXCHANGE, symbol="EXCL/USDT", timeframe=TF)
        kept = quality.exclude_quarantined(
            conn, candles, exchange=EXCHANGE, symbol="EXCL/USDT", timeframe=TF
        )
    assert stamps == [START + 50 * HOUR]
    assert len(candles) == BARS and len(kept) == BARS - 1
    assert (START + 50 * HOUR) not in kept.index
    assert (kept["high"] >= kept["low"]).all()
    # the training window's view of the batch no longer holds the row
    assert _validate(dsn, "EXCL/USDT", exclude_quarantined=True).success


# ----------------------------------------------------------------------- the gate


def test_gate_passes_a_clean_window(dsn: str) -> None:
    decision = quality.gate_training_window(
        dsn, EXCHANGE, "GATE-CLEAN/USDT", TF, START, END, run_id="gate-clean"
    )
    assert decision.ok and decision.reasons == [] and decision.quarantined == 0
    recorded = _rows(
        dsn, "select count(*) from raw.data_quality_results where run_id = 'gate-clean'"
    )
    assert recorded == [(len(OHLCV_EXPECTATIONS),)]


def test_gate_blocks_a_window_with_a_blocking_failure_then_lets_the_next_run_train(
    dsn: str,
) -> None:
    first = quality.gate_training_window(
        dsn, EXCHANGE, "GATE-HILO/USDT", TF, START, END, run_id="gate-1"
    )
    assert not first.ok
    assert len(first.reasons) == 2
    assert any("expect_candle_high_at_top failed on 1 of 200 candles" in r for r in first.reasons)
    assert first.quarantined == 2
    # the next run's window leaves the quarantined candle out and passes
    second = quality.gate_training_window(
        dsn, EXCHANGE, "GATE-HILO/USDT", TF, START, END, run_id="gate-2"
    )
    assert second.ok, second.reasons
    assert second.report.row_count == BARS - 1
    failed = _rows(
        dsn,
        "select run_id, expectation from raw.data_quality_results "
        "where symbol = 'GATE-HILO/USDT' and not success order by 1, 2",
    )
    assert failed == [
        ("gate-1", "expect_candle_high_at_top"),
        ("gate-1", "expect_candle_low_at_bottom"),
    ]


def test_warnings_do_not_block_the_gate_unless_configured(dsn: str) -> None:
    decision = quality.gate_training_window(dsn, EXCHANGE, "GATE-SPIKE/USDT", TF, START, END)
    assert decision.ok and decision.reasons == []
    assert [w.expectation for w in decision.report.warnings] == ["expect_candle_move_within"]
    strict = QualitySettings(severity={"expect_candle_move_within": "blocking"})
    blocked = quality.gate_training_window(
        dsn, EXCHANGE, "GATE-SEVERITY/USDT", TF, START, END, settings=strict
    )
    assert not blocked.ok
    assert blocked.reasons[0].startswith("expect_candle_move_within failed on 2 of 200")


def test_gate_refuses_an_empty_window(dsn: str) -> None:
    decision = quality.gate_training_window(
        dsn,
        EXCHANGE,
        "CLEAN/USDT",
        TF,
        START - pd.Timedelta(days=30),
        START - pd.Timedelta(days=20),
        record=False,
        quarantine_rows=False,
    )
    assert not decision.ok
    assert "no 1h candles for CLEAN/USDT" in decision.reasons[0]


# ------------------------------------------------------ market tables and metrics


def test_market_tables_catch_their_defects_and_quarantine_them(dsn: str) -> None:
    t0 = pd.Timestamp("2025-02-01T00:00Z")
    with connect(dsn) as conn:
        for i, rate in enumerate([0.0001, -0.0002, 0.5, float("nan")]):
            conn.execute(
                "insert into raw.funding_rates (exchange, symbol, ts, funding_rate) "
                "values (%s, 'F/USDT:USDT', %s, %s)",
                (EXCHANGE, t0 + i * 8 * HOUR, rate),
            )
        for i, (amount, value) in enumerate([(10.0, 1e6), (-1.0, 1e6), (None, None)]):
            conn.execute(
                "insert into raw.open_interest (exchange, symbol, period, ts, "
                "open_interest_amount, open_interest_value) values (%s, 'F/USDT:USDT', '1h', %s, "
                "%s, %s)",
                (EXCHANGE, t0 + i * HOUR, amount, value),
            )
        for i, (side, qty) in enumerate(
            [("long", 1.0), ("short", 2.0), ("buy", 1.0), (None, 1.0), ("long", 0.0)]
        ):
            conn.execute(
                "insert into raw.liquidations (exchange, symbol, liquidation_key, ts, side, "
                "price, quantity) values (%s, 'F/USDT:USDT', %s, %s, %s, 100.0, %s)",
                (EXCHANGE, f"k{i}", t0 + i * HOUR, side, qty),
            )
    reports = quality.run_quality_checks(
        dsn,
        tables=["funding_rates", "open_interest", "liquidations"],
        exchange=EXCHANGE,
        symbol="F/USDT:USDT",
        timeframe="1h",  # applies to open_interest.period only
        run_id="market-run",
    )
    assert [_failed(r) for r in reports] == [
        {"expect_funding_rate_within": 2},  # 0.5 and NaN
        {"expect_open_interest_non_negative": 1},
        {"expect_liquidation_side_known": 2, "expect_liquidation_quantity_positive": 1},
    ]
    quarantined = _rows(
        dsn,
        "select 'funding', funding_rate::text from raw.quarantine_funding_rates "
        "union all select 'oi', open_interest_amount::text from raw.quarantine_open_interest "
        "union all select 'liq', coalesce(side, '-') || '/' || quantity "
        "from raw.quarantine_liquidations order by 1, 2",
    )
    assert quarantined == [
        ("funding", "0.5"),
        ("funding", "NaN"),
        ("liq", "-/1"),
        ("liq", "buy/1"),
        ("liq", "long/0"),
        ("oi", "-1"),
    ]
    recorded = _rows(
        dsn,
        "select suite, count(*) from raw.data_quality_results where run_id = 'market-run' "
        "group by 1 order by 1",
    )
    assert recorded == [("raw.funding_rates", 1), ("raw.liquidations", 6), ("raw.open_interest", 1)]


def test_liquidations_with_no_price_a_future_stamp_a_second_copy_or_a_bad_notional_are_quarantined(
    dsn: str,
) -> None:
    t0 = pd.Timestamp("2025-03-01T00:00Z")
    rows = [
        # key, ts, price, notional, loaded_at - ts
        ("ok", t0, 100.0, 100.0, HOUR),
        ("no-price", t0 + HOUR, None, None, HOUR),
        ("neg-price", t0 + 2 * HOUR, -5.0, None, HOUR),
        ("skew-3s", t0 + 3 * HOUR, 100.0, 0.0, -pd.Timedelta(seconds=3)),  # within 5 s: passes
        ("future", t0 + 4 * HOUR, 100.0, None, -HOUR),  # stamped an hour after it was stored
        ("copy-a", t0 + 5 * HOUR, 101.0, None, HOUR),
        ("copy-b", t0 + 5 * HOUR, 101.0, None, HOUR),  # the same liquidation under another key
        ("neg-notional", t0 + 6 * HOUR, 100.0, -100.0, HOUR),
        ("inf-notional", t0 + 7 * HOUR, 100.0, math.inf, HOUR),
    ]
    with connect(dsn) as conn:
        for key, ts, price, notional, lag in rows:
            conn.execute(
                "insert into raw.liquidations (exchange, symbol, liquidation_key, ts, side, "
                "price, quantity, notional, loaded_at) values (%s, 'L/USDT:USDT', %s, %s, "
                "'long', %s, 1.0, %s, %s)",
                (EXCHANGE, key, ts, price, notional, ts + lag),
            )
    (report,) = quality.run_quality_checks(
        dsn, tables=["liquidations"], exchange=EXCHANGE, symbol="L/USDT:USDT", run_id="liq-new"
    )
    assert _failed(report) == {
        "expect_liquidation_price_positive": 2,
        "expect_liquidation_not_in_future": 1,
        "expect_liquidation_no_duplicates": 1,
        "expect_liquidation_notional_non_negative": 2,
    }
    flagged = _rows(
        dsn,
        "select liquidation_key, expectation from raw.quarantine_liquidations "
        "where symbol = 'L/USDT:USDT' order by 1",
    )
    assert flagged == [
        ("copy-b", "expect_liquidation_no_duplicates"),
        ("future", "expect_liquidation_not_in_future"),
        ("inf-notional", "expect_liquidation_notional_non_negative"),
        ("neg-notional", "expect_liquidation_notional_non_negative"),
        ("neg-price", "expect_liquidation_price_positive"),
        ("no-price", "expect_liquidation_price_positive"),
    ]


def test_model_metrics_are_finite_and_plausible(dsn: str) -> None:
    with connect(dsn) as conn:
        conn.execute(
            "insert into raw.model_versions (version_id, exchange, symbol, timeframe, "
            "model_type, manifest, artifact_uri, artifact_sha256, feature_set_hash, "
            "train_start, train_end, n_rows) values ('v1', %s, 'M/USDT', '1h', 'lightgbm', "
            "'{}', 'file:///x', %s, 'h', %s, %s, 10)",
            (EXCHANGE, "0" * 64, START, END),
        )
        metrics = {
            "sharpe": 50.0,  # implausible: warning
            "sortino": math.inf,  # allowed
            "profit_factor": math.inf,  # allowed
            "calmar": -math.inf,  # never
            "hit_ratio": 1.5,  # outside its definition
            "exposure": 1.2,  # a share of bars above 1: outside its definition
            "dsr": -0.1,  # a probability below 0: outside its definition
            "round_trips": 12.0,  # fine
            "max_drawdown": float("nan"),  # undefined: fine
            "annualised_return": None,
        }
        for name, value in metrics.items():
            conn.execute(
                "insert into raw.model_metrics (version_id, metric, value) values ('v1', %s, %s)",
                (name, value),
            )
    report = quality.validate_table(dsn, "model_metrics", exchange=EXCHANGE, symbol="M/USDT")
    assert _failed(report) == {
        "expect_metric_value_finite": 1,
        "expect_metric_within_definition": 3,
        "expect_metric_plausible": 1,
    }
    assert [r.expectation for r in report.warnings] == ["expect_metric_plausible"]
    with connect(dsn) as conn:
        assert quality.quarantine(conn, report) == {}  # metrics are reported, never copied


# ------------------------------------------------------------ docs and errors


def test_data_docs_are_built_to_the_folder_given(
    dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = _validate(dsn, "SPIKE/USDT", docs_dir=tmp_path / "docs")
    # GX logs (and goes on) when it cannot render part of a page
    assert [r.getMessage()[:80] for r in caplog.records if r.levelname == "ERROR"] == []
    assert report.docs_index == (tmp_path / "docs" / "index.html").resolve()
    assert report.docs_index.is_file()
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 1
    text = " ".join(re.sub(r"<[^>]+>", " ", pages[0].read_text()).split())
    assert "Expectation Suite: raw.ohlcv" in text
    assert "Unsuccessful Expectations 1" in text
    assert "|close / previous close - 1| is at most 0.5 2" in text  # rule, observed count
    # a later process (a fresh GX context) adds its page beside the first one, and the
    # index lists both: GX would otherwise drop pages whose results it does not hold
    saved = quality._GX
    quality._GX = quality._GxState()
    try:
        _validate(dsn, "CLEAN/USDT", docs_dir=tmp_path / "docs")
    finally:
        quality._GX = saved
    pages = sorted((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 2
    index = report.docs_index.read_text()
    assert all(str(page.relative_to(tmp_path / "docs")) in index for page in pages)
    assert quality.data_docs_dir(home=tmp_path) == tmp_path / "quality" / "data_docs"
    assert quality.data_docs_dir(QualitySettings(docs_dir=tmp_path / "d")) == tmp_path / "d"


def test_data_docs_of_many_validations_render_once_with_every_page(
    dsn: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    kept = [_validate(dsn, sym, docs_dir=docs, render_docs=False) for sym in SYMBOLS_TWO]
    # kept in the folder's store, nothing rendered yet
    assert all(r.docs_index is None and len(r.docs_keys) == 1 for r in kept)
    assert not (docs / "index.html").exists()
    assert list((docs / "validations").rglob("*.html")) == []
    index = quality.render_data_docs(docs, [k for r in kept for k in r.docs_keys], ["raw.ohlcv"])
    assert index == (docs / "index.html").resolve()
    pages = sorted((docs / "validations").rglob("*.html"))
    assert len(pages) == 2  # one per validation, from one build
    assert all(str(page.relative_to(docs)) in index.read_text() for page in pages)
    assert quality.render_data_docs(docs, [], ["raw.ohlcv"]) is None  # nothing kept


def test_bad_requests_name_the_problem(dsn: str, fresh_dsn: str) -> None:
    with pytest.raises(ConfigError, match="no quality suite for table 'candles'"):
        quality.validate_table(dsn, "candles")
    with pytest.raises(ConfigError, match=r"raw\.funding_rates has no timeframe"):
        quality.validate_table(dsn, "funding_rates", timeframe="1h")
    with pytest.raises(ConfigError, match="empty range"):
        _validate(dsn, "CLEAN/USDT", start=END, end=START)
    with pytest.raises(QualityError, match="create_raw_tables"):
        quality.validate_table(fresh_dsn, "ohlcv")


def test_the_password_stays_out_of_urls_and_messages() -> None:
    dsn = "postgresql://brain:s3cr%3At@db.example:5433/brain"
    url, redacted = quality._sqlalchemy_url(dsn)
    assert url == "postgresql+psycopg://brain:s3cr%3At@db.example:5433/brain"
    assert "s3cr" not in redacted
    socket_url, _ = quality._sqlalchemy_url("postgresql://postgres:@/brain?host=/tmp/pg")
    assert socket_url == "postgresql+psycopg://postgres@localhost:5432/brain?host=/tmp/pg"
    message = quality._scrub("could not connect as brain:s3cr:t and s3cr%3At", dsn)
    assert "s3cr" not in message


def test_importing_the_library_does_not_import_great_expectations() -> None:
    code = (
        "import sys, brain_lib.quality, expectations; "
        "print(json.dumps(sorted(m for m in ('great_expectations', 'pandas', 'psycopg') "
        "if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert json.loads(out.stdout) == []
