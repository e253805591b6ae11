"""The ``brain`` command as a user runs it: real processes, a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brain_lib.market import generate_candles
from brain_lib.warehouse import connect

BRAIN = str(Path(sys.executable).with_name("brain"))


def brain(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRAIN, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BRAIN_", "PREFECT_"))}
    base.update(
        BRAIN_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return base


def _one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]


def test_help_is_instant(env: dict[str, str]) -> None:
    start = time.perf_counter()
    proc = brain("--help", env=env)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0 and "demo" in proc.stdout and "train" in proc.stdout
    # generous bound for a loaded 2-core machine; the real check is below
    assert elapsed < 5
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, brain_lib.cli; heavy = ('pandas','lightgbm','prefect','dbt','psycopg');"
            "print(sorted(m for m in heavy if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "[]"  # nothing heavy is imported to show help


def test_malformed_database_url(env: dict[str, str]) -> None:
    env["BRAIN_DATABASE_URL"] = "mysql://root@localhost/brain"
    _one_line_error(brain("db", "url", env=env), "BRAIN_DATABASE_URL")
    _one_line_error(brain("train", env=env), "must be a PostgreSQL URL")


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("BRAIN_POLICY_ENTRY_MARGIN", "-0.5", "BRAIN_POLICY_ENTRY_MARGIN"),
        ("BRAIN_POLICY_EXIT_LEVEL", "-1", "BRAIN_POLICY_EXIT_LEVEL"),
        ("BRAIN_FEE_BPS", "-1", "BRAIN_FEE_BPS"),
        ("BRAIN_SLIPPAGE_BPS", "-2", "BRAIN_SLIPPAGE_BPS"),
        ("BRAIN_LABEL_HORIZON", "0", "BRAIN_LABEL_HORIZON"),
        ("BRAIN_POLICY_MAX_POSITION", "1.5", "BRAIN_POLICY_MAX_POSITION"),
        ("BRAIN_POLICY_MAX_POSITION", "0", "BRAIN_POLICY_MAX_POSITION"),
        ("BRAIN_POLICY_SIZING", "kelly", "BRAIN_POLICY_SIZING"),
        ("BRAIN_MIN_DSR", "1.5", "BRAIN_MIN_DSR"),
        # 30 days of hourly bars give test folds of ~80 bars: a 200-bar label cannot fit
        ("BRAIN_LABEL_HORIZON", "200", "BRAIN_LABEL_HORIZON=200: longer than a test fold"),
    ],
)
def test_a_bad_policy_cost_or_horizon_is_one_line_and_trains_nothing(
    env: dict[str, str], variable: str, value: str, named: str
) -> None:
    """Refused before anything starts: no warehouse, no flow, nothing written."""
    env[variable] = value
    proc = brain("train", "--symbols", "BTC/USDT", "--lookback-days", "30", env=env)
    _one_line_error(proc, named)
    assert proc.returncode == 2
    assert not Path(env["BRAIN_HOME"]).exists()


def test_unreachable_warehouse(env: dict[str, str]) -> None:
    env["BRAIN_DATABASE_URL"] = "postgresql://brain:s3cret@127.0.0.1:1/brain"
    proc = brain("train", "--symbols", "BTC/USDT", env=env)
    _one_line_error(proc, "cannot reach the warehouse at postgresql://brain@127.0.0.1:1/brain")
    assert "s3cret" not in proc.stderr + proc.stdout  # the password never reaches output


def test_empty_date_range(env: dict[str, str], pg_dsn: str) -> None:
    env["BRAIN_DATABASE_URL"] = pg_dsn
    proc = brain("train", "--start", "2025-03-01", "--end", "2025-03-01", env=env)
    _one_line_error(proc, "empty date range")


def test_ingest_then_train_unknown_symbol(env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    env["BRAIN_DATABASE_URL"] = pg_dsn
    candles = generate_candles("ADA/USDT", 300, seed=3).drop(columns="regime")
    csv = tmp_path / "ada.csv"
    candles.assign(ts=candles["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(csv, index=False)
    first = brain(
        "ingest", "ohlcv", str(csv), "--exchange", "mine", "--symbol", "ADA/USDT", env=env
    )
    assert first.returncode == 0, first.stderr
    assert "300 rows added, 0 unchanged" in first.stdout
    # parquet with epoch milliseconds, overlapping the CSV by 200 rows
    more = generate_candles("ADA/USDT", 500, seed=3).drop(columns="regime")
    parquet = tmp_path / "ada.parquet"
    more.assign(ts=more["ts"].astype("int64") // 10**6).rename(columns={"ts": "timestamp"}).iloc[
        100:
    ].to_parquet(parquet)
    second = brain(
        "ingest", "ohlcv", str(parquet), "--exchange", "mine", "--symbol", "ADA/USDT", env=env
    )
    assert second.returncode == 0, second.stderr
    assert "200 rows added, 200 unchanged" in second.stdout
    with connect(pg_dsn) as conn:
        stored = conn.execute(
            "select count(*), min(ts), max(ts) from raw.ohlcv where exchange = 'mine'"
        ).fetchone()
    assert stored is not None and stored[0] == 500

    proc = brain("train", "--exchange", "mine", "--symbols", "ADA/USDT,DOGE/USDT", env=env)
    _one_line_error(proc, "unknown symbol(s) DOGE/USDT")


def test_malformed_file_writes_nothing(env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    env["BRAIN_DATABASE_URL"] = pg_dsn
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "ts,open,high,low,close,volume\n2025-01-01T00:00Z,1,2,0.5,1.5,10\n2025-01-01T01:00Z,1,2,0.5,oops,10\n"
    )
    proc = brain("ingest", "ohlcv", str(bad), "--exchange", "bad", "--symbol", "X/USDT", env=env)
    _one_line_error(proc, "bad.csv: row 2: column close is not a number ('oops')")
    missing = brain(
        "ingest",
        "ohlcv",
        str(tmp_path / "nope.csv"),
        "--exchange",
        "bad",
        "--symbol",
        "X/USDT",
        env=env,
    )
    _one_line_error(missing, "no such file")
    with connect(pg_dsn) as conn:
        assert conn.execute("select count(*) from raw.ohlcv where exchange = 'bad'").fetchone() == (
            0,
        )


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--symbol", "../../etc/passwd", "invalid --symbol '../../etc/passwd'"),
        ("--symbol", "BTC/USD'; DROP TABLE raw.ohlcv;--", "invalid --symbol"),
        ("--symbol", "A" * 5000, "(5000 characters)"),
        ("--symbol", "", "invalid --symbol ''"),
        ("--symbol", "X[/x]/USDT", "invalid --symbol"),
        ("--exchange", "bin ance", "invalid --exchange 'bin ance'"),
        ("--exchange", "../x", "invalid --exchange"),
        ("--timeframe", "1M", "invalid --timeframe '1M'"),
        ("--timeframe", "0h", "invalid --timeframe"),
        ("--timeframe", "1s", "invalid --timeframe"),
    ],
)
def test_ingest_refuses_bad_names_before_anything(
    env: dict[str, str], tmp_path: Path, option: str, value: str, needle: str
) -> None:
    """Names are checked first: no warehouse is even started (BRAIN_HOME stays empty)."""
    csv = tmp_path / "c.csv"
    csv.write_text("ts,open,high,low,close,volume\n2025-01-01T00:00Z,1,2,0.5,1.5,10\n")
    args = {"--exchange": "mine", "--symbol": "ADA/USDT", "--timeframe": "1h", option: value}
    proc = brain("ingest", "ohlcv", str(csv), *[x for kv in args.items() for x in kv], env=env)
    _one_line_error(proc, needle)
    assert proc.returncode == 2
    assert not (Path(env["BRAIN_HOME"]) / "pg").exists()


def test_ingest_refuses_implausible_candles_whole_and_writes_nothing(
    env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    env["BRAIN_DATABASE_URL"] = pg_dsn
    header = "ts,open,high,low,close,volume\n"
    good = "".join(f"2025-02-01T{h:02d}:00Z,100,101,99,100.5,10\n" for h in range(10))
    bad_rows = {
        "inf": (
            "2025-02-02T00:00Z,100,101,99,inf,10",
            "not a finite number (inf, nan): 1 row(s) (row 11) (rows",
        ),
        "negative": ("2025-02-02T00:00Z,-1,101,-2,100,10", "not above 0"),
        "high_low": ("2025-02-02T00:00Z,100,98,99,100,10", "high is below open or close"),
        "close_above_high": ("2025-02-02T00:00Z,100,101,99,105,10", "high is below"),
        "volume": ("2025-02-02T00:00Z,100,101,99,100,-5", "volume is negative"),
        "huge": ("2025-02-02T00:00Z,100,1e300,99,100,10", "not plausible"),
        "future": ("2074-02-02T00:00Z,100,101,99,100,10", "after tomorrow"),
        "off_grid": ("2025-02-02T00:37Z,100,101,99,100,10", "not the open time of a 1h bar"),
    }
    for name, (row, needle) in bad_rows.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(header + good + row + "\n")
        proc = brain(
            "ingest", "ohlcv", str(path), "--exchange", "door", "--symbol", "ADA/USDT", env=env
        )
        _one_line_error(proc, needle)
        assert "refused, nothing written" in proc.stderr
    booleans = tmp_path / "bool.parquet"
    import pandas as pd

    pd.DataFrame(
        {
            "ts": pd.date_range("2025-01-01", periods=3, freq="h", tz="UTC"),
            "open": [1.0] * 3,
            "high": [True] * 3,
            "low": [1.0] * 3,
            "close": [1.0] * 3,
            "volume": [1.0] * 3,
        }
    ).to_parquet(booleans)
    proc = brain(
        "ingest", "ohlcv", str(booleans), "--exchange", "door", "--symbol", "ADA/USDT", env=env
    )
    _one_line_error(proc, "column high holds booleans")
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("ts;open;high;low;close;volume\n2025-01-01T00:00Z;1;2;0.5;1.5;10\n")
    proc = brain(
        "ingest", "ohlcv", str(semicolons), "--exchange", "door", "--symbol", "ADA/USDT", env=env
    )
    _one_line_error(proc, "separated by ';'")
    proc = brain(
        "ingest", "ohlcv", str(tmp_path), "--exchange", "door", "--symbol", "ADA/USDT", env=env
    )
    _one_line_error(proc, "is a folder")
    with connect(pg_dsn) as conn:
        stored = conn.execute("select count(*) from raw.ohlcv where exchange = 'door'").fetchone()
    assert stored == (0,)
    # mixed offsets are read (both are the same instant's grid), nothing is lost
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        header + "2025-03-01T00:00:00Z,1,2,0.5,1.5,10\n2025-03-01T06:00:00+05:00,1,2,0.5,1.5,10\n"
    )
    proc = brain(
        "ingest", "ohlcv", str(mixed), "--exchange", "door", "--symbol", "ADA/USDT", env=env
    )
    assert proc.returncode == 0 and "2 rows added" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("BRAIN_SYMBOLS", "notjson", "invalid setting BRAIN_SYMBOLS: not valid JSON"),
        ("BRAIN_SYMBOLS", '["../x"]', "invalid setting BRAIN_SYMBOLS: invalid symbol '../x'"),
        ("BRAIN_FEE_BPS", "inf", "invalid setting BRAIN_FEE_BPS"),
        ("BRAIN_DEGRADATION_THRESHOLD", "inf", "invalid setting BRAIN_DEGRADATION_THRESHOLD"),
        ("BRAIN_TIMEFRAME", "1M", "invalid setting BRAIN_TIMEFRAME: invalid timeframe"),
        ("BRAIN_MODEL_TYPES", '["nope"]', "unknown model type(s) nope (installed: lightgbm"),
        ("BRAIN_N_SPLITS", "1000", "invalid setting BRAIN_N_SPLITS"),
        ("BRAIN_LOOKBACK_DAYS", "1000000", "invalid setting BRAIN_LOOKBACK_DAYS"),
        ("BRAIN_LOOKBACK_DAYS", "7", "invalid setting BRAIN_N_SPLITS=5: test folds of"),
    ],
)
def test_bad_settings_are_one_line_errors(
    env: dict[str, str], variable: str, value: str, needle: str
) -> None:
    env[variable] = value
    proc = brain("train", env=env)
    _one_line_error(proc, needle)
    assert proc.returncode == 2


def test_an_artifact_root_that_cannot_be_written_is_refused_before_training(
    env: dict[str, str], tmp_path: Path
) -> None:
    # under a plain file: no folder can be made there, whoever runs the test (root too)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env["BRAIN_ARTIFACT_ROOT"] = str(blocker / "artifacts")
    proc = brain("train", env=env)
    _one_line_error(proc, f"the artifact root {blocker}/artifacts (BRAIN_ARTIFACT_ROOT) is not")
    assert proc.returncode == 2
    assert not (Path(env["BRAIN_HOME"]) / "pg").exists()  # no warehouse, nothing trained


def test_a_range_in_the_future_is_refused_before_anything(env: dict[str, str]) -> None:
    proc = brain("train", "--start", "2099-01-01", "--end", "2099-02-01", env=env)
    _one_line_error(proc, "--start 2099-01-01 00:00 is in the future")
    assert proc.returncode == 2
    assert not (Path(env["BRAIN_HOME"]) / "pg").exists()  # no warehouse, nothing written


def test_an_empty_list_option_is_refused_not_defaulted(env: dict[str, str]) -> None:
    _one_line_error(brain("train", "--symbols", "", env=env), "--symbols is empty")
    _one_line_error(brain("train", "--model-types", " , ", env=env), "--model-types is empty")


def test_db_lifecycle(env: dict[str, str]) -> None:
    stopped = brain("db", "status", env=env)
    assert stopped.returncode == 3 and "stopped" in stopped.stdout
    try:
        started = brain("db", "start", env=env)
        assert started.returncode == 0 and "running" in started.stdout
        url = brain("db", "url", env=env)
        assert url.returncode == 0 and url.stdout.strip().startswith("postgresql://")
        with connect(url.stdout.strip()) as conn:
            assert conn.execute("select current_database()").fetchone() == ("brain",)
        assert "running (pid" in brain("db", "status", env=env).stdout
    finally:
        assert "stopped" in brain("db", "stop", env=env).stdout
    assert brain("db", "status", env=env).returncode == 3


@pytest.mark.slow
def test_demo_runs_twice_on_the_same_home(env: dict[str, str]) -> None:
    """The main job end to end on the embedded default, twice: ccxt collects from the
    replay exchange into the warehouse, daily-retrain trains on candles and derivatives;
    the second run collects nothing new and adds new versions. Two symbols, not the
    default three, to keep CI short (`make demo` runs all three)."""
    perps = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    try:
        first = brain("demo", "--symbols", "2", env=env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "collect-market-data (binance through ccxt, replay exchange)" in first.stdout
        assert "marts.best_model_per_symbol" in first.stdout
        assert "dbt docs:" in first.stdout
        second = brain("demo", "--symbols", "2", env=env)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        url = brain("db", "url", env=env).stdout.strip()
        with connect(url) as conn:
            candles = conn.execute(
                "select symbol, count(*) from raw.ohlcv where exchange = 'binance' "
                "group by symbol order by symbol"
            ).fetchall()
            runs = conn.execute(
                "select dataset, status, new_rows from raw.collection_runs "
                "where symbol = 'BTC/USDT:USDT' order by collection_run_id"
            ).fetchall()  # the first demo's four streams, then the second's
            per_symbol = conn.execute(
                "select symbol, count(*), bool_and(manifest->'feature_sets' ? 'derivatives') "
                "from raw.model_versions group by symbol order by symbol"
            ).fetchall()
            best = conn.execute("select count(*) from marts.best_model_per_symbol").fetchone()
        assert candles == [(s, 9600) for s in perps]  # 400 days × 24 hours, once
        first_run = {d: (st, n) for d, st, n in runs[:4]}
        second_run = {d: (st, n) for d, st, n in runs[4:]}
        assert first_run["ohlcv"] == ("ok", 9600)
        assert first_run["funding"][0] == "ok" and first_run["oi"][0] == "ok"
        assert first_run["liquidations"] == ("unsupported", 0)  # not in ccxt for binance
        assert set(second_run) == set(first_run)
        assert all(n == 0 for _, n in second_run.values())
        assert per_symbol == [(s, 2, True) for s in perps]
        assert best == (2,)
        assert (Path(env["BRAIN_HOME"]) / "dbt" / "target" / "index.html").exists()
    finally:
        brain("db", "stop", env=env)
