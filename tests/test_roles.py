"""The warehouse roles dbt makes (dbt_brain/macros/roles.sql): brain_bi reads every mart
and nothing else and can write nothing; brain_writer's members run the flows' writes and
the dbt build; a rebuilt mart keeps brain_bi's grant; `brain db login` gives a role a
hashed password."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from brain_lib.dbt import run_dbt

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "dbt_brain"


def _marts(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "select table_name from information_schema.tables where table_schema = 'marts' "
        "order by table_name"
    ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def built(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with two symbols of candles, built once by `dbt build`."""
    from markets import seed_planted

    state = tmp_path_factory.mktemp("dbt-roles")
    run_dbt(
        ["run-operation", "create_raw_tables"], dsn=pg_dsn, project_dir=PROJECT, state_dir=state
    )
    seed_planted(pg_dsn, ["BTC/USDT", "ETH/USDT"], days=60)
    run_dbt(["build"], dsn=pg_dsn, project_dir=PROJECT, state_dir=state)
    return pg_dsn


def _as_bi(dsn: str) -> psycopg.Connection:
    """A session with brain_bi's privileges (SET ROLE drops the superuser's), with
    read-only switched off, so only the grants stand between it and a write."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("set role brain_bi")
    conn.execute("set default_transaction_read_only = off")
    return conn


def test_bi_reads_every_mart_and_sees_what_the_owner_sees(built: str) -> None:
    with psycopg.connect(built, autocommit=True) as owner:
        marts = _marts(owner)
        counts = {
            m: owner.execute(f'select count(*) from marts."{m}"').fetchone()[0] for m in marts
        }
    assert "model_composite_scores" in marts and "fct_features_hourly" in marts
    assert counts["fct_features_hourly"] > 0
    with _as_bi(built) as bi:
        for mart in marts:
            assert bi.execute(f'select count(*) from marts."{mart}"').fetchone()[0] == counts[mart]


@pytest.mark.parametrize(
    "relation",
    ["raw.ohlcv", "raw.model_versions", "raw.quarantine_ohlcv", "staging.stg_raw__ohlcv"],
)
def test_bi_cannot_read_raw_or_staging(built: str, relation: str) -> None:
    with _as_bi(built) as bi, pytest.raises(errors.InsufficientPrivilege):
        bi.execute(f"select * from {relation} limit 1")


@pytest.mark.parametrize(
    "statement",
    [
        "insert into marts.best_model_per_symbol select * from marts.best_model_per_symbol",
        "delete from marts.model_composite_scores",
        "update marts.fct_features_hourly set symbol = symbol",
        "truncate marts.feature_drift",
        "drop table marts.model_champion_history",
        "create table marts.bi_scratch (x int)",
        "create table public.bi_scratch (x int)",
        "create view marts.bi_view as select 1 as x",
        "insert into raw.model_events (event) values ('x')",
        "alter table marts.model_selection_daily add column x int",
    ],
)
def test_bi_cannot_write_anything(built: str, statement: str) -> None:
    with _as_bi(built) as bi, pytest.raises(errors.InsufficientPrivilege):
        bi.execute(statement)


def test_rebuilt_marts_keep_the_bi_grant(built: str, tmp_path: Path) -> None:
    def oid(conn: psycopg.Connection) -> int:
        return conn.execute("select 'marts.model_composite_scores'::regclass::oid").fetchone()[0]

    with psycopg.connect(built, autocommit=True) as owner:
        before = oid(owner)
    run_dbt(
        ["build", "--select", "model_composite_scores"],
        dsn=built,
        project_dir=PROJECT,
        state_dir=tmp_path / "dbt",
    )
    with psycopg.connect(built, autocommit=True) as owner:
        assert oid(owner) != before  # a new table was swapped in
        acl = owner.execute(
            "select relacl::text from pg_class where oid = 'marts.model_composite_scores'::regclass"
        ).fetchone()[0]
    assert "brain_bi=r/" in acl
    with _as_bi(built) as bi:
        bi.execute("select count(*) from marts.model_composite_scores").fetchone()


@pytest.fixture
def writer_login(built: str) -> Iterator[str]:
    """A non-superuser login that is a member of brain_writer; dropped afterwards."""
    name = f"t_flows_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {} login in role brain_writer").format(sql.Identifier(name))
        )
    prefix = built.split("://", 1)[1].split("@", 1)[0]
    yield built.replace(f"://{prefix}@", f"://{name}@", 1)
    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute(sql.SQL("reassign owned by {} to current_user").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def test_a_writer_member_writes_raw_and_rebuilds_marts(
    built: str, writer_login: str, tmp_path: Path
) -> None:
    with psycopg.connect(writer_login, autocommit=True) as writer:
        assert (
            writer.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[
                0
            ]
            is False
        )
        writer.execute(
            "insert into raw.ohlcv "
            "(exchange, symbol, timeframe, ts, open, high, low, close, volume) "
            "select exchange, 'SOL/USDT', timeframe, ts, open, high, low, close, volume "
            "from raw.ohlcv where symbol = 'BTC/USDT'"
        )
    # the whole build as the member: on-run-start DDL on objects it does not own, the
    # marts' swap, the grants and the ownership pass
    run_dbt(["build"], dsn=writer_login, project_dir=PROJECT, state_dir=tmp_path / "dbt")
    with psycopg.connect(built, autocommit=True) as owner:
        foreign = owner.execute(
            "select n.nspname || '.' || c.relname from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname in ('raw', 'staging', 'marts', 'brain') and c.relkind in ('r', 'v') "
            "and c.relowner <> 'brain_writer'::regrole"
        ).fetchall()
    assert foreign == []
    with _as_bi(built) as bi:
        symbols = bi.execute("select distinct symbol from marts.fct_features_hourly").fetchall()
    assert ("SOL/USDT",) in symbols


def test_brain_db_login_gives_bi_a_hashed_password(
    built: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from brain_lib.cli import app

    monkeypatch.setenv("BRAIN_DATABASE_URL", built)
    monkeypatch.setenv("BRAIN_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    monkeypatch.delenv("BRAIN_BI_PASSWORD", raising=False)
    missing = runner.invoke(app, ["db", "login", "brain_bi"])
    assert missing.exit_code != 0 and "BRAIN_BI_PASSWORD is not set" in str(missing.exception)

    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute("alter role brain_bi nologin password null")
    password = "bi-" + uuid.uuid4().hex
    monkeypatch.setenv("BRAIN_BI_PASSWORD", password)
    result = runner.invoke(app, ["db", "login", "brain_bi"])
    assert result.exit_code == 0, result.output
    assert password not in result.output
    with psycopg.connect(built, autocommit=True) as conn:
        can_login, stored = conn.execute(
            "select rolcanlogin, rolpassword from pg_authid where rolname = 'brain_bi'"
        ).fetchone()
    assert can_login is True
    assert stored.startswith("SCRAM-SHA-256$") and password not in stored
    # a login session of brain_bi is read-only by default
    with psycopg.connect(make_conninfo(built, user="brain_bi"), autocommit=True) as bi:
        assert bi.execute("show default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(errors.ReadOnlySqlTransaction):
            bi.execute("create temp table t (x int)")


@pytest.mark.parametrize(
    ("role", "password", "message"),
    [
        ("postgres", "long-enough-password", "unknown role 'postgres'"),
        ("brain_bi", "short", "too short"),
    ],
)
def test_login_refuses_bad_input(built: str, role: str, password: str, message: str) -> None:
    from brain_lib.errors import ConfigError
    from brain_lib.roles import enable_login

    with pytest.raises(ConfigError, match=message):
        enable_login(built, role, password)
