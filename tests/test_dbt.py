"""dbt_brain against a real PostgreSQL: raw DDL, build, marts, unit tests, failures.

One database for the module (``warehouse_dsn``: raw tables made by
``dbt run-operation create_raw_tables``); the tests that make dbt fail put their bad
rows back out before they return.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from brain_lib.dbt import DbtResult, run_dbt
from brain_lib.errors import WarehouseError

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent / "dbt_brain"

# (column, data type, nullable) in table order, as information_schema reports them
RAW_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "ohlcv": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("open", "double precision", "NO"),
        ("high", "double precision", "NO"),
        ("low", "double precision", "NO"),
        ("close", "double precision", "NO"),
        ("volume", "double precision", "NO"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
    "model_versions": [
        ("version_id", "text", "NO"),
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("model_type", "text", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
        ("run_id", "text", "YES"),
        ("manifest", "jsonb", "NO"),
        ("artifact_uri", "text", "NO"),
        ("artifact_sha256", "text", "NO"),
        ("feature_set_hash", "text", "NO"),
        ("train_start", "timestamp with time zone", "NO"),
        ("train_end", "timestamp with time zone", "NO"),
        ("n_rows", "integer", "NO"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
    "model_metrics": [
        ("version_id", "text", "NO"),
        ("scope", "text", "NO"),
        ("metric", "text", "NO"),
        ("value", "double precision", "YES"),
        ("window_start", "timestamp with time zone", "YES"),
        ("window_end", "timestamp with time zone", "YES"),
        ("computed_at", "timestamp with time zone", "NO"),
    ],
    "model_events": [
        ("event_id", "bigint", "NO"),
        ("event_type", "text", "NO"),
        ("exchange", "text", "YES"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "YES"),
        ("model_type", "text", "NO"),
        ("version_id", "text", "YES"),
        ("previous_version_id", "text", "YES"),
        ("champion_score", "double precision", "YES"),
        ("challenger_score", "double precision", "YES"),
        ("degradation", "double precision", "YES"),
        ("threshold", "double precision", "YES"),
        ("reason", "text", "YES"),
        ("run_id", "text", "YES"),
        ("created_at", "timestamp with time zone", "NO"),
    ],
}

RAW_PRIMARY_KEYS = {
    "ohlcv": ["exchange", "symbol", "timeframe", "ts"],
    "model_versions": ["version_id"],
    "model_metrics": ["version_id", "scope", "metric"],
    "model_events": ["event_id"],
}

UNIT_TESTS = [
    "model_composite_scores::composite_score_formula",
    "model_composite_scores::composite_score_pivots_oos_metrics",
    "best_model_per_symbol::best_model_is_best_latest_version",
    "stg_raw__model_metrics::metric_nan_becomes_null",
]

# ----------------------------------------------------------- the formula, in Python

WEIGHTS = {
    "sharpe": 0.30,
    "sortino": 0.15,
    "calmar": 0.15,
    "profit_factor": 0.15,
    "hit_ratio": 0.10,
    "max_drawdown": 0.15,
}


def _defined(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def component_scores(metrics: dict[str, float | None]) -> dict[str, float | None]:
    """The bounded components of the composite score; None where the metric is undefined."""
    transforms = {
        "sharpe": lambda x: math.tanh(x / 2),
        "sortino": lambda x: math.tanh(x / 3),
        "calmar": lambda x: math.tanh(x / 3),
        "profit_factor": lambda x: 1.0 if x == math.inf else (x - 1) / (x + 1),
        "hit_ratio": lambda x: 2 * x - 1,
        "max_drawdown": lambda x: 1 + 2 * x,
    }
    out: dict[str, float | None] = {}
    for name, transform in transforms.items():
        value = metrics.get(name)
        out[name] = transform(value) if _defined(value) else None
    return out


def composite_score(metrics: dict[str, float | None]) -> float:
    """Σ weight · component, an undefined component counting 0."""
    scores = component_scores(metrics)
    return sum(weight * (scores[name] or 0.0) for name, weight in WEIGHTS.items())


# -------------------------------------------------------------------- test data

T0 = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Version:
    version_id: str
    exchange: str
    symbol: str
    model_type: str
    trained_at: datetime
    metrics: dict[str, float | None]


def _versions() -> list[Version]:
    """2 symbols × 2 model types × 2 versions, with the awkward cases mixed in."""
    metric_sets: dict[tuple[str, str, int], dict[str, float | None]] = {
        ("BTC/USDT", "lightgbm", 0): {
            "sharpe": 2.4,
            "sortino": 3.1,
            "calmar": 4.0,
            "profit_factor": 1.9,
            "hit_ratio": 0.58,
            "max_drawdown": -0.08,
        },
        ("BTC/USDT", "lightgbm", 1): {
            "sharpe": 0.7,
            "sortino": 0.9,
            "calmar": 0.8,
            "profit_factor": 1.1,
            "hit_ratio": 0.51,
            "max_drawdown": -0.21,
        },
        ("BTC/USDT", "xgboost", 0): {
            "sharpe": -0.4,
            "sortino": -0.5,
            "calmar": -0.3,
            "profit_factor": 0.9,
            "hit_ratio": 0.48,
            "max_drawdown": -0.3,
        },
        ("BTC/USDT", "xgboost", 1): {
            "sharpe": 1.3,
            "sortino": math.inf,
            "calmar": 2.2,
            "profit_factor": math.inf,
            "hit_ratio": 0.61,
            "max_drawdown": -0.04,
        },
        ("ETH/USDT", "lightgbm", 0): {
            "sharpe": 1.0,
            "sortino": 1.4,
            "calmar": 1.2,
            "profit_factor": 1.3,
            "hit_ratio": 0.53,
            "max_drawdown": -0.15,
        },
        ("ETH/USDT", "lightgbm", 1): {
            "sharpe": -1.6,
            "sortino": -2.0,
            "calmar": -0.9,
            "profit_factor": 0.6,
            "hit_ratio": 0.44,
            "max_drawdown": -1.0,
        },
        ("ETH/USDT", "xgboost", 0): {
            "sharpe": 0.2,
            "sortino": 0.3,
            "calmar": 0.1,
            "profit_factor": 1.02,
            "hit_ratio": 0.5,
            "max_drawdown": -0.4,
        },
        ("ETH/USDT", "xgboost", 1): {
            # undefined Sharpe written as NaN, undefined Sortino as NULL
            "sharpe": math.nan,
            "sortino": None,
            "calmar": 0.5,
            "profit_factor": 1.2,
            "hit_ratio": 0.52,
            "max_drawdown": -0.12,
        },
    }
    versions = []
    for (symbol, model_type, generation), metrics in metric_sets.items():
        trained_at = T0 + timedelta(days=generation, hours=len(versions))
        slug = symbol.lower().replace("/", "-")
        version_id = f"{slug}.{model_type}.{trained_at:%Y%m%dT%H%M%S}.{len(versions):06x}"
        versions.append(Version(version_id, "binance", symbol, model_type, trained_at, metrics))
    return versions


VERSIONS = _versions()


def expected_best() -> dict[str, Version]:
    """Per symbol: the latest version of each model type, best composite (then newest)."""
    latest: dict[tuple[str, str], Version] = {}
    for v in VERSIONS:
        key = (v.symbol, v.model_type)
        if key not in latest or (v.trained_at, v.version_id) > (
            latest[key].trained_at,
            latest[key].version_id,
        ):
            latest[key] = v
    best: dict[str, Version] = {}
    for v in latest.values():
        current = best.get(v.symbol)
        rank = (composite_score(v.metrics), v.trained_at, v.version_id)
        if current is None or rank > (
            composite_score(current.metrics),
            current.trained_at,
            current.version_id,
        ):
            best[v.symbol] = v
    return best


def _insert_versions(conn: psycopg.Connection[Any], versions: list[Version]) -> None:
    with conn.cursor() as cur:
        for v in versions:
            cur.execute(
                """
                insert into raw.model_versions (
                    version_id, exchange, symbol, timeframe, model_type, created_at, run_id,
                    manifest, artifact_uri, artifact_sha256, feature_set_hash,
                    train_start, train_end, n_rows
                ) values (%s, %s, %s, '1h', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    v.version_id,
                    v.exchange,
                    v.symbol,
                    v.model_type,
                    v.trained_at,
                    "0b6d1f1e-0000-4000-8000-000000000001",
                    Jsonb({"model_type": v.model_type, "features": ["ret_1", "vol_24"]}),
                    f"file:///artifacts/{v.version_id}/model.txt",
                    "ab" * 32,
                    "f" * 16,
                    v.trained_at - timedelta(days=180),
                    v.trained_at - timedelta(days=30),
                    3600,
                ),
            )
            cur.executemany(
                """
                insert into raw.model_metrics
                    (version_id, scope, metric, value, window_start, window_end)
                values (%s, 'oos', %s, %s, %s, %s)
                """,
                [
                    (
                        v.version_id,
                        name,
                        value,
                        v.trained_at - timedelta(days=30),
                        v.trained_at,
                    )
                    for name, value in [*v.metrics.items(), ("n_bars", 720.0)]
                ],
            )
            # an in-sample Sharpe that the marts must ignore
            cur.execute(
                "insert into raw.model_metrics (version_id, scope, metric, value) "
                "values (%s, 'in_sample', 'sharpe', 9.9)",
                (v.version_id,),
            )


def _insert_market_and_events(conn: psycopg.Connection[Any]) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    candles = [
        (
            "binance",
            symbol,
            "1h",
            now - timedelta(hours=i),
            100.0 + i,
            101.0 + i,
            99.0 + i,
            100.5 + i,
            12.5,
        )
        for symbol in ("BTC/USDT", "ETH/USDT")
        for i in range(3)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, "
            "volume) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            candles,
        )
        first, second = VERSIONS[0], VERSIONS[1]
        cur.execute(
            """
            insert into raw.model_events (
                event_type, exchange, symbol, timeframe, model_type, version_id,
                previous_version_id, champion_score, challenger_score, degradation,
                threshold, reason
            ) values ('rollback', 'binance', %s, '1h', %s, %s, %s, %s, %s, %s, 0.05, %s)
            """,
            (
                second.symbol,
                second.model_type,
                first.version_id,
                second.version_id,
                0.61,
                0.32,
                (0.61 - 0.32) / 0.61,
                "challenger degraded by more than the threshold",
            ),
        )


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dbt_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One target/ for the module, so later runs parse partially (faster)."""
    return tmp_path_factory.mktemp("dbt-state")


@pytest.fixture(scope="module")
def built(warehouse_dsn: str, dbt_state: Path) -> DbtResult:
    """The module database with realistic rows, after a successful ``dbt build``."""
    with psycopg.connect(warehouse_dsn) as conn:
        _insert_versions(conn, VERSIONS)
        _insert_market_and_events(conn)
    return run_dbt(["build"], dsn=warehouse_dsn, project_dir=PROJECT, state_dir=dbt_state)


def _query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------- (a) raw schema


def _raw_columns(dsn: str) -> dict[str, list[tuple[str, str, str]]]:
    rows = _query(
        dsn,
        """
        select table_name, column_name, data_type, is_nullable
        from information_schema.columns
        where table_schema = 'raw'
        order by table_name, ordinal_position
        """,
    )
    found: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, data_type, nullable in rows:
        found.setdefault(table, []).append((column, data_type, nullable))
    return found


def _raw_primary_keys(dsn: str) -> dict[str, list[str]]:
    rows = _query(
        dsn,
        """
        select tc.table_name, kcu.column_name
        from information_schema.table_constraints as tc
        join information_schema.key_column_usage as kcu
            on kcu.constraint_name = tc.constraint_name
            and kcu.table_schema = tc.table_schema
        where tc.table_schema = 'raw' and tc.constraint_type = 'PRIMARY KEY'
        order by tc.table_name, kcu.ordinal_position
        """,
    )
    keys: dict[str, list[str]] = {}
    for table, column in rows:
        keys.setdefault(table, []).append(column)
    return keys


def test_create_raw_tables_makes_the_exact_raw_schema(warehouse_dsn: str) -> None:
    assert _raw_columns(warehouse_dsn) == RAW_COLUMNS
    assert _raw_primary_keys(warehouse_dsn) == RAW_PRIMARY_KEYS
    identity = _query(
        warehouse_dsn,
        "select is_identity, identity_generation from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'model_events' and column_name = 'event_id'",
    )
    assert identity == [("YES", "ALWAYS")]


def test_create_raw_tables_twice_is_harmless(warehouse_dsn: str, dbt_state: Path) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute(
            "insert into raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, "
            "volume) values ('okx', 'SOL/USDT', '1d', %s, 1, 2, 0.5, 1.5, 10)",
            (T0,),
        )
    try:
        result = run_dbt(
            ["run-operation", "create_raw_tables"],
            dsn=warehouse_dsn,
            project_dir=PROJECT,
            state_dir=dbt_state,
        )
        assert result.ok
        assert _raw_columns(warehouse_dsn) == RAW_COLUMNS
        rows = _query(warehouse_dsn, "select count(*) from raw.ohlcv where exchange = 'okx'")
        assert rows == [(1,)]
    finally:
        with psycopg.connect(warehouse_dsn) as conn:
            conn.execute("delete from raw.ohlcv where exchange = 'okx'")


def test_raw_defaults_and_checks(warehouse_dsn: str) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute(
            """
            insert into raw.model_versions (
                version_id, exchange, symbol, timeframe, model_type, manifest, artifact_uri,
                artifact_sha256, feature_set_hash, train_start, train_end, n_rows
            ) values ('tmp.v', 'binance', 'BTC/USDT', '1h', 'lightgbm', '{}', 'x', %s, 'h',
                      %s, %s, 1)
            """,
            ("0" * 64, T0, T0),
        )
        conn.execute(
            "insert into raw.model_metrics (version_id, metric, value) "
            "values ('tmp.v', 'profit_factor', 'Infinity')"
        )
        scope, value, loaded = conn.execute(
            "select m.scope, m.value, v.loaded_at is not null from raw.model_metrics m "
            "join raw.model_versions v using (version_id) where version_id = 'tmp.v'"
        ).fetchone() or (None, None, None)
        assert (scope, value, loaded) == ("oos", math.inf, True)
        conn.rollback()

        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                """
                insert into raw.model_versions (
                    version_id, exchange, symbol, timeframe, model_type, manifest,
                    artifact_uri, artifact_sha256, feature_set_hash, train_start, train_end,
                    n_rows
                ) values ('tmp.v', 'binance', 'BTC/USDT', '1h', 'lightgbm', '{}', 'x',
                          'not-a-sha', 'h', %s, %s, 1)
                """,
                (T0, T0),
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "insert into raw.model_events (event_type, symbol, model_type) "
                "values ('demotion', 'BTC/USDT', 'lightgbm')"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "insert into raw.model_metrics (version_id, metric, value) "
                "values ('no.such.version', 'sharpe', 1)"
            )
        conn.rollback()


# -------------------------------------------------------------- (b) build, marts


def test_build_passes(built: DbtResult) -> None:
    assert built.ok
    assert re.search(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", built.output), built.output
    assert "deprecat" not in built.output.lower(), built.output


def test_composite_scores_match_the_formula(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        """
        select version_id, sharpe, score_sharpe, score_sortino, score_calmar,
               score_profit_factor, score_hit_ratio, score_max_drawdown, composite_score,
               n_bars, n_rows
        from marts.model_composite_scores
        """,
    )
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == {v.version_id for v in VERSIONS}
    for v in VERSIONS:
        _, sharpe, *scores, composite, n_bars, n_rows = by_id[v.version_id]
        expected = component_scores(v.metrics)
        assert scores == [
            pytest.approx(expected[name], rel=1e-12, abs=1e-15)
            if expected[name] is not None
            else None
            for name in WEIGHTS
        ], v.version_id
        assert composite == pytest.approx(composite_score(v.metrics), rel=1e-12, abs=1e-15)
        assert -1.0 <= composite <= 1.0
        assert (n_bars, n_rows) == (720, 3600)
        if not _defined(v.metrics["sharpe"]):
            assert sharpe is None  # NaN in raw, NULL from staging on


def test_infinite_and_undefined_metrics(built: DbtResult, warehouse_dsn: str) -> None:
    no_losses = next(v for v in VERSIONS if v.metrics["profit_factor"] == math.inf)
    undefined = next(v for v in VERSIONS if v.metrics["sortino"] is None)
    rows = _query(
        warehouse_dsn,
        "select version_id, profit_factor, score_profit_factor, score_sortino "
        "from marts.model_composite_scores where version_id in (%s, %s)",
        (no_losses.version_id, undefined.version_id),
    )
    found = {row[0]: row[1:] for row in rows}
    assert found[no_losses.version_id] == (math.inf, 1.0, 1.0)
    assert found[undefined.version_id][2] is None


def test_best_model_per_symbol(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        """
        select exchange, symbol, timeframe, model_type, version_id, composite_score,
               n_candidates
        from marts.best_model_per_symbol
        order by symbol
        """,
    )
    best = expected_best()
    # the data exercises the rule: on ETH/USDT an older version has the top score overall
    eth = [v for v in VERSIONS if v.symbol == "ETH/USDT"]
    top_overall = max(eth, key=lambda v: composite_score(v.metrics))
    assert top_overall.version_id != best["ETH/USDT"].version_id
    assert [row[1] for row in rows] == sorted(best)
    for exchange, symbol, timeframe, model_type, version_id, composite, n_candidates in rows:
        want = best[symbol]
        assert (exchange, timeframe, n_candidates) == ("binance", "1h", 2)
        assert (model_type, version_id) == (want.model_type, want.version_id)
        assert composite == pytest.approx(composite_score(want.metrics), rel=1e-12)


def test_marts_have_enforced_shape(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        """
        select column_name, data_type from information_schema.columns
        where table_schema = 'marts' and table_name = 'best_model_per_symbol'
        order by ordinal_position
        """,
    )
    assert rows == [
        ("exchange", "text"),
        ("symbol", "text"),
        ("timeframe", "text"),
        ("model_type", "text"),
        ("version_id", "text"),
        ("composite_score", "double precision"),
        ("sharpe", "double precision"),
        ("trained_at", "timestamp with time zone"),
        ("n_candidates", "integer"),
    ]


def test_source_freshness_passes_on_fresh_rows(
    built: DbtResult, warehouse_dsn: str, dbt_state: Path
) -> None:
    result = run_dbt(
        ["source", "freshness"], dsn=warehouse_dsn, project_dir=PROJECT, state_dir=dbt_state
    )
    assert "PASS freshness of raw.ohlcv" in result.output
    assert "PASS freshness of raw.model_versions" in result.output


# --------------------------------------------------------------- (c) unit tests


def test_unit_tests_pass(built: DbtResult, warehouse_dsn: str, dbt_state: Path) -> None:
    result = run_dbt(
        ["test", "--select", "test_type:unit"],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
    )
    for name in UNIT_TESTS:
        assert re.search(rf"PASS {re.escape(name)}\b", result.output), name
    # dbt build ran them too, before building each model
    for name in UNIT_TESTS:
        assert re.search(rf"PASS {re.escape(name)}\b", built.output), name


def test_unit_tests_pin_the_weights(built: DbtResult, warehouse_dsn: str, dbt_state: Path) -> None:
    other = "{composite_weights: {sharpe: 0.5, sortino: 0.1, calmar: 0.1, profit_factor: 0.1, hit_ratio: 0.1, max_drawdown: 0.1}}"  # noqa: E501
    with pytest.raises(WarehouseError, match="composite_score_formula"):
        run_dbt(
            ["test", "--select", "test_type:unit", "--vars", other],
            dsn=warehouse_dsn,
            project_dir=PROJECT,
            state_dir=dbt_state,
        )


def test_weights_must_sum_to_one(built: DbtResult, warehouse_dsn: str, dbt_state: Path) -> None:
    bad = "{composite_weights: {sharpe: 0.9, sortino: 0.15, calmar: 0.15, profit_factor: 0.15, hit_ratio: 0.1, max_drawdown: 0.15}}"  # noqa: E501
    result = run_dbt(
        ["compile", "--select", "model_composite_scores", "--vars", bad],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
        check=False,
    )
    assert not result.ok
    assert "var composite_weights must sum to 1" in result.output


# ------------------------------------------------------------ (d) failures raise


def test_out_of_range_metric_fails_the_build(
    built: DbtResult, warehouse_dsn: str, dbt_state: Path
) -> None:
    bad = Version(
        "btc-usdt.lightgbm.20250310T000000.bad000",
        "binance",
        "BTC/USDT",
        "lightgbm",
        T0 + timedelta(days=9),
        {"sharpe": 1.0, "hit_ratio": 1.7},  # a hit ratio above 1: garbage from upstream
    )
    with psycopg.connect(warehouse_dsn) as conn:
        _insert_versions(conn, [bad])
    try:
        with pytest.raises(WarehouseError, match="accepted_range_model_composite_scores"):
            run_dbt(["build"], dsn=warehouse_dsn, project_dir=PROJECT, state_dir=dbt_state)
    finally:
        with psycopg.connect(warehouse_dsn) as conn:
            conn.execute("delete from raw.model_metrics where version_id = %s", (bad.version_id,))
            conn.execute("delete from raw.model_versions where version_id = %s", (bad.version_id,))


def test_orphan_metric_fails_the_relationships_test(
    built: DbtResult, warehouse_dsn: str, dbt_state: Path
) -> None:
    # The foreign key stops such a row at insert time; replica mode (superuser) skips
    # it, as a bulk load with triggers off would, so the dbt test has something to find.
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute(
            "insert into raw.model_metrics (version_id, metric, value) "
            "values ('no.such.version', 'sharpe', 1)"
        )
    try:
        with pytest.raises(WarehouseError, match="relationships_raw_model_metrics_version_id"):
            run_dbt(
                ["test", "--select", "source:raw.model_metrics"],
                dsn=warehouse_dsn,
                project_dir=PROJECT,
                state_dir=dbt_state,
            )
    finally:
        with psycopg.connect(warehouse_dsn) as conn:
            conn.execute("delete from raw.model_metrics where version_id = 'no.such.version'")


def test_contract_drift_fails_the_build(
    built: DbtResult, warehouse_dsn: str, tmp_path: Path
) -> None:
    project = tmp_path / "dbt_brain"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    count = "select count(*), max(composite_score) from marts.model_composite_scores"
    before = _query(warehouse_dsn, count)
    model = project / "models" / "marts" / "model_composite_scores.sql"
    sql = model.read_text()
    assert "versions.n_rows,\n" in sql
    model.write_text(sql.replace("versions.n_rows,\n", "versions.n_rows::bigint as n_rows,\n"))
    with pytest.raises(WarehouseError, match="model_composite_scores"):
        run_dbt(
            ["run", "--select", "model_composite_scores"],
            dsn=warehouse_dsn,
            project_dir=project,
            state_dir=tmp_path / "state",
        )
    # the failed run left the mart as it was
    assert _query(warehouse_dsn, count) == before
