"""The data-quality mart on a real PostgreSQL: results recorded by real GX validations,
summarised by ``dbt build`` into ``marts.data_quality_daily`` (staging view, mart,
contract, data tests and unit tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from brain_lib import quality
from brain_lib.dbt import run_dbt
from brain_lib.market import generate_candles
from brain_lib.warehouse import connect, copy_ohlcv

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent / "dbt_brain"
START = pd.Timestamp("2025-01-01T00:00Z")


def _query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with connect(dsn) as conn:
        return list(conn.execute(sql).fetchall())


def test_data_quality_daily_summarises_the_recorded_results(
    warehouse_dsn: str, tmp_path: Path
) -> None:
    with connect(warehouse_dsn) as conn:
        for symbol in ("OK/USDT", "BAD/USDT"):
            frame = generate_candles(symbol, 100, seed=5, start=START).drop(columns=["regime"])
            if symbol == "BAD/USDT":
                frame.loc[10, "volume"] = -1.0
                frame.loc[20, "volume"] = -2.0
            copy_ohlcv(conn, frame, exchange="dq", symbol=symbol, timeframe="1h")
    # two runs, each validating both symbols: 2 runs x 2 batches x 11 expectations
    for run in ("run-a", "run-b"):
        quality.run_quality_checks(
            warehouse_dsn, tables=["ohlcv"], exchange="dq", symbol="OK/USDT", run_id=run
        )
        quality.run_quality_checks(
            warehouse_dsn, tables=["ohlcv"], exchange="dq", symbol="BAD/USDT", run_id=run
        )

    result = run_dbt(
        ["build", "--select", "stg_quality__data_quality_results+", "source:quality"],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=tmp_path,
    )
    assert result.ok
    assert "data_quality_daily::data_quality_daily_counts" in result.output

    rows = _query(
        warehouse_dsn,
        "select expectation_type, severity, runs, checks, failures, unexpected_rows, "
        "rows_checked, symbols, pass_rate from marts.data_quality_daily order by 1",
    )
    assert len(rows) == 11
    by_type = {row[0]: row[1:] for row in rows}
    assert by_type["expect_candle_volume_non_negative"] == ("blocking", 2, 4, 2, 4, 400, 2, 0.5)
    assert by_type["expect_no_candle_gap_longer_than"] == ("warning", 2, 4, 0, 0, 400, 2, 1.0)
    day = _query(warehouse_dsn, "select distinct day from marts.data_quality_daily")
    recorded = _query(
        warehouse_dsn,
        "select distinct (validated_at at time zone 'UTC')::date from raw.data_quality_results",
    )
    assert day == recorded
