"""brain ingest: your own market data into the raw tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from brain_lib.cli._app import (
    _prepare,
    _settings,
    ingest_app,
)

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
        if pd.api.types.is_bool_dtype(frame["ts"]):
            raise DataError(f"{path}: column ts holds booleans, not timestamps")
        unit = "ms" if frame["ts"].abs().max() > 1e11 else "s"
        # what a nanosecond timestamp can hold (years 1677 … 2262); beyond is no candle
        limit = 9.2e12 if unit == "ms" else 9.2e9
        beyond = (frame["ts"].abs() > limit).to_numpy()
        if beyond.any():
            row = int(beyond.nonzero()[0][0])
            raise DataError(
                f"{path}: row {row + 1}: column ts: {frame['ts'].iloc[row]} is no epoch "
                f"{'milli' if unit == 'ms' else ''}seconds of a candle (past the year 2262)"
            )
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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Refuse the whole file when a row breaks a rule (nothing lands)."
        ),
    ] = False,
    revise: Annotated[
        bool,
        typer.Option(
            "--revise",
            help="Apply the file's values to candles stored with other values (corrections).",
        ),
    ] = False,
) -> None:
    """Load candles from a file, checked by the raw.ohlcv quality suite first.

    Names are checked before anything else (brain_lib.names). A file that cannot be
    read (a column, a timestamp or number that is not one, a repeated stamp) is refused
    whole, exit 2. Otherwise the raw.ohlcv suite (Great Expectations) runs on the file's
    rows: valid rows land, rows that break a blocking rule go to raw.quarantine_ohlcv
    with the rule, one line per rule is printed, and the exit code is 1. With --strict
    such a file is refused whole (exit 2, nothing written). A candle stored with other
    values is a revision: applied while the stored one was provisional, else refused
    (exit 1) unless --revise; all are kept in raw.ohlcv_revisions. Exit 0: every row
    landed or was already there."""
    from brain_lib.door import land_candles
    from brain_lib.names import check_exchange, check_symbol, check_timeframe

    check_exchange(exchange, "--exchange")
    check_symbol(symbol, "--symbol")
    check_timeframe(timeframe, "--timeframe")
    settings = _settings()
    frame = read_candles_file(file)
    dsn = _prepare(settings)
    report = land_candles(
        dsn,
        frame,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        source=str(file),
        strict=strict,
        revise=revise,
    )
    lines = report.lines()
    for line in lines[:-1]:
        typer.echo(line, err=True)
    if report.refused_whole:
        typer.echo(f"error: {lines[-1]}", err=True)
        raise typer.Exit(2)
    typer.echo(lines[-1])
    if not report.clean:
        raise typer.Exit(1)
