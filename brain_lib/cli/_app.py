"""The ``brain`` command.

Heavy libraries (pandas, lightgbm, prefect, dbt) are imported inside the commands
that need them, so ``brain --help`` answers at once. Errors a user can cause are
printed as one line on stderr with a non-zero exit status, never as a traceback.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from brain_lib.config import Settings

app = typer.Typer(
    name="brain",
    help="Train, judge and keep the prediction models of a crypto trading desk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The warehouse (embedded PostgreSQL unless BRAIN_DATABASE_URL is set).")
ingest_app = typer.Typer(help="Load your own market data.")
models_app = typer.Typer(help="Model versions, champions, promotion and rollback.")
spool_app = typer.Typer(help="Records spooled while the warehouse was unreachable.")
quality_app = typer.Typer(help="Data quality: Great Expectations suites on the raw tables.")
replay_app = typer.Typer(help="The replay exchange: binance, bybit and okx REST on 127.0.0.1.")
features_app = typer.Typer(help="Feature importance of the champions: top features, shifts, drift.")
listen_app = typer.Typer(help="Live websocket streams into the warehouse: liquidations.")
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
app.add_typer(models_app, name="models")
app.add_typer(spool_app, name="spool")
app.add_typer(features_app, name="features")
app.add_typer(replay_app, name="replay")
app.add_typer(quality_app, name="quality")
app.add_typer(listen_app, name="listen")

EXIT_USER_ERROR = 2


def _settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from brain_lib.config import Settings
    from brain_lib.errors import ConfigError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting BRAIN_{where.upper()}: {message}") from None
    except SettingsError as exc:
        # a list or dict setting that is not JSON (BRAIN_SYMBOLS=BTC/USDT)
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"BRAIN_{field.group(1).upper()}" if field else "a BRAIN_* variable"
        raise ConfigError(
            f'invalid setting {name}: not valid JSON (write a list as \'["BTC/USDT", "ETH/USDT"]\')'
        ) from None


def _console() -> Any:
    from rich.console import Console

    # wide enough for the metrics table when the output is a file or a pipe. No markup:
    # symbols, exchanges, reasons and errors come from users and exchanges, and a name
    # such as "X[/x]" must print as itself, not as a style tag (styles go in style=)
    return Console(width=None if sys.stdout.isatty() else 160, markup=False)


def _working(text: str) -> Any:
    """A rich spinner on stderr with ``text`` and the seconds elapsed, for a step that
    takes more than a few seconds and has no count to show (nothing on a pipe)."""
    from rich.console import Console

    return Console(stderr=True, markup=False).status(text, spinner="dots")


def _split(values: str | None, option: str = "the list") -> list[str] | None:
    """A comma-separated option as a list; None when not given. Given but empty
    (``--symbols ""``) is an error, not the default."""
    if values is None:
        return None
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not items:
        from brain_lib.errors import ConfigError

        raise ConfigError(f"{option} is empty: name at least one, or leave the option out")
    return items


def _prepare(settings: Settings) -> str:
    """Warehouse URL, with the embedded server started and the raw schema in place."""
    from brain_lib.dbt import ensure_raw_schema
    from brain_lib.warehouse import ensure_reachable, resolve_dsn

    dsn = resolve_dsn(settings)
    ensure_reachable(dsn)
    ensure_raw_schema(dsn, project_dir=settings.dbt_dir, state_dir=settings.home / "dbt")
    return dsn
