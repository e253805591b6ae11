"""The champion registry in the warehouse (dbt_brain), against a real PostgreSQL.

(a) raw.model_versions / model_metrics / model_events are append-only;
(b) raw.model_champions holds exactly one champion per key (its primary key);
(c) brain.composite_score, the SQL function Python judges challengers with, is the
    formula of marts.model_composite_scores and of a plain Python reimplementation;
(d) after one ``dbt build``, best_model_per_symbol picks among champions only, and
    model_champion_history answers "which version was champion at time t".

One database and one ``dbt build`` for the module (``built``). Tests that write do so in
a transaction they roll back (or put the row back), so the built rows stay as they are.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from composite_reference import component, composite_score
from psycopg.types.json import Jsonb

from brain_lib.dbt import DbtResult, run_dbt
from brain_lib.registry import SCORED_METRICS

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent / "dbt_brain"

Metrics = dict[str, float | None]


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------ the scenario

# binance SOL/USDT 1h, lightgbm: promotion of A at T1, refusal of challenger B at T2,
# promotion of C at T3, manual rollback to A at T4.
T1, T2, T3, T4 = _utc(2025, 1, 10), _utc(2025, 2, 1), _utc(2025, 3, 1), _utc(2025, 4, 1)
T_XGB = _utc(2025, 1, 15)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Version:
    version_id: str
    symbol: str
    model_type: str
    trained_at: datetime
    metrics: Metrics
    challenged_version_id: str | None = None


def _metrics(
    sharpe: float | None,
    sortino: float | None,
    calmar: float | None,
    profit_factor: float | None,
    hit_ratio: float | None,
    max_drawdown: float | None,
    round_trips: float | None = 30.0,
    exposure: float | None = 0.3,
) -> Metrics:
    return {
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": calmar,
        "profit_factor": profit_factor,
        "hit_ratio": hit_ratio,
        "max_drawdown": max_drawdown,
        "round_trips": round_trips,
        "exposure": exposure,
    }


A = Version(
    "sol-usdt.lightgbm.20250109T000000.00000a",
    "SOL/USDT",
    "lightgbm",
    _utc(2025, 1, 9),
    _metrics(1.5, 2.0, 1.8, 1.6, 0.55, -0.12),
)
B = Version(
    "sol-usdt.lightgbm.20250131T000000.00000b",
    "SOL/USDT",
    "lightgbm",
    _utc(2025, 1, 31),
    _metrics(-0.8, -1.0, -0.6, 0.7, 0.46, -0.45),
    challenged_version_id=A.version_id,
)
C = Version(
    "sol-usdt.lightgbm.20250228T000000.00000c",
    "SOL/USDT",
    "lightgbm",
    _utc(2025, 2, 28),
    # no losing bar: infinite profit factor and Sortino
    _metrics(2.2, math.inf, 3.0, math.inf, 0.6, -0.05),
    challenged_version_id=A.version_id,
)
X = Version(
    "sol-usdt.xgboost.20250114T000000.00000d",
    "SOL/USDT",
    "xgboost",
    _utc(2025, 1, 14),
    # undefined Sharpe written as NaN, undefined Calmar as NULL
    _metrics(math.nan, 0.9, None, 1.2, 0.52, -0.2),
)
G = Version(
    # the best scores of all, but never champion (no decision yet): never picked
    "sol-usdt.gru.20250120T000000.00000e",
    "SOL/USDT",
    "gru",
    _utc(2025, 1, 20),
    _metrics(3.5, 5.0, 6.0, 3.0, 0.7, -0.02),
)
D = Version(
    # versions but no champion: ADA/USDT does not appear in best_model_per_symbol
    "ada-usdt.lightgbm.20250105T000000.00000f",
    "ADA/USDT",
    "lightgbm",
    _utc(2025, 1, 5),
    _metrics(None, None, None, None, None, None, None, None),
)
VERSIONS = [A, B, C, X, G, D]
# A and X were trained and judged in one run: the same out-of-sample bars of the same
# candles, so best_model_per_symbol may compare them; every other version has its own
SHARED_WINDOW = (_utc(2024, 12, 1), _utc(2024, 12, 31))


def _window(v: Version) -> tuple[datetime, datetime]:
    if v in (A, X):
        return SHARED_WINDOW
    return v.trained_at - timedelta(days=30), v.trained_at


@dataclass(frozen=True)
class Event:
    event_type: str
    version: Version
    previous: Version | None
    at: datetime
    reason: str


EVENTS = [
    Event("promotion", A, None, T1, "first champion"),
    Event("promotion", X, None, T_XGB, "first champion"),
    Event("rollback", B, A, T2, "challenger degraded by more than the threshold"),
    Event("promotion", C, A, T3, "challenger not worse than the champion"),
    Event("manual_rollback", A, C, T4, "C misbehaves in production (ops)"),
]


def _insert_version(cur: psycopg.Cursor[Any], v: Version) -> None:
    cur.execute(
        """
        insert into raw.model_versions (
            version_id, exchange, symbol, timeframe, model_type, created_at, manifest,
            artifact_uri, artifact_sha256, feature_set_hash, train_start, train_end, n_rows,
            code_version, challenged_version_id
        ) values (%s, 'binance', %s, '1h', %s, %s, %s, %s, %s, 'f00d', %s, %s, 2000, %s, %s)
        """,
        (
            v.version_id,
            v.symbol,
            v.model_type,
            v.trained_at,
            Jsonb(
                {
                    "model_type": v.model_type,
                    "dataset": {"fingerprint_sha256": "shared" if v in (A, X) else v.version_id},
                }
            ),
            f"file:///artifacts/{v.version_id}/model.txt",
            "cd" * 32,
            v.trained_at - timedelta(days=120),
            v.trained_at - timedelta(days=30),
            "0.1.0+g1a2b3c4",
            v.challenged_version_id,
        ),
    )
    cur.executemany(
        "insert into raw.model_metrics (version_id, scope, metric, value, window_start, "
        "window_end) values (%s, 'oos', %s, %s, %s, %s)",
        [(v.version_id, name, value, *_window(v)) for name, value in v.metrics.items()],
    )


def _record_event(cur: psycopg.Cursor[Any], e: Event) -> int:
    """The event, and on a champion change the pointer's upsert, as the registry does."""
    row = cur.execute(
        """
        insert into raw.model_events (
            event_type, exchange, symbol, timeframe, model_type, version_id,
            previous_version_id, champion_score, challenger_score, reason, created_at, details
        ) values (%s, 'binance', %s, '1h', %s, %s, %s, %s, %s, %s, %s, %s)
        returning event_id
        """,
        (
            e.event_type,
            e.version.symbol,
            e.version.model_type,
            e.version.version_id,
            e.previous.version_id if e.previous else None,
            composite_score(e.previous.metrics) if e.previous else None,
            composite_score(e.version.metrics),
            e.reason,
            e.at,
            Jsonb({"window": ["2024-12-01", "2024-12-31"]}),
        ),
    ).fetchone()
    assert row is not None
    if e.event_type != "rollback":
        cur.execute(
            """
            insert into raw.model_champions
                (exchange, symbol, timeframe, model_type, version_id, since, event_id)
            values ('binance', %s, '1h', %s, %s, %s, %s)
            on conflict (exchange, symbol, timeframe, model_type) do update
                set version_id = excluded.version_id,
                    since = excluded.since,
                    event_id = excluded.event_id
            """,
            (e.version.symbol, e.version.model_type, e.version.version_id, e.at, row[0]),
        )
    return int(row[0])


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dbt_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dbt-champions")


@pytest.fixture(scope="module")
def built(warehouse_dsn: str, dbt_state: Path) -> DbtResult:
    """The module database with the scenario's rows, after one successful ``dbt build``."""
    with psycopg.connect(warehouse_dsn) as conn, conn.cursor() as cur:
        for v in VERSIONS:
            _insert_version(cur, v)
        for e in EVENTS:
            _record_event(cur, e)
    return run_dbt(["build"], dsn=warehouse_dsn, project_dir=PROJECT, state_dir=dbt_state)


def _query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        conn.execute("set time zone 'UTC'")
        return conn.execute(sql, params).fetchall()


# ------------------------------------------------------------ (a) append-only


CHANGES = {
    "model_versions": [
        "update raw.model_versions set code_version = 'patched'",
        "delete from raw.model_versions where version_id = '{b}'",
        "truncate raw.model_versions cascade",
    ],
    "model_metrics": [
        "update raw.model_metrics set value = 9 where metric = 'sharpe'",
        "delete from raw.model_metrics where version_id = '{b}'",
        "truncate raw.model_metrics",
    ],
    "model_events": [
        "update raw.model_events set reason = 'rewritten'",
        "delete from raw.model_events where version_id = '{b}'",
        "truncate raw.model_events cascade",
    ],
}


@pytest.mark.parametrize(
    ("table", "sql"),
    [(table, sql.format(b=B.version_id)) for table, sqls in CHANGES.items() for sql in sqls],
)
def test_append_only_tables_refuse_changes(
    built: DbtResult, warehouse_dsn: str, table: str, sql: str
) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        with pytest.raises(psycopg.errors.RaiseException) as raised:
            conn.execute(sql)
        conn.rollback()
        assert raised.value.sqlstate == "P0001"
        assert raised.value.diag.message_primary is not None
        assert raised.value.diag.message_primary.startswith(f"raw.{table} is append-only: ")
        # nothing changed
        counts = conn.execute(f"select count(*) from raw.{table}").fetchone()
    expected = {"model_versions": 6, "model_metrics": 48, "model_events": 5}
    assert counts == (expected[table],)


def test_appending_still_works_and_the_pointer_moves(built: DbtResult, warehouse_dsn: str) -> None:
    late = Version(
        "sol-usdt.lightgbm.20250501T000000.000010",
        "SOL/USDT",
        "lightgbm",
        _utc(2025, 5, 1),
        _metrics(1.0, 1.0, 1.0, 1.0, 0.5, -0.1),
        challenged_version_id=A.version_id,
    )
    with psycopg.connect(warehouse_dsn) as conn:
        with conn.cursor() as cur:
            _insert_version(cur, late)
            event_id = _record_event(
                cur, Event("manual_promotion", late, A, _utc(2025, 5, 2), "ops")
            )
        row = conn.execute(
            "select version_id, event_id, since from raw.model_champions "
            "where symbol = 'SOL/USDT' and model_type = 'lightgbm'"
        ).fetchall()
        conn.rollback()
    assert row == [(late.version_id, event_id, _utc(2025, 5, 2))]


# --------------------------------------------------------- (b) one champion per key


def test_a_second_champion_for_a_key_violates_the_primary_key(
    built: DbtResult, warehouse_dsn: str
) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        event_id = conn.execute(
            "select event_id from raw.model_events where version_id = %s", (C.version_id,)
        ).fetchone()
        with pytest.raises(psycopg.errors.UniqueViolation, match="model_champions_pkey"):
            conn.execute(
                "insert into raw.model_champions "
                "(exchange, symbol, timeframe, model_type, version_id, event_id) "
                "values ('binance', 'SOL/USDT', '1h', 'lightgbm', %s, %s)",
                (C.version_id, event_id[0] if event_id else None),
            )
        conn.rollback()


@pytest.mark.parametrize(
    ("version_id", "event_id"),
    [("no.such.version", 1), (A.version_id, 999_999)],
    ids=["unknown-version", "unknown-event"],
)
def test_a_champion_must_be_a_registered_version_and_event(
    built: DbtResult, warehouse_dsn: str, version_id: str, event_id: int
) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "insert into raw.model_champions "
                "(exchange, symbol, timeframe, model_type, version_id, event_id) "
                "values ('okx', 'SOL/USDT', '1h', 'lightgbm', %s, %s)",
                (version_id, event_id),
            )
        conn.rollback()


# --------------------------------------------- (c) one formula for SQL and Python

EXTRA_CASES: dict[str, Metrics] = {
    "no_losses": _metrics(1.0, math.inf, 2.0, math.inf, 0.6, 0.0),
    "all_null": _metrics(None, None, None, None, None, None),
    "all_nan": _metrics(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan),
    "negative": _metrics(-1.0, -math.inf, -0.6, 0.0, 0.45, -1.0),
    "never_traded": _metrics(None, None, None, None, None, 0.0, 0.0, 0.0),
    "nine_trades": _metrics(1.0, 1.5, 2.0, 1.4, 0.55, -0.1, 9.0, 0.4),
    "tiny_exposure": _metrics(1.0, 1.5, 2.0, 1.4, 0.55, -0.1, 50.0, 0.019),
    "nan_evidence": _metrics(1.0, 1.5, 2.0, 1.4, 0.55, -0.1, math.nan, math.nan),
}
UNSCORED = {"all_null", "all_nan", "never_traded", "nine_trades", "tiny_exposure", "nan_evidence"}
ARGUMENTS = SCORED_METRICS  # the arguments of brain.composite_score, in order


def _sql_composite(conn: psycopg.Connection[Any], m: Metrics) -> float | None:
    row = conn.execute(
        "select brain.composite_score(%s, %s, %s, %s, %s, %s, %s, %s)",
        tuple(m[name] for name in ARGUMENTS),
    ).fetchone()
    assert row is not None
    return None if row[0] is None else float(row[0])


def _approx(value: float | None) -> object:
    return None if value is None else pytest.approx(value, rel=1e-12, abs=1e-15)


def test_composite_function_is_the_mart_formula(built: DbtResult, warehouse_dsn: str) -> None:
    sql = "select version_id, composite_score from marts.model_composite_scores"
    mart = dict(_query(warehouse_dsn, sql))
    assert set(mart) == {v.version_id for v in VERSIONS}
    with psycopg.connect(warehouse_dsn) as conn:
        for v in VERSIONS:
            from_function = _sql_composite(conn, v.metrics)
            # the mart calls the same function on the same metrics: bit for bit equal
            assert from_function == mart[v.version_id], v.version_id
            assert from_function == _approx(composite_score(v.metrics))
    assert mart[D.version_id] is None  # all metrics NULL: no evidence
    assert mart[X.version_id] is None  # an undefined Sharpe: no score


@pytest.mark.parametrize("case", sorted(EXTRA_CASES))
def test_composite_function_matches_python(built: DbtResult, warehouse_dsn: str, case: str) -> None:
    metrics = EXTRA_CASES[case]
    with psycopg.connect(warehouse_dsn) as conn:
        assert _sql_composite(conn, metrics) == _approx(composite_score(metrics))
        for name, value in metrics.items():
            if name in ("round_trips", "exposure"):
                continue
            row = conn.execute(f"select brain.score_{name}(%s::double precision)", (value,))
            got = row.fetchone()
            want = component(name, value)
            assert got is not None
            if want is None:
                assert got[0] is None, (name, value)
            else:
                assert got[0] == pytest.approx(want, rel=1e-12, abs=1e-15), (name, value)
    assert (composite_score(metrics) is None) == (case in UNSCORED)


def test_composite_function_records_its_weights(built: DbtResult, warehouse_dsn: str) -> None:
    (comment,) = _query(
        warehouse_dsn,
        "select obj_description('brain.composite_score(float8, float8, float8, float8, float8, "
        "float8, float8, float8)'::regprocedure, 'pg_proc')",
    )[0]
    assert "sharpe 0.3, sortino 0.15, calmar 0.15, profit_factor 0.15" in comment
    assert "10 round trips, 0.02 exposure" in comment
    # the six-argument function of raw schema v5, which scored "no evidence", is gone
    assert _query(
        warehouse_dsn,
        "select count(*) from pg_proc where proname = 'composite_score' "
        "and pronamespace = 'brain'::regnamespace",
    ) == [(1,)]


# ----------------------------------------------------- (d) the marts after dbt build


def test_build_passes(built: DbtResult) -> None:
    assert built.ok
    assert re.search(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", built.output), built.output
    for name in (
        "best_model_per_symbol::best_model_is_best_champion",
        "model_champion_history::champion_history_periods",
        "model_champion_history::champion_history_same_instant",
        "model_champion_history::champion_history_unservable_champion",
        "assert_best_model_is_top_champion",
        "assert_champion_history_matches_champions",
        "assert_champion_history_is_a_chain",
        "assert_champions_match_their_events",
    ):
        assert re.search(rf"PASS {re.escape(name)}\b", built.output), name


def test_best_model_per_symbol_picks_among_champions(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        "select exchange, symbol, timeframe, model_type, version_id, composite_score, "
        "window_start, window_end, n_candidates, n_compared "
        "from marts.best_model_per_symbol order by symbol",
    )
    # G and C score higher than A, but G never was champion and C was rolled back;
    # X, the other champion, shares A's window but has no score (undefined Sharpe);
    # ADA/USDT has a version and no champion
    g, c, a = (composite_score(v.metrics) for v in (G, C, A))
    assert g is not None and c is not None and a is not None and g > c > a
    assert composite_score(X.metrics) is None
    assert rows == [
        (
            "binance",
            "SOL/USDT",
            "1h",
            "lightgbm",
            A.version_id,
            pytest.approx(a, rel=1e-12),
            *SHARED_WINDOW,
            2,
            1,
        )
    ]


def test_champion_history_periods(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        """
        select model_type, version_id, valid_from, valid_to, event_type, previous_version_id,
               is_current, reason
        from marts.model_champion_history
        where exchange = 'binance' and symbol = 'SOL/USDT' and timeframe = '1h'
        order by model_type, valid_from
        """,
    )
    assert rows == [
        ("lightgbm", A.version_id, T1, T3, "promotion", None, False, "first champion"),
        (
            "lightgbm",
            C.version_id,
            T3,
            T4,
            "promotion",
            A.version_id,
            False,
            "challenger not worse than the champion",
        ),
        (
            "lightgbm",
            A.version_id,
            T4,
            None,
            "manual_rollback",
            C.version_id,
            True,
            "C misbehaves in production (ops)",
        ),
        ("xgboost", X.version_id, T_XGB, None, "promotion", None, True, "first champion"),
    ]
    # the current periods are the online pointer
    current = _query(
        warehouse_dsn,
        "select model_type, version_id, event_id from marts.model_champion_history "
        "where is_current order by model_type",
    )
    pointer = _query(
        warehouse_dsn,
        "select model_type, version_id, event_id from raw.model_champions order by model_type",
    )
    assert current == pointer


POINT_IN_TIME = """
select version_id from marts.model_champion_history
where symbol = 'SOL/USDT' and model_type = %s
  and valid_from <= %s and (valid_to is null or valid_to > %s)
"""


@pytest.mark.parametrize(
    ("model_type", "at", "expected"),
    [
        ("lightgbm", T1 - MICROSECOND, []),  # before the first promotion
        ("lightgbm", T1, [A]),  # valid_from is inclusive
        ("lightgbm", T2, [A]),  # the refusal of B changes nothing
        ("lightgbm", T3 - MICROSECOND, [A]),  # valid_to is exclusive ...
        ("lightgbm", T3, [C]),  # ... and the next period starts there
        ("lightgbm", _utc(2025, 3, 15), [C]),
        ("lightgbm", T4 - MICROSECOND, [C]),
        ("lightgbm", T4, [A]),  # the manual rollback restored A
        ("lightgbm", _utc(2030, 1, 1), [A]),  # the current period never ends
        ("xgboost", T_XGB - MICROSECOND, []),
        ("xgboost", T3, [X]),
        ("gru", T4, []),  # never champion
    ],
)
def test_point_in_time_query(
    built: DbtResult, warehouse_dsn: str, model_type: str, at: datetime, expected: list[Version]
) -> None:
    rows = _query(warehouse_dsn, POINT_IN_TIME, (model_type, at, at))
    assert [r[0] for r in rows] == [v.version_id for v in expected]


def test_documented_point_in_time_query(built: DbtResult, warehouse_dsn: str) -> None:
    # verbatim from the docs (_marts__docs.md, README.md); the date literal is read in
    # the session's time zone, UTC here. 2025-03-01 is T3, C's first instant.
    docs = (PROJECT / "models" / "marts" / "_marts__docs.md").read_text()
    query = (
        "select version_id from marts.model_champion_history where symbol = 'SOL/USDT' "
        "and model_type = 'lightgbm' and valid_from <= '2025-03-01' "
        "and (valid_to is null or valid_to > '2025-03-01')"
    )
    assert " ".join(query.split()) in " ".join(docs.split())
    assert _query(warehouse_dsn, query) == [(C.version_id,)]


def test_a_pointer_that_disagrees_with_the_log_fails_the_build(
    built: DbtResult, warehouse_dsn: str, dbt_state: Path
) -> None:
    # point SOL/USDT lightgbm back at C, by C's promotion event: the pointer is
    # consistent with that event, but not with the log, whose last word is A
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute(
            "update raw.model_champions set version_id = %s, event_id = "
            "(select event_id from raw.model_events where event_type = 'promotion' "
            "and version_id = %s) where symbol = 'SOL/USDT' and model_type = 'lightgbm'",
            (C.version_id, C.version_id),
        )
    try:
        result = run_dbt(
            ["test", "--select", "assert_champion_history_matches_champions"],
            dsn=warehouse_dsn,
            project_dir=PROJECT,
            state_dir=dbt_state,
            check=False,
        )
        assert not result.ok
        assert "FAIL 1 assert_champion_history_matches_champions" in result.output
    finally:
        with psycopg.connect(warehouse_dsn) as conn:
            conn.execute(
                "update raw.model_champions set version_id = %s, event_id = "
                "(select event_id from raw.model_events where event_type = 'manual_rollback') "
                "where symbol = 'SOL/USDT' and model_type = 'lightgbm'",
                (A.version_id,),
            )


def test_an_existing_warehouse_learns_the_champion_unservable_event(
    fresh_warehouse: str, tmp_path: Path
) -> None:
    """A warehouse created before champion_unservable (the v6 check constraint, under
    PostgreSQL's default name) accepts it after create_raw_tables, and still refuses an
    unknown event type; a second run leaves the constraint alone."""
    old_check = (
        "check (event_type in ('promotion', 'rollback', 'manual_promotion', 'manual_rollback'))"
    )
    insert = (
        "insert into raw.model_events (event_type, exchange, symbol, timeframe, model_type, "
        "previous_version_id, reason) values (%s, 'binance', 'SOL/USDT', '1h', 'lightgbm', "
        "'v', 'artifact missing')"
    )
    with psycopg.connect(fresh_warehouse, autocommit=True) as conn:
        conn.execute("alter table raw.model_events drop constraint model_events_event_type_check")
        conn.execute(
            f"alter table raw.model_events add constraint model_events_event_type_check {old_check}"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(insert, ("champion_unservable",))
    for _ in range(2):
        result = run_dbt(
            ["run-operation", "create_raw_tables"],
            dsn=fresh_warehouse,
            project_dir=PROJECT,
            state_dir=tmp_path,
        )
        assert result.ok, result.output
    with psycopg.connect(fresh_warehouse, autocommit=True) as conn:
        conn.execute(insert, ("champion_unservable",))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(insert, ("demotion",))
        checks = conn.execute(
            "select count(*) from pg_constraint where conrelid = 'raw.model_events'::regclass "
            "and contype = 'c'"
        ).fetchone()
    assert checks == (1,)
