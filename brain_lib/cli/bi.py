"""brain bi: the dashboard (Apache Superset on the marts, as the read-only role brain_bi)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brain_lib.cli._app import _prepare, _settings, app


@app.command("bi")
def bi(
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve", help="Serve until Ctrl-C, or check the charts and stop."
        ),
    ] = True,
    install: Annotated[
        bool, typer.Option("--install", help="Install Superset into the BI venv first (minutes).")
    ] = False,
    screenshot: Annotated[
        Path | None,
        typer.Option(help="Save a PNG of the dashboard (headless Chromium), then stop."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8088,
    venv: Annotated[
        Path | None,
        typer.Option(
            envvar="BRAIN_BI_VENV", help="Superset's virtual environment (default .venv-bi)."
        ),
    ] = None,
) -> None:
    """Start Apache Superset on the marts with Brain's dashboard (leaderboard, champions,
    feature importance and drift, data quality, selector decisions) and print its URL;
    --no-serve checks every chart's data and stops."""
    import signal
    import socket
    import time

    from brain_lib import bi as dashboard
    from brain_lib.errors import BrainError, ConfigError
    from brain_lib.roles import enable_login
    from brain_lib.warehouse import open_connection, table_exists

    venv = (venv or dashboard.default_venv()).absolute()
    if install:
        typer.echo(f"installing Superset into {venv} (minutes)...", err=True)
        dashboard.install(venv)
    settings = _settings()
    state = settings.home / "bi"
    server = dashboard.BiServer(venv=venv, state=state, host=host, port=port)
    server.setup()  # a missing or broken Superset stops here, before the warehouse starts
    with socket.socket() as probe:
        # as gunicorn binds: a port left in TIME_WAIT by a server just stopped is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the dashboard on {host}:{port}: {exc.strerror}"
            ) from None

    dsn = _prepare(settings)
    with open_connection(dsn) as conn:
        built = all(table_exists(conn, f"marts.{m}") for m in dashboard.used_marts())
    if not built:
        raise ConfigError("the marts are not built yet: run `brain demo` or `brain dbt build`")
    given = settings.bi_password.get_secret_value() if settings.bi_password else ""
    if settings.database_url is not None:
        # a warehouse of its own: its admin gave brain_bi its login (`brain db login
        # brain_bi`); the dashboard uses that password and changes no role
        if not given:
            raise ConfigError(
                "BRAIN_BI_PASSWORD is not set: the dashboard logs in as brain_bi with the "
                "password `brain db login brain_bi` gave it"
            )
        password = given
    else:  # the embedded warehouse: generated once for this home (mode 0600) unless given
        password = given or dashboard.secret(state / "bi_role_password", 18)
        enable_login(dsn, dashboard.BI_ROLE, password)
    bundle = dashboard.build_bundle(
        dashboard.load_spec(),
        dashboard.mart_columns(settings.dbt_dir),
        dashboard.superset_uri(dsn, password),
    )
    server.import_dashboard(bundle)
    server.start()
    try:
        if screenshot is not None:
            shown = dashboard.screenshot(server, screenshot)
            typer.echo(
                f"{screenshot}: {shown.get('charts', 0)} charts "
                f"({shown.get('canvases', 0)} plots, {shown.get('tables', 0)} tables)"
            )
            if shown.get("errors"):
                raise BrainError(f"the dashboard shows errors: {'; '.join(shown['errors'])}")
            return
        if not serve:
            for title, rows in dashboard.chart_rows(server).items():
                typer.echo(f"{rows:6d} rows  {title}")
            return
        typer.echo(
            f"dashboard on {server.dashboard_url} (user admin, password in "
            f"{server.admin_password_file}); Ctrl-C stops",
            err=True,
        )

        def _stop(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop)
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            return
        code = server.process.returncode if server.process is not None else None
        raise BrainError(f"Superset stopped (exit {code}); see {state / 'superset.log'}")
    finally:
        server.stop()
