"""Derivatives and sentiment features of the hourly candles, read from the warehouse.

The features are computed in dbt (``marts.fct_features_hourly``, formulas in
``dbt_brain/models/marts/_marts__market.yml`` and docs/derivatives_features.md): one
row per 1h candle, keyed by (exchange, symbol, ts) with ``ts`` the bar's open time, and
every value uses only data stamped at or before the bar's close (``ts + 1h``). This
module only reads them:

* :func:`load_derivative_features` — a frame indexed by candle ``ts`` for a range, to
  join onto the training feature matrix (same index convention as
  :func:`brain_lib.warehouse.load_ohlcv`).
* :class:`DataCollector` — the facade for a trading service or a notebook: the latest
  ``hours`` bars of one feature group of a symbol.

    >>> collector = DataCollector(dsn="postgresql://…")                # doctest: +SKIP
    >>> collector.get_liquidation_features("BTC/USDT", hours=24)       # doctest: +SKIP

All SQL is parameterised; the column names come from the constants below.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from brain_lib.errors import ConfigError, MartNotBuiltError, UnknownSymbolError, WarehouseError
from brain_lib.warehouse import SharedConnection, resolve_dsn

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

    from brain_lib.config import Settings

__all__ = [
    "FEATURES_MART",
    "FEATURE_COLUMNS",
    "FUNDING_COLUMNS",
    "LIQUIDATION_COLUMNS",
    "OPEN_INTEREST_COLUMNS",
    "SENTIMENT_COLUMNS",
    "DataCollector",
    "load_derivative_features",
]

FEATURES_MART = "marts.fct_features_hourly"
BUILD_HINT = "build it with `brain dbt build --select +fct_features_hourly`"

FUNDING_COLUMNS: tuple[str, ...] = (
    "funding_rate",
    "funding_rate_mean_24h",
    "funding_rate_zscore",
)
OPEN_INTEREST_COLUMNS: tuple[str, ...] = (
    "open_interest",
    "open_interest_value",
    "open_interest_change_1h",
    "open_interest_change_24h",
)
LIQUIDATION_COLUMNS: tuple[str, ...] = (
    "liq_long_notional_1h",
    "liq_short_notional_1h",
    "liq_count_1h",
    "liq_imbalance_1h",
    "liq_long_notional_24h",
    "liq_short_notional_24h",
    "liq_count_24h",
    "liq_imbalance_24h",
)
SENTIMENT_COLUMNS: tuple[str, ...] = (
    "sentiment_score_mean_24h",
    "sentiment_count_24h",
)
FEATURE_COLUMNS: tuple[str, ...] = (
    *FUNDING_COLUMNS,
    *OPEN_INTEREST_COLUMNS,
    *LIQUIDATION_COLUMNS,
    *SENTIMENT_COLUMNS,
)
"""The mart's feature columns, in the mart's order (every column but the key and
``closed_at``)."""


# ------------------------------------------------------------------- helpers


def _as_utc(value: Any) -> datetime | None:
    """A bound as an aware UTC datetime; a naive one is taken as UTC."""
    import pandas as pd

    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"not a timestamp: {value!r} ({exc})") from None
    if pd.isna(stamp):
        raise ConfigError(f"not a timestamp: {value!r}")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _check_columns(columns: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [c for c in columns if c not in FEATURE_COLUMNS]
    if unknown:
        raise ConfigError(
            f"unknown feature column(s) {', '.join(unknown)} (known: {', '.join(FEATURE_COLUMNS)})"
        )
    if not columns:
        raise ConfigError("no feature columns asked for")
    return tuple(columns)


def _select_list(columns: tuple[str, ...]) -> Any:
    from psycopg import sql

    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _frame(rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows (ts, *columns) as a float64 frame indexed by ``ts`` (UTC, ascending)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["ts", *columns])
    index = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True), name="ts")
    values = frame.loc[:, list(columns)].astype("float64")
    values.index = index
    return values.sort_index()


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    index = pd.DatetimeIndex([], tz="UTC", name="ts")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in columns}, index=index)


def _mart_missing(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass(%s) is null", (FEATURES_MART,)).fetchone()
    return bool(row and row[0])


def _mart_error(exc: Exception) -> WarehouseError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return WarehouseError(
        f"reading {FEATURES_MART} failed: {first} (a stale build? rebuild it: {BUILD_HINT})"
    )


# ----------------------------------------------------------------- functions


def load_derivative_features(
    conn: psycopg.Connection,
    exchange: str,
    symbol: str,
    start: Any = None,
    end: Any = None,
    *,
    columns: tuple[str, ...] | list[str] = FEATURE_COLUMNS,
) -> pd.DataFrame:
    """Derivatives and sentiment features of the 1h candles ``start <= ts < end``.

    Returns a frame indexed by the candle's open time ``ts`` (tz-aware UTC, ascending,
    unique), with float64 ``columns`` (default :data:`FEATURE_COLUMNS`, counts included,
    so that NaN can stand for "unknown"). Row ``ts`` uses only data stamped at or before
    ``ts + 1h``, the bar's close: join it onto features of the same bar. ``start`` and
    ``end`` are optional; naive bounds are taken as UTC.

    A symbol with no row in the mart gives an empty frame with the same columns (no
    derivatives data is not an error); a symbol with candles but no derivatives data
    gives its rows with NaN. Raises :class:`MartNotBuiltError` when the mart does not
    exist.
    """
    from psycopg import errors as pg_errors
    from psycopg import sql

    cols = _check_columns(columns)
    lower, upper = _as_utc(start), _as_utc(end)
    if _mart_missing(conn):
        raise MartNotBuiltError(f"{FEATURES_MART} does not exist: {BUILD_HINT}")
    query = sql.SQL(
        """
        select ts, {columns} from marts.fct_features_hourly
        where exchange = %s and symbol = %s
          and (%s::timestamptz is null or ts >= %s::timestamptz)
          and (%s::timestamptz is null or ts < %s::timestamptz)
        order by ts
        """
    ).format(columns=_select_list(cols))
    try:
        rows = conn.execute(query, (exchange, symbol, lower, lower, upper, upper)).fetchall()
    except pg_errors.UndefinedColumn as exc:
        raise _mart_error(exc) from None
    if not rows:
        return _empty(cols)
    return _frame(rows, cols)


# -------------------------------------------------------------------- facade


class DataCollector:
    """Read access to the derivatives and sentiment features of the warehouse.

    Constructed like :class:`brain_lib.brain.BrainLibrary`: it keeps one connection
    (opened on first use, reopened once if the server dropped it) and is safe to share
    between threads.

    Parameters
    ----------
    dsn : str, optional
        Warehouse URL. Default: ``BRAIN_DATABASE_URL`` or the embedded warehouse of
        ``settings`` (started if needed).
    settings : Settings, optional
        Used only when ``dsn`` is not given.
    """

    def __init__(self, dsn: str | None = None, *, settings: Settings | None = None) -> None:
        if dsn is None:
            from brain_lib.config import Settings

            dsn = resolve_dsn(settings or Settings())
        self._db = SharedConnection(dsn)

    # ------------------------------------------------------------- connection

    def _query(self, query: Any, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        import psycopg

        def read(conn: Any) -> list[tuple[Any, ...]]:
            if _mart_missing(conn):
                raise MartNotBuiltError(f"{FEATURES_MART} does not exist: {BUILD_HINT}")
            try:
                return list(conn.execute(query, params).fetchall())
            except psycopg.errors.UndefinedColumn as exc:
                raise _mart_error(exc) from None

        return self._db.run(read)

    def close(self) -> None:
        """Close the connection (it reopens on the next call)."""
        self._db.close()

    def __enter__(self) -> DataCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------- features

    def _exchange_of(self, symbol: str, exchange: str | None) -> str:
        """``exchange``, or the one exchange whose candles of ``symbol`` have features."""
        if exchange is not None:
            return exchange
        rows = self._query(
            "select distinct exchange from marts.fct_features_hourly where symbol = %s order by 1",
            (symbol,),
        )
        exchanges = [r[0] for r in rows]
        if len(exchanges) > 1:
            raise ConfigError(
                f"{symbol} has features on several exchanges ({', '.join(exchanges)}): "
                "pass exchange="
            )
        if not exchanges:
            raise self._unknown(symbol, None)
        return str(exchanges[0])

    def _unknown(self, symbol: str, exchange: str | None) -> UnknownSymbolError:
        rows = self._query(
            "select distinct symbol from marts.fct_features_hourly "
            "where %s::text is null or exchange = %s order by 1 limit 20",
            (exchange, exchange),
        )
        known = [r[0] for r in rows]
        where = f" on {exchange!r}" if exchange else ""
        if known:
            hint = f" (stored: {', '.join(known)})"
        else:
            hint = f" (nothing at all on {exchange!r})" if exchange else " (the mart is empty)"
        return UnknownSymbolError(
            f"unknown symbol {symbol!r}: no hourly features for it{where} in {FEATURES_MART}{hint}"
        )

    def get_features(
        self,
        symbol: str,
        hours: int = 24,
        exchange: str | None = None,
        *,
        columns: tuple[str, ...] | list[str] = FEATURE_COLUMNS,
    ) -> pd.DataFrame:
        """The latest ``hours`` hourly bars of ``symbol`` (the most recent rows of the
        mart, whatever their age: look at the index), indexed by the bar's open ``ts``
        (UTC, ascending), float64 ``columns``.

        ``exchange`` may be left out when only one exchange has the symbol. Raises
        :class:`UnknownSymbolError` when the mart has no row for the symbol,
        :class:`MartNotBuiltError` when the mart does not exist.
        """
        from psycopg import sql

        if isinstance(hours, bool) or not isinstance(hours, int) or hours < 1:
            raise ConfigError(f"hours must be a positive whole number (got {hours!r})")
        cols = _check_columns(columns)
        venue = self._exchange_of(symbol, exchange)
        query = sql.SQL(
            """
            select ts, {columns} from marts.fct_features_hourly
            where exchange = %s and symbol = %s
            order by ts desc
            limit %s
            """
        ).format(columns=_select_list(cols))
        rows = self._query(query, (venue, symbol, hours))
        if not rows:
            raise self._unknown(symbol, venue)
        return _frame(rows, cols)

    def get_liquidation_features(
        self, symbol: str, hours: int = 24, exchange: str | None = None
    ) -> pd.DataFrame:
        """Liquidation features (:data:`LIQUIDATION_COLUMNS`) of the latest ``hours``
        bars: long / short liquidated notional, count and imbalance over the bar's hour
        and the 24 hours to its close. NaN before the symbol's first recorded
        liquidation."""
        return self.get_features(symbol, hours, exchange, columns=LIQUIDATION_COLUMNS)

    def get_funding_features(
        self, symbol: str, hours: int = 24, exchange: str | None = None
    ) -> pd.DataFrame:
        """Funding features (:data:`FUNDING_COLUMNS`) of the latest ``hours`` bars:
        the latest rate, its 24h mean and z-score."""
        return self.get_features(symbol, hours, exchange, columns=FUNDING_COLUMNS)

    def get_open_interest_features(
        self, symbol: str, hours: int = 24, exchange: str | None = None
    ) -> pd.DataFrame:
        """Open-interest features (:data:`OPEN_INTEREST_COLUMNS`) of the latest
        ``hours`` bars: level (amount and value) and its 1h and 24h relative change."""
        return self.get_features(symbol, hours, exchange, columns=OPEN_INTEREST_COLUMNS)

    def get_sentiment_features(
        self, symbol: str, hours: int = 24, exchange: str | None = None
    ) -> pd.DataFrame:
        """Sentiment features (:data:`SENTIMENT_COLUMNS`) of the latest ``hours`` bars:
        mean score and count of the items of the 24 hours to the bar's close."""
        return self.get_features(symbol, hours, exchange, columns=SENTIMENT_COLUMNS)
