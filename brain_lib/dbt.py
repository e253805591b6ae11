"""Run dbt (``dbt_brain/``) against the warehouse.

dbt runs in a child process so that its global state, logging and adapter
connections stay out of the caller; the connection comes in through environment
variables that ``dbt_brain/profiles.yml`` reads (``BRAIN_PG*``), never through a file,
and the password never reaches a log line.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from brain_lib.errors import WarehouseError
from brain_lib.warehouse import parse_dsn

__all__ = [
    "DbtResult",
    "Freshness",
    "dbt_command",
    "dbt_env",
    "ensure_raw_schema",
    "expected_raw_schema_version",
    "run_dbt",
    "source_freshness",
]


@dataclass(frozen=True)
class DbtResult:
    """A finished dbt invocation."""

    args: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def dbt_command() -> list[str]:
    """The dbt executable of this interpreter's environment."""
    exe = Path(sys.executable).with_name("dbt")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from dbt.cli.main import cli; cli()"]


def dbt_env(dsn: str, state_dir: Path) -> dict[str, str]:
    """Environment for a dbt child process connected to ``dsn``."""
    params = parse_dsn(dsn)
    env = dict(os.environ)
    env.update(
        {
            "BRAIN_PGHOST": params.host,
            "BRAIN_PGPORT": str(params.port),
            "BRAIN_PGUSER": params.user,
            "BRAIN_PGPASSWORD": params.password,
            "BRAIN_PGDATABASE": params.dbname,
            "DBT_TARGET_PATH": str(state_dir / "target"),
            "DBT_LOG_PATH": str(state_dir / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_USE_COLORS": "false",
        }
    )
    return env


_FAILURE_MARKERS = ("ERROR", "FAIL ", "Error", "error:")


def _failure_detail(output: str, keep: int = 6) -> str:
    """The lines of dbt's output that say what failed, each with the line after it
    (dbt prints a compile or database error's explanation on the next line)."""
    lines = [line.strip() for line in output.splitlines()]
    picked: list[str] = []
    for i, line in enumerate(lines):
        if "Done. PASS=" in line or not any(marker in line for marker in _FAILURE_MARKERS):
            continue
        for candidate in (line, lines[i + 1] if i + 1 < len(lines) else ""):
            if candidate and candidate not in picked:
                picked.append(candidate)
    if not picked:
        picked = [line for line in lines if line][-3:]
    return "; ".join(picked[-keep:])


def run_dbt(
    args: list[str],
    *,
    dsn: str,
    project_dir: Path,
    state_dir: Path,
    check: bool = True,
    timeout: float = 900,
) -> DbtResult:
    """Run ``dbt <args>`` for ``project_dir``; raise :class:`WarehouseError` on failure.

    ``state_dir`` holds dbt's target/ and logs/ (the docs site lands in
    ``state_dir/target``). The error names the failing nodes from dbt's own output.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    with _warehouse_lock(dsn, args):
        return _run(
            args,
            dsn=dsn,
            project_dir=project_dir,
            state_dir=state_dir,
            check=check,
            timeout=timeout,
        )


# dbt commands that create or replace relations; two at once collide
# ("relation already exists"), so they queue on a session advisory lock
_WRITING_COMMANDS = {"build", "run", "run-operation", "seed", "snapshot"}


@contextlib.contextmanager
def _warehouse_lock(dsn: str, args: list[str]) -> Iterator[None]:
    if not args or args[0] not in _WRITING_COMMANDS:
        yield
        return
    import psycopg

    from brain_lib.warehouse import connect

    with connect(dsn, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('brain-dbt'))")
        try:
            yield
        finally:
            # a session lock dies with its connection: when the server went away
            # mid-command, the command's own error is the one to see
            with contextlib.suppress(psycopg.Error):
                conn.execute("select pg_advisory_unlock(hashtext('brain-dbt'))")


def _run(
    args: list[str], *, dsn: str, project_dir: Path, state_dir: Path, check: bool, timeout: float
) -> DbtResult:
    cmd = [
        *dbt_command(),
        *args,
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
    ]
    proc = subprocess.run(
        cmd,
        env=dbt_env(dsn, state_dir),
        cwd=str(project_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = (proc.stdout or "") + (proc.stderr or "")
    result = DbtResult(tuple(args), proc.returncode, output)
    if check and not result.ok:
        raise WarehouseError(
            f"dbt {' '.join(args)} failed (exit {proc.returncode}): {_failure_detail(output)}"
        )
    return result


def expected_raw_schema_version(project_dir: Path) -> str:
    """``var('raw_schema_version')`` of dbt_project.yml: the raw DDL revision."""
    import yaml

    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
    return f"brain raw schema v{project['vars']['raw_schema_version']}"


def ensure_raw_schema(dsn: str, *, project_dir: Path, state_dir: Path) -> bool:
    """Create or upgrade the raw landing tables and the ``brain`` SQL functions when
    the warehouse's raw schema revision differs from the project's.

    Returns True when dbt ran (``run-operation create_raw_tables``). The definition
    lives only in ``dbt_brain/macros/``; the revision is the comment on schema ``raw``.
    """
    from brain_lib.warehouse import connect

    with connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = 'raw'"
        ).fetchone()
    if row is not None and row[0] == expected_raw_schema_version(project_dir):
        return False
    run_dbt(
        ["run-operation", "create_raw_tables"],
        dsn=dsn,
        project_dir=project_dir,
        state_dir=state_dir,
    )
    return True


@dataclass(frozen=True)
class Freshness:
    """The freshness of one dbt source table (``dbt source freshness``)."""

    source: str
    status: str
    max_loaded_at: str | None
    age_seconds: float | None

    @property
    def stale(self) -> bool:
        """Past its warn_after (or error_after), or with no rows at all."""
        return self.status != "pass"


def source_freshness(
    dsn: str, *, project_dir: Path, state_dir: Path, select: list[str]
) -> list[Freshness]:
    """``dbt source freshness --select …`` and what it found, per table.

    Reads dbt's ``sources.json`` rather than its log. An empty table counts as stale
    (dbt reports it as an error: there is nothing fresh in it).
    """
    import json

    result = run_dbt(
        ["source", "freshness", "--select", *select],
        dsn=dsn,
        project_dir=project_dir,
        state_dir=state_dir,
        check=False,
    )
    path = state_dir / "target" / "sources.json"
    if not path.exists():
        raise WarehouseError(f"dbt source freshness wrote no sources.json: {result.output[-500:]}")
    found = []
    for item in json.loads(path.read_text()).get("results", []):
        source = str(item.get("unique_id", "")).removeprefix("source.brain.")
        found.append(
            Freshness(
                source=source,
                status=str(item.get("status", "unknown")),
                max_loaded_at=item.get("max_loaded_at"),
                age_seconds=item.get("max_loaded_at_time_ago_in_s"),
            )
        )
    return sorted(found, key=lambda f: f.source)
