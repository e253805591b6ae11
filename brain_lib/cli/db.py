"""brain db: the warehouse (start, stop, status, url, login) and brain dbt, the passthrough."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from brain_lib.cli._app import (
    _prepare,
    _settings,
    _working,
    app,
    db_app,
)

if TYPE_CHECKING:
    pass


# ----------------------------------------------------------------------------- db


@db_app.command("start")
def db_start() -> None:
    """Start the embedded warehouse (no-op with BRAIN_DATABASE_URL)."""
    settings = _settings()
    if settings.database_url is not None:
        typer.echo("BRAIN_DATABASE_URL is set: using that database, nothing embedded started")
        return
    from brain_lib.warehouse import EmbeddedWarehouse

    url = EmbeddedWarehouse(settings.home).start()
    typer.echo(f"embedded warehouse running: {url}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded warehouse."""
    from brain_lib.warehouse import EmbeddedWarehouse

    stopped = EmbeddedWarehouse(_settings().home).stop()
    typer.echo("embedded warehouse stopped" if stopped else "embedded warehouse was not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the warehouse runs, and where."""
    settings = _settings()
    if settings.database_url is not None:
        from brain_lib.warehouse import ensure_reachable, parse_dsn

        dsn = settings.database_url.get_secret_value()
        where = parse_dsn(dsn).redacted()
        ensure_reachable(dsn)
        typer.echo(f"external warehouse reachable: {where}")
        return
    from brain_lib.warehouse import EmbeddedWarehouse

    status = EmbeddedWarehouse(settings.home).status()
    state = f"running (pid {status['pid']})" if status["running"] else "stopped"
    typer.echo(f"embedded warehouse {state}; data in {status['data_dir']}")
    if not status["running"]:
        raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """Print the warehouse connection URL (starts the embedded one if needed)."""
    from brain_lib.warehouse import resolve_dsn

    typer.echo(resolve_dsn(_settings()))


# ---------------------------------------------------------------------------- dbt


@app.command(
    "dbt",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def dbt_passthrough(ctx: typer.Context) -> None:
    """Run dbt on dbt_brain/ against the warehouse: brain dbt build, brain dbt docs generate…"""
    from brain_lib.dbt import run_dbt

    settings = _settings()
    dsn = _prepare(settings)
    with _working(f"dbt {' '.join(ctx.args[:2])}"):
        result = run_dbt(
            list(ctx.args),
            dsn=dsn,
            project_dir=settings.dbt_dir,
            state_dir=settings.home / "dbt",
            check=False,
            timeout=24 * 3600,
        )
    typer.echo(result.output.rstrip())
    if not result.ok:
        raise typer.Exit(result.returncode)


@db_app.command("login")
def db_login(
    role: Annotated[str, typer.Argument(help="brain_bi (read-only, BI tools) or brain_writer.")],
) -> None:
    """Let one of the roles dbt makes log in, with the password from BRAIN_BI_PASSWORD
    or BRAIN_WRITER_PASSWORD (hashed before it is sent; never printed)."""
    from brain_lib.errors import ConfigError
    from brain_lib.roles import PASSWORD_SETTING, ROLES, enable_login

    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: Brain's roles are {', '.join(ROLES)}")
    settings = _settings()
    secret = settings.bi_password if role == "brain_bi" else settings.writer_password
    if secret is None or not secret.get_secret_value():
        raise ConfigError(f"{PASSWORD_SETTING[role]} is not set: export it, then run this again")
    enable_login(_prepare(settings), role, secret.get_secret_value())
    typer.echo(f"{role} may log in (password from {PASSWORD_SETTING[role]})")
