"""brain ingest: your own market data into the raw tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brain_lib.cli._app import (
    _prepare,
    _settings,
    ingest_app,
)

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------- ingest


def read_candles_file(path: Path) -> Any:
    """Read a CSV or Parquet file of candles into a frame with ts + OHLCV columns.

    ``ts`` may be ISO-8601 text (UTC assumed when no offset is given) or epoch
    milliseconds (numbers above 10^11) or seconds. ``timestamp``, ``time``,
    ``date`` and ``datetime`` are accepted as names of the ``ts`` column.
    """
    import pandas as pd

    from brain_lib.errors import DataError

    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a .csv or .parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt", ".gz"):
            frame = pd.read_csv(path)
        else:
            raise DataError(f"{path}: unknown file type {path.suffix!r} (use .csv or .parquet)")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if len(frame.columns) == 1 and any(sep in frame.columns[0] for sep in ";\t|"):
        raise DataError(
            f"{path}: one column named {frame.columns[0][:60]!r}: the file looks separated "
            "by ';', a tab or '|'; write it with commas"
        )
    if "ts" not in frame.columns:
        for alias in ("timestamp", "time", "date", "datetime"):
            if alias in frame.columns:
                frame = frame.rename(columns={alias: "ts"})
                break
    if "ts" in frame.columns and pd.api.types.is_numeric_dtype(frame["ts"]):
        unit = "ms" if frame["ts"].abs().max() > 1e11 else "s"
        frame["ts"] = pd.to_datetime(frame["ts"], unit=unit, utc=True)
    return frame


@ingest_app.command("ohlcv")
def ingest_ohlcv(
    file: Annotated[
        Path, typer.Argument(help="CSV or Parquet: ts, open, high, low, close, volume")
    ],
    exchange: Annotated[str, typer.Option(help="Exchange the candles come from.")],
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. BTC/USDT.")],
    timeframe: Annotated[str, typer.Option(help="Bar length, e.g. 1h.")] = "1h",
) -> None:
    """Load candles from a file through the bulk COPY path (idempotent).

    The names are checked first (brain_lib.names), then every row: a file with a value
    that is not a finite number, a timestamp outside 2009 … tomorrow or off the
    timeframe's grid, or inconsistent prices is refused whole, with the row and the
    problem, and nothing is written."""
    from brain_lib.names import check_exchange, check_symbol, check_timeframe
    from brain_lib.warehouse import connect, copy_ohlcv

    check_exchange(exchange, "--exchange")
    check_symbol(symbol, "--symbol")
    check_timeframe(timeframe, "--timeframe")
    settings = _settings()
    frame = read_candles_file(file)
    dsn = _prepare(settings)
    with connect(dsn) as conn:
        report = copy_ohlcv(
            conn,
            frame,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            source=str(file),
            strict=True,
        )
    typer.echo(
        f"{file}: {report.added} rows added, {report.unchanged} unchanged "
        f"({exchange} {symbol} {timeframe})"
    )
