"""The ``brain`` command, one module per command group.

Heavy libraries (pandas, lightgbm, prefect, dbt) are imported inside the commands
that need them, so ``brain --help`` answers at once. Errors a user can cause are
printed as one line on stderr with a non-zero exit status, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from brain_lib.cli import (  # noqa: F401  (commands)
    bi,
    collect,
    db,
    docs,
    ingest,
    listen,
    models,
    quality,
    select,
    train,
)
from brain_lib.cli._app import EXIT_USER_ERROR, app

__all__ = ["app", "main"]


# --------------------------------------------------------------------------- main


def main() -> None:
    """Entry point of the ``brain`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        from brain_lib.errors import BrainError

        if isinstance(exc, BrainError):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        raise


if __name__ == "__main__":
    main()
