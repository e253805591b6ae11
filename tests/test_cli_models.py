"""Two real concurrent `brain train` runs, then the models commands as a person uses them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from markets import seed_planted

from brain_lib.dbt import ensure_raw_schema
from brain_lib.warehouse import connect

REPO = Path(__file__).resolve().parent.parent
BRAIN = str(Path(sys.executable).with_name("brain"))
SYMBOLS = ["BTC/USDT", "ETH/USDT"]

pytestmark = pytest.mark.slow


def _env(tmp: Path, dsn: str, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAIN_", "PREFECT_"))}
    env.update(
        BRAIN_HOME=str(tmp / "home"),  # shared: one artifact store
        PREFECT_HOME=str(tmp / f"prefect-{name}"),  # separate temporary Prefect servers
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        BRAIN_DATABASE_URL=dsn,
    )
    return env


def brain(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRAIN, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def trained(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("cli-models")
    ensure_raw_schema(pg_dsn, project_dir=REPO / "dbt_brain", state_dir=tmp / "dbt")
    seed_planted(pg_dsn, SYMBOLS, seed=8)
    # train up to 10 days before the newest candle, so the nightly analysis has bars the
    # champions never saw (200 days stored from 2025-01-01)
    args = [
        BRAIN,
        "train",
        "--symbols",
        ",".join(SYMBOLS),
        "--start",
        "2025-01-11T00:00:00",
        "--end",
        "2025-07-10T00:00:00",
    ]
    runs = [
        subprocess.Popen(
            args,
            env=_env(tmp, pg_dsn, name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, out in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out[-3000:]
    return pg_dsn, _env(tmp, pg_dsn, "cli")


def test_two_concurrent_runs_leave_one_consistent_champion(
    trained: tuple[str, dict[str, str]],
) -> None:
    dsn, _ = trained
    with connect(dsn) as conn:
        champions = conn.execute(
            "select symbol, count(*) from raw.model_champions group by symbol order by symbol"
        ).fetchall()
        assert champions == [(s, 1) for s in SYMBOLS]
        for symbol in SYMBOLS:
            events = conn.execute(
                "select event_type, version_id, previous_version_id from raw.model_events "
                "where symbol = %s order by created_at, event_id",
                (symbol,),
            ).fetchall()
            assert len(events) == 2  # one judgement per run
            # serialised: the second run challenged the champion the first one installed
            assert events[0][0] == "promotion" and events[0][2] is None
            assert events[1][2] == events[0][1]
            current = conn.execute(
                "select version_id from raw.model_champions where symbol = %s", (symbol,)
            ).fetchone()
            last_promoted = [e[1] for e in events if e[0] == "promotion"][-1]
            assert current == (last_promoted,)


def test_list_show_history(trained: tuple[str, dict[str, str]]) -> None:
    dsn, env = trained
    listed = brain("models", "list", "--symbol", "BTC/USDT", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("btc-usdt.lightgbm.") == 2 and "*" in listed.stdout
    with connect(dsn) as conn:
        (champion,) = conn.execute(
            "select version_id from raw.model_champions where symbol = 'BTC/USDT'"
        ).fetchone()  # type: ignore[misc]
    shown = brain("models", "show", champion, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "champion:   yes" in shown.stdout and "model.txt" in shown.stdout
    assert '"fingerprint_sha256"' in shown.stdout
    for group in ("performance", "luck", "trading", "baselines"):
        assert group in shown.stdout
    assert "buy_hold_sharpe" in shown.stdout and "dsr " in shown.stdout
    history = brain("models", "history", "BTC/USDT", env=env)
    assert history.returncode == 0, history.stderr
    assert champion in history.stdout and "current" in history.stdout


def test_manual_promote_rollback_and_point_in_time(trained: tuple[str, dict[str, str]]) -> None:
    dsn, env = trained
    with connect(dsn) as conn:
        versions = [
            r[0]
            for r in conn.execute(
                "select version_id from raw.model_versions "
                "where symbol = 'ETH/USDT' order by created_at"
            ).fetchall()
        ]
        (champion,) = conn.execute(
            "select version_id from raw.model_champions where symbol = 'ETH/USDT'"
        ).fetchone()  # type: ignore[misc]
    other = next(v for v in versions if v != champion)
    promoted = brain("models", "promote", other, "--reason", "desk prefers it", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert f"{other} is champion (was: {champion})" in promoted.stdout
    rolled = brain("models", "rollback", "ETH/USDT", "--reason", "desk changed its mind", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert f"rolled back to {champion} (demoted {other})" in rolled.stdout

    with connect(dsn) as conn:
        events = conn.execute(
            "select event_type, version_id, created_at from raw.model_events "
            "where symbol = 'ETH/USDT' and event_type in ('manual_promotion', 'manual_rollback') "
            "order by created_at"
        ).fetchall()
    (_, _, promoted_at), (_, _, rolled_at) = events
    middle = promoted_at + (rolled_at - promoted_at) / 2
    for instant, expected in (
        (promoted_at - timedelta(milliseconds=1), champion),
        (promoted_at, other),  # valid_from is inclusive
        (middle, other),
        (rolled_at, champion),  # valid_to is exclusive
    ):
        answer = brain(
            "models",
            "history",
            "ETH/USDT",
            "--at",
            instant.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
            env=env,
        )
        assert answer.returncode == 0, answer.stderr
        assert (
            expected in answer.stdout
            and (other if expected == champion else champion) not in answer.stdout
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "show", "nope"), "unknown model version 'nope'"),
        (("models", "promote", "nope", "--reason", "x"), "unknown model version 'nope'"),
        (("models", "history", "DOGE/USDT"), "no champion of DOGE/USDT"),
        (("models", "rollback", "DOGE/USDT", "--reason", "x"), "DOGE/USDT has no champion"),
        (("models", "list", "--symbol", "DOGE/USDT"), "no model versions for DOGE/USDT"),
    ],
)
def test_bad_requests_are_one_line_errors(
    trained: tuple[str, dict[str, str]], args: tuple[str, ...], message: str
) -> None:
    dsn, env = trained
    with connect(dsn) as conn:
        before = conn.execute("select count(*) from raw.model_events").fetchone()
    proc = brain(*args, env=env)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {message}"] or (len(lines) == 1 and message in lines[0]), proc.stderr
    with connect(dsn) as conn:
        assert conn.execute("select count(*) from raw.model_events").fetchone() == before


def test_corrupt_missing_and_newer_versions_are_refused(
    trained: tuple[str, dict[str, str]],
) -> None:
    from psycopg.types.json import Jsonb

    dsn, env = trained
    with connect(dsn) as conn:
        version_id, uri, manifest = conn.execute(
            "select version_id, artifact_uri, manifest from raw.model_versions "
            "where symbol = 'BTC/USDT' order by created_at limit 1"
        ).fetchone()  # type: ignore[misc]
    path = Path(uri)
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-100])
        # the record is still shown, marked, and the command fails with the reason
        proc = brain("models", "show", version_id, env=env)
        assert proc.returncode == 1 and "refusing to load a changed artifact" in proc.stderr
        assert "CORRUPT, cannot be served" in proc.stdout and '"manifest_format"' in proc.stdout
        assert "Traceback" not in proc.stderr
        path.unlink()
        proc = brain("models", "show", version_id, env=env)
        assert proc.returncode == 1 and "artifact is missing" in proc.stderr
    finally:
        path.write_bytes(original)
    assert brain("models", "show", version_id, env=env).returncode == 0

    # a version written by a newer Brain (manifest format 99)
    newer = {**manifest, "manifest_format": 99, "version_id": "btc.future.v99"}
    with connect(dsn) as conn:
        conn.execute(
            """
            insert into raw.model_versions (
                version_id, exchange, symbol, timeframe, model_type, manifest, artifact_uri,
                artifact_sha256, feature_set_hash, train_start, train_end, n_rows
            ) select 'btc.future.v99', exchange, symbol, timeframe, model_type, %s,
                     artifact_uri, artifact_sha256, feature_set_hash, train_start, train_end, n_rows
              from raw.model_versions where version_id = %s
            """,
            (Jsonb(newer), version_id),
        )
    proc = brain("models", "show", "btc.future.v99", env=env)
    assert proc.returncode == 2
    assert "manifest format 99 is newer than this Brain reads" in proc.stderr


def test_features_commands(trained: tuple[str, dict[str, str]]) -> None:
    _, env = trained
    top = brain("features", "top", "BTC/USDT", "--n", "5", env=env)
    assert top.returncode == 0, top.stderr
    assert "top 5 features by shap (training importance)" in top.stdout
    bad = brain("features", "top", "BTC/USDT", "--method", "gini", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown method 'gini'")

    analyzed = brain("features", "analyze", "--symbols", "BTC/USDT", "--window-days", "20", env=env)
    assert analyzed.returncode == 0, analyzed.stdout[-2000:] + analyzed.stderr[-2000:]
    assert "champions analysed" in analyzed.stdout
    top = brain("features", "top", "BTC/USDT", "--method", "permutation", env=env)
    assert top.returncode == 0 and "(nightly importance)" in top.stdout, top.stderr
    shifts = brain("features", "shifts", "--symbol", "BTC/USDT", env=env)
    assert shifts.returncode == 0, shifts.stderr
    for method in ("shap", "permutation", "correlation"):
        assert method in shifts.stdout
    drift = brain("features", "drift", "--symbol", "BTC/USDT", "--limit", "3", env=env)
    assert drift.returncode == 0, drift.stderr
    assert "marts.feature_drift" in drift.stdout and "BTC/USDT" in drift.stdout
