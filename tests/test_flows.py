"""Real Prefect flow runs of daily-retrain on a real PostgreSQL and a real dbt build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brain_lib.dbt import ensure_raw_schema
from brain_lib.market import SyntheticMarket
from brain_lib.warehouse import connect, copy_ohlcv

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTC/USDT", "ETH/USDT"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def retrain_env(
    pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A warehouse with 90 days of two symbols and BRAIN_* pointing at it."""
    home = tmp_path_factory.mktemp("brain-home")
    ensure_raw_schema(pg_dsn, project_dir=REPO / "dbt_brain", state_dir=home / "dbt")
    market = SyntheticMarket(seed=11, autocorr=-0.1)
    with connect(pg_dsn) as conn:
        for symbol in SYMBOLS:
            copy_ohlcv(
                conn,
                market.candles(symbol, 90 * 24),
                exchange="synthetic",
                symbol=symbol,
                timeframe="1h",
            )
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAIN_DATABASE_URL", pg_dsn)
    mp.setenv("BRAIN_HOME", str(home))
    mp.setenv("BRAIN_N_SPLITS", "3")
    mp.setenv("BRAIN_EMBARGO", "6")
    mp.setenv("BRAIN_FEE_BPS", "1")  # the demo market's edge survives 1 bp, not 5
    yield pg_dsn, home
    mp.undo()


def test_daily_retrain_trains_every_symbol_and_builds_marts(
    prefect_harness: None, retrain_env: tuple[str, Path]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow, unsettled_task_runs

    dsn, home = retrain_env
    state = run_flow(daily_retrain, symbols=SYMBOLS, lookback_days=80)
    assert state.is_completed(), state.message
    rows = state.result()
    assert [r["symbol"] for r in rows] == SYMBOLS
    assert all(r["status"] == "ok" and r["version_id"] for r in rows)
    assert all(r["decision"] == "promotion" and r["champion"] == r["version_id"] for r in rows)
    # every task run reached a final state in Prefect's database
    assert unsettled_task_runs(state.state_details.flow_run_id) == 0

    with connect(dsn) as conn:
        versions = conn.execute(
            "select version_id, symbol, run_id, manifest->'walk_forward'->>'n_splits' "
            "from raw.model_versions order by symbol"
        ).fetchall()
        metrics = conn.execute(
            "select count(distinct version_id) from raw.model_metrics"
        ).fetchone()
        best = conn.execute(
            "select symbol, version_id, composite_score "
            "from marts.best_model_per_symbol order by symbol"
        ).fetchall()
    assert [v[1] for v in versions] == SYMBOLS
    assert all(v[2] == str(state.state_details.flow_run_id) for v in versions)
    assert all(v[3] == "3" for v in versions)  # BRAIN_N_SPLITS reached the walk-forward
    assert metrics == (2,)
    with connect(dsn) as conn:
        importance = conn.execute(
            "select version_id, method, count(*) filter (where rank is not null), min(rank), "
            "max(rank) from raw.feature_importance where kind = 'training' "
            "group by 1, 2 order by 1, 2"
        ).fetchall()
    # every version has all three methods, ranked 1..k over its features
    assert len(importance) == 2 * 3
    assert {row[1] for row in importance} == {"shap", "permutation", "correlation"}
    assert all(row[2] >= 15 and row[3] == 1 and row[4] == row[2] for row in importance)
    assert {b[1] for b in best} == {r["version_id"] for r in rows}
    for version_id, *_ in versions:
        assert (home / "artifacts" / version_id / "model.txt").exists()

    # the run's metrics table is a keyed artifact
    async def artifact() -> object:
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["daily-retrain-metrics"])
                )
            )
            return found[0] if found else None

    table = run_coro_as_sync(artifact())
    assert table is not None and "BTC/USDT" in str(table.data)


def test_a_failing_symbol_does_not_sink_the_others(
    prefect_harness: None, retrain_env: tuple[str, Path]
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    dsn, _ = retrain_env
    with connect(dsn) as conn:
        before = conn.execute("select count(*) from raw.model_versions").fetchone()
    state = run_flow(daily_retrain, symbols=["BTC/USDT", "NOPE/USDT"], lookback_days=80)
    assert state.is_failed()
    assert "NOPE/USDT" in (state.message or "")
    rows = state.result(raise_on_failure=False)
    by_symbol = {r["symbol"]: r for r in rows}
    assert by_symbol["BTC/USDT"]["status"] == "ok"
    assert by_symbol["NOPE/USDT"]["status"] == "failed"
    assert "unknown symbol 'NOPE/USDT'" in by_symbol["NOPE/USDT"]["error"]
    with connect(dsn) as conn:
        after = conn.execute("select count(*) from raw.model_versions").fetchone()
    assert before is not None and after is not None
    assert after[0] == before[0] + 1  # BTC trained again; nothing for the unknown symbol


def test_a_planted_worse_challenger_is_rolled_back_by_the_flow(
    prefect_harness: None, retrain_env: tuple[str, Path]
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    dsn, _ = retrain_env
    assert run_flow(daily_retrain, symbols=["ETH/USDT"], lookback_days=80).is_completed()
    with connect(dsn) as conn:
        before = dict(conn.execute("select symbol, version_id from raw.model_champions").fetchall())
        champion_sharpe = conn.execute(
            "select value from raw.model_metrics where version_id = %s and metric = 'sharpe'",
            (before["ETH/USDT"],),
        ).fetchone()
    assert champion_sharpe is not None and champion_sharpe[0] > 0
    # no split can be made: the challenger predicts a constant
    state = run_flow(
        daily_retrain,
        symbols=["ETH/USDT"],
        lookback_days=80,
        model_params={"lightgbm": {"min_data_in_leaf": 1_000_000}},
        degradation_threshold=0.05,
    )
    assert state.is_completed(), state.message
    (row,) = state.result()
    assert row["decision"] == "rollback", row
    assert row["champion"] == before["ETH/USDT"]
    with connect(dsn) as conn:
        after = dict(conn.execute("select symbol, version_id from raw.model_champions").fetchall())
        event = conn.execute(
            "select event_type, version_id, previous_version_id, details->>'champion_evaluation' "
            "from raw.model_events order by event_id desc limit 1"
        ).fetchone()
        manifest = conn.execute(
            "select manifest->'hyperparameters'->>'min_data_in_leaf' from raw.model_versions "
            "where version_id = %s",
            (row["version_id"],),
        ).fetchone()
    assert after == before
    assert event is not None and event[:3] == ("rollback", row["version_id"], before["ETH/USDT"])
    assert "replayed" in event[3]
    assert manifest == ("1000000",)
