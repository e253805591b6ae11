"""The ``brain`` command as a user runs it: real processes, a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_env import clean_env, one_line_error

from brain_lib.market import generate_candles
from brain_lib.quality import quarantined_timestamps, validate_table
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
    return clean_env(tmp_path)


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
    one_line_error(brain("db", "url", env=env), "BRAIN_DATABASE_URL")
    one_line_error(brain("train", env=env), "must be a PostgreSQL URL")


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
    one_line_error(proc, named)
    assert proc.returncode == 2
    assert not Path(env["BRAIN_HOME"]).exists()


def test_unreachable_warehouse(env: dict[str, str]) -> None:
    env["BRAIN_DATABASE_URL"] = "postgresql://brain:s3cret@127.0.0.1:1/brain"
    proc = brain("train", "--symbols", "BTC/USDT", env=env)
    one_line_error(proc, "cannot reach the warehouse at postgresql://brain@127.0.0.1:1/brain")
    assert "s3cret" not in proc.stderr + proc.stdout  # the password never reaches output


def test_empty_date_range(env: dict[str, str], pg_dsn: str) -> None:
    env["BRAIN_DATABASE_URL"] = pg_dsn
    proc = brain("train", "--start", "2025-03-01", "--end", "2025-03-01", env=env)
    one_line_error(proc, "empty date range")


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
    one_line_error(proc, "unknown symbol(s) DOGE/USDT")


def test_malformed_file_writes_nothing(env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    env["BRAIN_DATABASE_URL"] = pg_dsn
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "ts,open,high,low,close,volume\n2025-01-01T00:00Z,1,2,0.5,1.5,10\n2025-01-01T01:00Z,1,2,0.5,oops,10\n"
    )
    proc = brain("ingest", "ohlcv", str(bad), "--exchange", "bad", "--symbol", "X/USDT", env=env)
    one_line_error(proc, "bad.csv: row 2: column close is not a number ('oops')")
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
    one_line_error(missing, "no such file")
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
    one_line_error(proc, needle)
    assert proc.returncode == 2
    assert not (Path(env["BRAIN_HOME"]) / "pg").exists()


def _quarantined(dsn: str, exchange: str) -> list[tuple[str, int, bool]]:
    with connect(dsn) as conn:
        rows = conn.execute(
            "select expectation, source_row, landed from raw.quarantine_ohlcv "
            "where exchange = %s order by source_row, expectation",
            (exchange,),
        ).fetchall()
    return [(str(e), int(r), bool(landed)) for e, r, landed in rows]


def _stored(dsn: str, exchange: str) -> list[tuple[object, ...]]:
    with connect(dsn) as conn:
        return conn.execute(
            "select ts, open, high, low, close, volume from raw.ohlcv where exchange = %s "
            "order by ts",
            (exchange,),
        ).fetchall()


def test_ingest_lands_valid_rows_and_quarantines_the_rest_one_line_per_rule(
    env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    """The raw.ohlcv suite runs on the file at the door: valid rows land, each broken
    rule is one line with its count and file rows, the bad rows go to quarantine with
    landed = false, exit 1; --strict refuses the whole file."""
    env["BRAIN_DATABASE_URL"] = pg_dsn
    header = "ts,open,high,low,close,volume\n"
    good = [f"2025-02-01T{h:02d}:00Z,100,101,99,100.5,10" for h in range(20)]
    # file row -> (line, the rule that must name it)
    bad = {
        21: ("2025-02-01T20:00Z,100,101,99,inf,10", "expect_candle_prices_positive"),
        22: ("2025-02-01T21:00Z,-1,101,-2,100,10", "expect_candle_prices_positive"),
        23: ("2025-02-01T22:00Z,100,98,99,100,10", "expect_candle_high_at_top"),
        24: ("2025-02-01T23:00Z,100,101,99,105,10", "expect_candle_high_at_top"),
        25: ("2025-02-02T00:00Z,100,101,99,100,-5", "expect_candle_volume_non_negative"),
        26: ("2025-02-02T01:00Z,100,1e300,99,100,10", "expect_candle_prices_plausible"),
        27: ("2025-02-02T02:00Z,100,101,99,nan,10", "expect_candle_prices_positive"),
        28: ("2025-02-02T03:00Z,100,101,99,,10", "expect_candle_prices_positive"),
        29: ("2025-02-02T04:37Z,100,101,99,100,10", "expect_candle_ts_aligned"),
        30: ("2025-02-02T05:00Z,100,1500,99,100,10", "expect_candle_not_a_spike"),
        31: ("2074-02-02T00:00Z,100,101,99,100,10", "expect_candle_ts_in_range"),
        32: ("1970-01-01T00:00:49Z,100,101,99,100,10", "expect_candle_ts_in_range"),
    }
    tail = "2025-02-02T06:00Z,100,101,99,100.5,10"  # row 33, valid
    path = tmp_path / "mixed.csv"
    path.write_text(header + "\n".join([*good, *(v[0] for v in bad.values()), tail]) + "\n")
    args = ("ingest", "ohlcv", str(path), "--symbol", "ADA/USDT")

    proc = brain(*args, "--exchange", "door", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == (
        f"{path}: 21 rows added, 0 unchanged, 12 quarantined (raw.quarantine_ohlcv) "
        "(door ADA/USDT 1h)"
    )
    lines = [line for line in proc.stderr.splitlines() if "quarantined:" in line]
    for row, (_, rule) in bad.items():
        (line,) = [line for line in lines if f"[{rule}]" in line]
        assert line.startswith(f"{path}: quarantined: ") and f"{row}" in line, line
    assert "[expect_candle_prices_positive]: 4 row(s) (row 21, 22, 27, 28)" in proc.stderr
    assert len(lines) == len({rule for _, rule in bad.values()})
    stored = _stored(pg_dsn, "door")
    assert len(stored) == 21 and stored[-1][4] == 100.5
    quarantined = _quarantined(pg_dsn, "door")
    assert {row for _, row, _ in quarantined} == set(bad)
    assert all(not landed for *_, landed in quarantined)
    for row, (_, rule) in bad.items():
        assert (rule, row, False) in quarantined

    # the same file again: nothing new lands or is copied twice, still exit 1
    again = brain(*args, "--exchange", "door", env=env)
    assert again.returncode == 1 and "0 rows added, 21 unchanged, 12 quarantined" in again.stdout
    assert _quarantined(pg_dsn, "door") == quarantined

    strict = brain(*args, "--exchange", "door-strict", "--strict", env=env)
    assert strict.returncode == 2, strict.stderr
    assert strict.stderr.splitlines()[-1] == (
        f"error: {path}: refused whole (--strict): 12 row(s) break a blocking rule; "
        "nothing written (door-strict ADA/USDT 1h)"
    )
    assert "refused: " in strict.stderr and strict.stdout == ""
    assert _stored(pg_dsn, "door-strict") == [] and _quarantined(pg_dsn, "door-strict") == []
    with connect(pg_dsn) as conn:
        left = conn.execute("select count(*) from raw.ohlcv_landing").fetchone()
    assert left == (0,)  # no batch is left behind in the landing table

    # the corrected row lands, and its key's door quarantine does not keep it out of
    # training (only copies of landed rows do)
    corrected = tmp_path / "corrected.csv"
    corrected.write_text(header + "2025-02-01T22:00Z,100,101,99,100,10\n")
    proc = brain(*args[:2], str(corrected), *args[3:], "--exchange", "door", env=env)
    assert proc.returncode == 0 and "1 rows added" in proc.stdout, proc.stderr
    with connect(pg_dsn) as conn:
        assert quarantined_timestamps(conn, "door", "ADA/USDT", "1h") == []
        report = validate_table(
            pg_dsn, "ohlcv", exchange="door", symbol="ADA/USDT", exclude_quarantined=True
        )
    assert report.row_count == 22


def test_ingest_reports_revisions_refuses_settled_ones_and_applies_them_on_request(
    env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    """The same candles with other prices are revisions, never "unchanged": kept in
    raw.ohlcv_revisions; a settled candle keeps its values unless --revise."""
    env["BRAIN_DATABASE_URL"] = pg_dsn
    header = "ts,open,high,low,close,volume\n"
    first = tmp_path / "first.csv"
    first.write_text(header + "".join(f"2025-03-01T{h:02d}:00Z,10,11,9,10.5,7\n" for h in range(6)))
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(
        header
        + "".join(
            f"2025-03-01T{h:02d}:00Z,10,11,9,{10.25 if h in (2, 4) else 10.5},7\n" for h in range(6)
        )
    )
    args = ("ingest", "ohlcv", "--exchange", "rev", "--symbol", "ADA/USDT")
    assert brain(*args[:2], str(first), *args[2:], env=env).returncode == 0
    proc = brain(*args[:2], str(fixed), *args[2:], env=env)
    assert proc.returncode == 1, proc.stderr
    assert f"{fixed}: 0 rows added, 4 unchanged (rev ADA/USDT 1h)" == proc.stdout.strip()
    assert "2 revision(s) refused" in proc.stderr and "--revise" in proc.stderr
    assert [r[4] for r in _stored(pg_dsn, "rev")] == [10.5] * 6
    applied = brain(*args[:2], str(fixed), *args[2:], "--revise", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "0 rows added, 4 unchanged, 2 revised" in applied.stdout
    assert [r[4] for r in _stored(pg_dsn, "rev")] == [10.5, 10.5, 10.25, 10.5, 10.25, 10.5]
    with connect(pg_dsn) as conn:
        revisions = conn.execute(
            "select extract(hour from ts)::int, old_close, new_close, decision from "
            "raw.ohlcv_revisions where exchange = 'rev' order by revision_id"
        ).fetchall()
    assert revisions == [
        (2, 10.5, 10.25, "refused"),
        (4, 10.5, 10.25, "refused"),
        (2, 10.5, 10.25, "applied"),
        (4, 10.5, 10.25, "applied"),
    ]


def test_ingest_refuses_unreadable_files_whole_and_writes_nothing(
    env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    env["BRAIN_DATABASE_URL"] = pg_dsn
    header = "ts,open,high,low,close,volume\n"
    far = tmp_path / "far.csv"
    far.write_text(header + "1000000000000000,1,2,0.5,1.5,10\n")  # epoch ms of year 33658
    proc = brain(
        "ingest", "ohlcv", str(far), "--exchange", "unreadable", "--symbol", "ADA/USDT", env=env
    )
    one_line_error(proc, "row 1: column ts: 1000000000000000 is no epoch milliseconds")
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
        "ingest",
        "ohlcv",
        str(booleans),
        "--exchange",
        "unreadable",
        "--symbol",
        "ADA/USDT",
        env=env,
    )
    one_line_error(proc, "column high holds booleans")
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("ts;open;high;low;close;volume\n2025-01-01T00:00Z;1;2;0.5;1.5;10\n")
    proc = brain(
        "ingest",
        "ohlcv",
        str(semicolons),
        "--exchange",
        "unreadable",
        "--symbol",
        "ADA/USDT",
        env=env,
    )
    one_line_error(proc, "separated by ';'")
    proc = brain(
        "ingest",
        "ohlcv",
        str(tmp_path),
        "--exchange",
        "unreadable",
        "--symbol",
        "ADA/USDT",
        env=env,
    )
    one_line_error(proc, "is a folder")
    with connect(pg_dsn) as conn:
        stored = conn.execute(
            "select count(*) from raw.ohlcv where exchange = 'unreadable'"
        ).fetchone()
    assert stored == (0,)
    # mixed offsets are read (both are the same instant's grid), nothing is lost
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        header + "2025-03-01T00:00:00Z,1,2,0.5,1.5,10\n2025-03-01T06:00:00+05:00,1,2,0.5,1.5,10\n"
    )
    proc = brain(
        "ingest", "ohlcv", str(mixed), "--exchange", "unreadable", "--symbol", "ADA/USDT", env=env
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
    one_line_error(proc, needle)
    assert proc.returncode == 2


def test_an_artifact_root_that_cannot_be_written_is_refused_before_training(
    env: dict[str, str], tmp_path: Path
) -> None:
    # under a plain file: no folder can be made there, whoever runs the test (root too)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env["BRAIN_ARTIFACT_ROOT"] = str(blocker / "artifacts")
    proc = brain("train", env=env)
    one_line_error(proc, f"the artifact root {blocker}/artifacts (BRAIN_ARTIFACT_ROOT) is not")
    assert proc.returncode == 2
    assert not (Path(env["BRAIN_HOME"]) / "pg").exists()  # no warehouse, nothing trained


def test_a_range_in_the_future_is_refused_before_anything(env: dict[str, str]) -> None:
    proc = brain("train", "--start", "2099-01-01", "--end", "2099-02-01", env=env)
    one_line_error(proc, "--start 2099-01-01 00:00 is in the future")
    assert proc.returncode == 2
    assert not (Path(env["BRAIN_HOME"]) / "pg").exists()  # no warehouse, nothing written


def test_an_empty_list_option_is_refused_not_defaulted(env: dict[str, str]) -> None:
    one_line_error(brain("train", "--symbols", "", env=env), "--symbols is empty")
    one_line_error(brain("train", "--model-types", " , ", env=env), "--model-types is empty")


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
        assert "2/2 versions landed" in first.stdout  # the progress bar's last state
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
            ).fetchall()  # each demo: the listener's run, then the collection's four streams
            per_symbol = conn.execute(
                "select symbol, count(*), bool_and(manifest->'feature_sets' ? 'derivatives') "
                "from raw.model_versions group by symbol order by symbol"
            ).fetchall()
            best = conn.execute("select count(*) from marts.best_model_per_symbol").fetchone()
        assert candles == [(s, 9600) for s in perps]  # 400 days × 24 hours, once
        assert len(runs) == 10
        listened, again = runs[0], runs[5]
        # the demo listens to the replay's liquidation streams: many the first time, and
        # the same ones again the second time, which add nothing
        assert listened[:2] == ("liquidations", "ok") and listened[2] > 1000
        assert again == ("liquidations", "ok", 0)
        first_run = {d: (st, n) for d, st, n in runs[1:5]}
        second_run = {d: (st, n) for d, st, n in runs[6:]}
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


def test_listen_refuses_an_exchange_without_websocket_liquidations(env: dict[str, str]) -> None:
    proc = brain(
        "listen", "liquidations", "--exchange", "kraken", "--symbols", "BTC/USDT:USDT", env=env
    )
    one_line_error(proc, "kraken publishes no liquidations over websocket")
    assert proc.returncode == 2
    assert not (Path(env["BRAIN_HOME"]) / "pg").exists()  # refused before the warehouse


def test_listen_lands_liquidations_with_a_live_count(
    env: dict[str, str], fresh_warehouse: str
) -> None:
    env = {**env, "BRAIN_DATABASE_URL": fresh_warehouse}
    proc = brain(
        "listen",
        "liquidations",
        "--exchange",
        "bybit",
        "--symbols",
        "BTC/USDT,ETH/USDT:USDT",
        "--replay",
        "--replay-speed",
        "3600",
        "--for",
        "4s",
        "--check-every",
        "0",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    with connect(fresh_warehouse) as conn:
        counts = dict(
            conn.execute(
                "select symbol, count(*) from raw.liquidations where exchange = 'bybit' "
                "group by symbol"
            ).fetchall()
        )
    # BTC/USDT means its perpetual; the table printed the same counts it landed
    assert set(counts) == {"BTC/USDT:USDT", "ETH/USDT:USDT"} and min(counts.values()) > 0
    total = sum(counts.values())
    assert f"bybit: {total} liquidation(s) received, {total} new" in proc.stdout
