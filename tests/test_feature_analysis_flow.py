"""Real Prefect runs of nightly-feature-analysis, and the retrain mark daily-retrain reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flow_artifacts import flow_run_artifact
from markets import seed_planted

from brain_lib.dbt import ensure_raw_schema
from brain_lib.warehouse import connect

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
# thresholds no comparison can meet / none can miss
NEVER = {
    "feature_shift_min_rank_corr": -2,
    "feature_shift_min_jaccard": -1,
    "feature_shift_threshold": 2,
}
ALWAYS = {"feature_shift_min_rank_corr": 1.01}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Two symbols with 200 days of candles and a champion for each (one daily-retrain,
    up to 10 days before the newest candle)."""
    from flows.daily_retrain import daily_retrain
    from flows.runner import run_flow

    home = tmp_path_factory.mktemp("brain-home")
    ensure_raw_schema(pg_dsn, project_dir=REPO / "dbt_brain", state_dir=home / "dbt")
    seed_planted(pg_dsn, SYMBOLS, seed=5)
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAIN_DATABASE_URL", pg_dsn)
    mp.setenv("BRAIN_HOME", str(home))
    # the champions are trained on all but the last 10 days: the nightly analysis
    # looks only at bars after a champion's training window
    end = _stored_end(pg_dsn) - timedelta(days=10)
    state = run_flow(daily_retrain, symbols=SYMBOLS, lookback_days=180, end=end, build_marts=False)
    assert state.is_completed(), state.message
    yield pg_dsn, home
    mp.undo()


def _stored_end(dsn: str) -> datetime:
    with connect(dsn) as conn:
        row = conn.execute("select max(ts) from raw.ohlcv").fetchone()
    assert row is not None and row[0] is not None
    return row[0]


def test_nightly_analysis_without_a_shift_marks_nothing(
    prefect_harness: None, env: tuple[str, Path]
) -> None:
    from flows.nightly_feature_analysis import nightly_feature_analysis
    from flows.runner import run_flow

    dsn, _ = env
    state = run_flow(nightly_feature_analysis, window_days=20, dbt_vars=NEVER)
    assert state.is_completed(), state.message
    data = state.result()
    assert sorted(a["symbol"] for a in data["analysed"]) == SYMBOLS
    assert data["marked"] == [] and data["failed"] == []
    assert {r["importance_method"] for r in data["shifts"]} == {
        "shap",
        "permutation",
        "correlation",
    }
    assert not any(r["shift_flag"] for r in data["shifts"])
    with connect(dsn) as conn:
        nightly = conn.execute(
            "select count(distinct version_id) from raw.feature_importance where kind = 'nightly'"
        ).fetchone()
        dists = conn.execute("select count(*) from raw.feature_distributions").fetchone()
        requests = conn.execute("select count(*) from raw.retrain_requests").fetchone()
    assert nightly == (2,) and dists is not None and dists[0] > 100 and requests == (0,)
    artifact = flow_run_artifact("nightly-feature-analysis", state.state_details.flow_run_id)
    assert artifact is not None and "## Marked for retraining" in str(artifact.data)


def test_a_flagged_symbol_is_marked_and_the_next_daily_retrain_serves_it(
    prefect_harness: None, env: tuple[str, Path]
) -> None:
    from flows.daily_retrain import daily_retrain
    from flows.nightly_feature_analysis import nightly_feature_analysis
    from flows.runner import run_flow

    dsn, _ = env
    state = run_flow(
        nightly_feature_analysis, symbols=["BTC/USDT"], window_days=20, dbt_vars=ALWAYS
    )
    assert state.is_completed(), state.message
    data = state.result()
    assert [m["symbol"] for m in data["marked"]] == ["BTC/USDT"]
    assert "rank correlation" in data["marked"][0]["reason"]
    artifact = flow_run_artifact("nightly-feature-analysis", state.state_details.flow_run_id)
    assert "**BTC/USDT**" in str(artifact.data)
    # flagged again the next night: still one pending request
    state = run_flow(
        nightly_feature_analysis, symbols=["BTC/USDT"], window_days=20, dbt_vars=ALWAYS
    )
    assert state.result()["marked"][0]["new_request"] is False
    with connect(dsn) as conn:
        pending = conn.execute(
            "select symbol, version_id from raw.retrain_requests where consumed_at is null"
        ).fetchall()
    assert [p[0] for p in pending] == ["BTC/USDT"]

    # daily-retrain asked for ETH only also trains the marked BTC, and serves the request
    state = run_flow(daily_retrain, symbols=["ETH/USDT"], lookback_days=60, build_marts=False)
    assert state.is_completed(), state.message
    assert sorted(r["symbol"] for r in state.result()) == SYMBOLS
    with connect(dsn) as conn:
        served = conn.execute(
            "select consumed_run_id from raw.retrain_requests where symbol = 'BTC/USDT'"
        ).fetchall()
    assert served == [(str(state.state_details.flow_run_id),)]
