"""Real Prefect flow runs of daily-retrain on a real PostgreSQL and a real dbt build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flow_artifacts import flow_run_artifact

from brain_lib.warehouse import connect

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTC/USDT", "ETH/USDT"]

pytestmark = pytest.mark.slow


LOOKBACK = 190  # days; retrain_env (conftest.py) stores 200 of a planted-trend market


def test_daily_retrain_trains_every_symbol_and_builds_marts(
    prefect_harness: None, retrain_env: tuple[str, Path]
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow, unsettled_task_runs

    dsn, home = retrain_env
    state = run_flow(daily_retrain, symbols=SYMBOLS, lookback_days=LOOKBACK)
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
    assert all(v[3] == "5" for v in versions)  # the default walk-forward
    assert metrics == (2,)
    # the run's summary carries the baselines and trading statistics beside the score
    for row in rows:
        assert row["composite"] is not None and row["dsr"] > 0.5
        assert row["exposure"] > 0.1 and row["round_trips"] >= 10
        assert row["avg_holding_bars"] >= 8  # held at least the label horizon
        assert row["buy_hold_sharpe"] is not None
        assert row["excess_sharpe"] == pytest.approx(
            row["sharpe"] - row["buy_hold_sharpe"], abs=2e-4
        )
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
    # the run's dbt build: the marts of what it wrote, not the market features it never
    # touched (collect-market-data builds them)
    built = json.loads((home / "dbt" / "target" / "run_results.json").read_text())
    nodes = {r["unique_id"] for r in built["results"] if r["status"] in ("success", "pass")}
    for mart in ("best_model_per_symbol", "model_composite_scores", "feature_shifts"):
        assert f"model.brain.{mart}" in nodes
    assert not any("fct_features_hourly" in n or "stg_raw__ohlcv" in n for n in nodes)
    for version_id, *_ in versions:
        assert (home / "artifacts" / version_id / "model.txt").exists()

    # the run's metrics table is a keyed artifact: this run's, with this run's versions
    table = flow_run_artifact("daily-retrain-metrics", state.state_details.flow_run_id)
    assert table is not None
    data = str(table.data)  # type: ignore[attr-defined]
    assert all(r["version_id"] in data for r in rows)
    assert "buy_hold_sharpe" in data and "exposure" in data


def test_a_failing_symbol_does_not_sink_the_others(
    prefect_harness: None, retrain_env: tuple[str, Path]
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    dsn, _ = retrain_env
    state = run_flow(daily_retrain, symbols=["BTC/USDT", "NOPE/USDT"], lookback_days=LOOKBACK)
    assert state.is_failed()
    assert "NOPE/USDT" in (state.message or "")
    rows = state.result(raise_on_failure=False)
    by_symbol = {r["symbol"]: r for r in rows}
    assert by_symbol["BTC/USDT"]["status"] == "ok"
    assert by_symbol["NOPE/USDT"]["status"] == "failed"
    assert "unknown symbol 'NOPE/USDT'" in by_symbol["NOPE/USDT"]["error"]
    with connect(dsn) as conn:
        stored = conn.execute("select symbol from raw.model_versions").fetchall()
    assert stored == [("BTC/USDT",)]  # BTC trained; nothing for the unknown symbol


def test_a_planted_worse_challenger_is_rolled_back_by_the_flow(
    prefect_harness: None, retrain_env: tuple[str, Path]
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    dsn, _ = retrain_env
    first = run_flow(daily_retrain, symbols=["ETH/USDT"], lookback_days=LOOKBACK, build_marts=False)
    assert first.is_completed(), first.message
    with connect(dsn) as conn:
        before = dict(conn.execute("select symbol, version_id from raw.model_champions").fetchall())
        champion_sharpe = conn.execute(
            "select value from raw.model_metrics where version_id = %s and metric = 'sharpe' "
            "and scope = 'oos'",
            (before["ETH/USDT"],),
        ).fetchone()
    assert champion_sharpe is not None and champion_sharpe[0] > 0
    # no split can be made: the challenger predicts a constant, its policy never trades
    state = run_flow(
        daily_retrain,
        symbols=["ETH/USDT"],
        lookback_days=LOOKBACK,
        model_params={"lightgbm": {"min_data_in_leaf": 1_000_000}},
        degradation_threshold=0.05,
        build_marts=False,
    )
    assert state.is_completed(), state.message
    (row,) = state.result()
    assert row["decision"] == "rollback", row
    assert row["champion"] == before["ETH/USDT"]
    assert "no evidence" in row["reason"] and row["composite"] is None
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
