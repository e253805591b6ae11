"""brain docs: generate the dbt docs site against the warehouse, and serve it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brain_lib.cli._app import _prepare, _settings, _working, app


@app.command("docs")
def docs(
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the site after building it.")
    ] = True,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8080,
) -> None:
    """Generate the dbt docs site (models, sources, columns, lineage) against the
    warehouse and serve it; --no-serve builds it and prints where index.html is."""
    from brain_lib.dbt import run_dbt
    from brain_lib.errors import BrainError

    settings = _settings()
    dsn = _prepare(settings)
    state_dir = settings.home / "dbt"
    with _working("dbt docs generate: compiling the project and reading the catalog"):
        run_dbt(["docs", "generate"], dsn=dsn, project_dir=settings.dbt_dir, state_dir=state_dir)
    target = state_dir / "target"
    index = target / "index.html"
    if not index.is_file():
        raise BrainError(f"dbt docs generate wrote no {index}")
    if not serve:
        typer.echo(str(index))
        return
    _serve(target, host, port)


def _serve(folder: Path, host: str, port: int) -> None:
    """Serve ``folder`` over HTTP until Ctrl-C or SIGTERM."""
    import functools
    import signal
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from brain_lib.errors import ConfigError

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request (and per healthcheck) is noise

    handler = functools.partial(Quiet, directory=str(folder))
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot serve the docs on {host}:{port}: {exc.strerror}") from None

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    typer.echo(f"dbt docs on http://{host}:{port}/ (from {folder}); Ctrl-C stops", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
