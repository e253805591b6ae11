"""Real Prefect runs of collect-market-data against the replay exchange and a real
PostgreSQL: mapped streams, failure isolation, the summary artifact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flow_artifacts import flow_run_artifact

from brain_lib.market.replay import ReplayConfig, ReplayServer
from brain_lib.warehouse import connect

pytestmark = pytest.mark.slow

NOW = "2025-02-01T00:30:00Z"
SINCE = datetime(2025, 1, 30, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    with ReplayServer(ReplayConfig(now=NOW)) as srv:
        yield srv


@pytest.fixture(scope="module")
def collect_env(warehouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """BRAIN_* pointing at the module's warehouse (its raw schema is already current)."""
    home: Path = tmp_path_factory.mktemp("brain-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAIN_DATABASE_URL", warehouse_dsn)
    mp.setenv("BRAIN_HOME", str(home))
    yield warehouse_dsn
    mp.undo()


def test_the_flow_maps_streams_and_publishes_a_summary(
    prefect_harness: None, collect_env: str, replay: ReplayServer
) -> None:
    from flows.collect_market_data import collect_market_data
    from flows.runner import run_flow, unsettled_task_runs

    dsn = collect_env
    symbols = {"binance": ["BTC/USDT", "BTC/USDT:USDT"], "okx": ["ETH/USDT:USDT"]}
    state = run_flow(
        collect_market_data,
        exchanges=["binance", "okx"],
        symbols=symbols,
        since=SINCE,
        replay=replay.url,
    )
    assert state.is_completed(), state.message
    rows = state.result()
    flow_run_id = state.state_details.flow_run_id
    assert unsettled_task_runs(flow_run_id) == 0
    statuses = {(r["exchange"], r["symbol"], r["dataset"]): r["status"] for r in rows}
    assert len(statuses) == 9  # spot: ohlcv only; each perpetual: 4 datasets
    assert statuses[("binance", "BTC/USDT", "ohlcv")] == "ok"
    assert statuses[("okx", "ETH/USDT:USDT", "liquidations")] == "unsupported"
    assert sum(s == "ok" for s in statuses.values()) == 7
    with connect(dsn) as conn:
        counts = conn.execute(
            "select (select count(*) from raw.ohlcv), (select count(*) from raw.funding_rates), "
            "(select count(*) from raw.open_interest), "
            "(select count(distinct run_id) from raw.collection_runs where run_id = %s)",
            (str(flow_run_id),),
        ).fetchone()
    assert counts == (3 * 47, 2 * 6, 2 * 48, 1)  # 47 closed hours, 6 prints, 48 samples
    artifact = flow_run_artifact("collect-market-data", flow_run_id)
    assert artifact is not None and artifact.type == "markdown"
    assert "9 streams: 7 ok, 2 unsupported, 0 failed" in artifact.data
    assert "| binance | BTC/USDT:USDT | funding | ok | 6 |" in artifact.data
    # every batch that landed rows went through Great Expectations, recorded under the run
    with connect(dsn) as conn:
        checked = conn.execute(
            "select table_name, symbol, bool_and(success) from raw.data_quality_results "
            "where run_id = %s group by 1, 2 order by 1, 2",
            (str(flow_run_id),),
        ).fetchall()
    assert checked == [
        ("funding_rates", "BTC/USDT:USDT", True),
        ("funding_rates", "ETH/USDT:USDT", True),
        ("ohlcv", "BTC/USDT", True),
        ("ohlcv", "BTC/USDT:USDT", True),
        ("ohlcv", "ETH/USDT:USDT", True),
        ("open_interest", "BTC/USDT:USDT", True),
        ("open_interest", "ETH/USDT:USDT", True),
    ]
    assert "## Data quality of the new batches" in artifact.data
    assert "raw.ohlcv: **pass**" in artifact.data  # dbt source freshness
    assert "market.funding_rates: **pass**" in artifact.data

    # the next hourly run finds nothing new
    again = run_flow(
        collect_market_data, exchanges=["binance", "okx"], symbols=symbols, replay=replay.url
    )
    assert again.is_completed(), again.message
    assert {r["new_rows"] for r in again.result()} == {0}


def test_a_failing_stream_does_not_sink_the_others(
    prefect_harness: None, collect_env: str, replay: ReplayServer
) -> None:
    from flows.collect_market_data import collect_market_data
    from flows.runner import run_flow

    state = run_flow(
        collect_market_data,
        exchanges=["bybit", "kraken"],
        symbols=["SOL/USDT:USDT", "NOPE/USDT:USDT"],
        datasets=["ohlcv"],
        since=SINCE,
        replay=replay.url,
    )
    assert state.is_failed()
    assert "3 of 4 streams failed" in (state.message or "")
    rows = {(r["exchange"], r["symbol"]): r for r in state.result(raise_on_failure=False)}
    assert rows[("bybit", "SOL/USDT:USDT")]["status"] == "ok"
    assert rows[("bybit", "SOL/USDT:USDT")]["new_rows"] == 47
    assert "unknown symbol" in rows[("bybit", "NOPE/USDT:USDT")]["message"]
    assert "unknown exchange 'kraken'" in rows[("kraken", "SOL/USDT:USDT")]["message"]
    artifact = flow_run_artifact("collect-market-data", state.state_details.flow_run_id)
    assert "4 streams: 1 ok, 0 unsupported, 3 failed" in artifact.data


def test_replay_true_serves_synthetic_data_up_to_the_wall_clock(
    prefect_harness: None, collect_env: str
) -> None:
    from flows.collect_market_data import collect_market_data
    from flows.runner import run_flow

    since = datetime.now(UTC) - timedelta(hours=6)
    state = run_flow(
        collect_market_data,
        exchanges=["binance"],
        symbols=["XRP/USDT"],  # not listed by the default replay: a clear failure
        since=since,
        replay=True,
    )
    assert state.is_failed()
    (failed,) = state.result(raise_on_failure=False)
    assert "binance does not have market symbol XRP/USDT" in failed["message"]
    state = run_flow(
        collect_market_data, exchanges=["binance"], symbols=["SOL/USDT"], since=since, replay=True
    )
    assert state.is_completed(), state.message
    (row,) = state.result()
    assert row["status"] == "ok" and row["new_rows"] in (5, 6)  # closed hours in 6 h
    assert row["lag_seconds"] < 3600
