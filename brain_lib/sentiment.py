"""Sentiment as a plug-in: sources of scored items, loaded into ``raw.sentiment``.

A *source* is anything with a ``name`` and a ``read()`` that returns
:class:`SentimentItem` objects (the :class:`SentimentSource` protocol). Items are
already scored: Brain does not run a language model, it stores what a source gives and
turns it into hourly features in dbt (``marts.fct_features_hourly``:
``sentiment_score_mean_24h``, ``sentiment_count_24h``; docs/derivatives_features.md).

Working source
    :class:`FileSentimentSource` reads a local JSON Lines (``.jsonl``, ``.ndjson``) or
    CSV (``.csv``) file of scored items.

Extension points (not implemented; network access is the source's business)
    * **news**: a headline feed (an RSS/Atom reader, a news API such as CryptoPanic),
      scored by a model of your choice; ``source="news:<feed>"``.
    * **social**: posts from X/Twitter, Reddit or Telegram channels, scored likewise;
      ``source="social:<platform>"``.

    Such a source implements ``name`` and ``read()`` and is loaded with the same
    :func:`load_sentiment`; it should return only items it is sure about (timestamps in
    UTC, scores in [-1, 1]) and raise :class:`~brain_lib.errors.DataError` on bad input
    rather than drop it, as the file source does.

Item identity: ``item_key`` = sha256 (hex) of ``source``, the timestamp and the text
(see :meth:`SentimentItem.item_key`), so loading the same items twice adds nothing.

Bad input is never dropped silently: the file source validates every line first and
raises one :class:`~brain_lib.errors.DataError` that names the file, the line number
and the problem of each bad line (up to 20, then a count), and nothing of that file is
loaded. Fix the lines (or remove them yourself) and load again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from brain_lib.errors import DataError
from brain_lib.warehouse import LoadReport

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "SCORE_RANGE",
    "FileSentimentSource",
    "SentimentItem",
    "SentimentSource",
    "load_sentiment",
]

SCORE_RANGE = (-1.0, 1.0)
"""Scores are finite numbers in [-1, 1]: -1 most negative, 0 neutral, +1 most positive."""

_MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class SentimentItem:
    """One scored item.

    ``ts`` is timezone-aware (UTC), the time the item was published; ``score`` is in
    [-1, 1]; ``symbol`` is a market symbol (``BTC/USDT``) or a base asset (``BTC``) the
    item is about, ``None`` for a market-wide item.
    """

    ts: datetime
    source: str
    text: str
    score: float
    symbol: str | None = None

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None or self.ts.utcoffset() is None:
            raise ValueError(f"SentimentItem.ts must be timezone-aware (got {self.ts!r})")
        if not self.source:
            raise ValueError("SentimentItem.source must not be empty")
        if not isinstance(self.score, int | float) or isinstance(self.score, bool):
            raise ValueError(f"SentimentItem.score must be a number (got {self.score!r})")
        low, high = SCORE_RANGE
        if not (math.isfinite(self.score) and low <= self.score <= high):
            raise ValueError(
                f"SentimentItem.score must lie in [{low:g}, {high:g}] (got {self.score})"
            )

    @property
    def item_key(self) -> str:
        """sha256 (hex) of ``source``, ``ts`` (UTC, ISO 8601 with microseconds) and
        ``text``, joined by the unit separator U+001F."""
        stamp = self.ts.astimezone(UTC).isoformat(timespec="microseconds")
        payload = "\x1f".join((self.source, stamp, self.text))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@runtime_checkable
class SentimentSource(Protocol):
    """A source of scored sentiment items (a file, a news feed, a social platform)."""

    @property
    def name(self) -> str:
        """Short name of the source, used in messages and as the default item source."""
        ...

    def read(self) -> Iterable[SentimentItem]:
        """The items of the source; raise :class:`~brain_lib.errors.DataError` on bad input."""
        ...


# ------------------------------------------------------------------ file source


def _parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 string; without an offset it is taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"timestamp must be an ISO 8601 string (got {value!r})")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp is not ISO 8601: {value!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def _parse_score(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"score must be a number (got {value!r})")
    if isinstance(value, int | float):
        score = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            score = float(value)
        except ValueError:
            raise ValueError(f"score is not a number: {value!r}") from None
    else:
        raise ValueError(f"score is missing (got {value!r})")
    low, high = SCORE_RANGE
    if not math.isfinite(score) or not low <= score <= high:
        raise ValueError(f"score must be a finite number in [{low:g}, {high:g}] (got {value!r})")
    return score


def _item_from_record(record: Mapping[str, Any], default_source: str) -> SentimentItem:
    """Validate one record (a JSON object or a CSV row) into an item."""
    unknown = set(record) - {"timestamp", "ts", "source", "text", "score", "symbol"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    if "timestamp" in record and "ts" in record:
        raise ValueError("both timestamp and ts given")
    ts = _parse_timestamp(record.get("timestamp", record.get("ts")))
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string (got {text!r})")
    score = _parse_score(record.get("score"))
    source = record.get("source")
    if source is None or (isinstance(source, str) and not source.strip()):
        source = default_source
    if not isinstance(source, str):
        raise ValueError(f"source must be a string (got {source!r})")
    symbol = record.get("symbol")
    if symbol is not None and not isinstance(symbol, str):
        raise ValueError(f"symbol must be a string or null (got {symbol!r})")
    symbol = symbol.strip() if symbol else None
    return SentimentItem(
        ts=ts, source=source.strip(), text=text, score=score, symbol=symbol or None
    )


class FileSentimentSource:
    """Scored items from a local JSON Lines or CSV file.

    Fields of each record (a JSON object per line, or a CSV row under a header line):

    ``timestamp`` (or ``ts``)
        ISO 8601 string, e.g. ``2024-06-01T12:00:00Z``; without an offset it is UTC.
    ``text``
        The item's text, non-empty.
    ``score``
        A finite number in [-1, 1].
    ``source`` (optional)
        Where the item came from; empty or missing: the source's ``name``.
    ``symbol`` (optional)
        ``BTC/USDT``, ``BTC`` ...; empty or missing: market-wide.

    Blank lines are skipped. Any other bad line (not JSON, not an object, a field
    missing or out of range, an unknown field) makes :meth:`read` raise one
    :class:`~brain_lib.errors.DataError` naming the file, each bad line's number and
    its problem; no item of the file is returned, so nothing is half-loaded.

    Parameters
    ----------
    path : str or Path
        The file; ``.jsonl`` / ``.ndjson`` / ``.json`` read as JSON Lines, ``.csv`` as CSV.
    name : str, optional
        Default ``file:<file name>``.
    format : {"jsonl", "csv"}, optional
        Overrides the guess from the suffix.
    """

    def __init__(self, path: str | Path, *, name: str | None = None, format: str | None = None):
        self.path = Path(path)
        self._name = name or f"file:{self.path.name}"
        fmt = format or {
            ".jsonl": "jsonl",
            ".ndjson": "jsonl",
            ".json": "jsonl",
            ".csv": "csv",
        }.get(self.path.suffix.lower())
        if fmt not in ("jsonl", "csv"):
            raise DataError(
                f"{self.path}: cannot tell the format from the suffix {self.path.suffix!r} "
                "(use .jsonl or .csv, or pass format='jsonl' / 'csv')"
            )
        self.format = fmt

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"FileSentimentSource({str(self.path)!r}, format={self.format!r})"

    def _records(self) -> Iterable[tuple[int, Mapping[str, Any] | str]]:
        """(line number, record or an error message) for every non-blank record."""
        with self.path.open(encoding="utf-8", newline="") as handle:
            if self.format == "jsonl":
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield number, f"not valid JSON ({exc.msg})"
                        continue
                    yield number, value if isinstance(value, dict) else "not a JSON object"
                return
            reader = csv.DictReader(handle, strict=True)
            if reader.fieldnames is None:
                return
            header = {name.strip() for name in reader.fieldnames if name}
            missing = [
                name
                for name, present in (
                    ("timestamp", bool(header & {"timestamp", "ts"})),
                    ("text", "text" in header),
                    ("score", "score" in header),
                )
                if not present
            ]
            if missing:
                yield 1, f"the header lacks column(s) {', '.join(missing)}"
                return
            try:
                for row in reader:
                    if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                        continue
                    # the line the row ends on (a quoted value may span lines)
                    number = reader.line_num
                    if None in row:
                        yield number, "more values than header columns"
                    elif any(v is None for v in row.values()):
                        yield number, "fewer values than header columns"
                    else:
                        yield number, {k.strip(): v for k, v in row.items() if k is not None}
            except csv.Error as exc:
                yield reader.line_num, f"malformed CSV ({exc})"

    def read(self) -> list[SentimentItem]:
        """Every item of the file, validated; raise :class:`DataError` on any bad line."""
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        items: list[SentimentItem] = []
        errors: list[str] = []
        try:
            for number, record in self._records():
                if isinstance(record, str):
                    errors.append(f"line {number}: {record}")
                    continue
                try:
                    items.append(_item_from_record(record, self._name))
                except ValueError as exc:
                    errors.append(f"line {number}: {exc}")
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: not UTF-8 text ({exc.reason})") from None
        if errors:
            listed = "; ".join(errors[:_MAX_LISTED_ERRORS])
            more = len(errors) - _MAX_LISTED_ERRORS
            tail = f"; and {more} more bad line(s)" if more > 0 else ""
            raise DataError(
                f"{self.path}: {len(errors)} bad line(s), nothing loaded: {listed}{tail}"
            )
        return items


# ------------------------------------------------------------------------ load


def load_sentiment(conn: psycopg.Connection, source: SentimentSource) -> LoadReport:
    """Write the items of ``source`` into ``raw.sentiment``, idempotently.

    All items are read (and validated) first, then copied into a temporary table and
    inserted with ``ON CONFLICT (source, item_key) DO NOTHING``: an item already stored
    (or repeated in the batch) counts as ``unchanged``. Runs inside the caller's
    transaction (commit it, or use ``brain_lib.warehouse.connect``).
    """
    items = list(source.read())
    for position, item in enumerate(items, start=1):
        if not isinstance(item, SentimentItem):
            raise DataError(
                f"sentiment source {source.name}: item {position} is a "
                f"{type(item).__name__}, not a SentimentItem"
            )
    if not items:
        return LoadReport(0, 0)
    with conn.cursor() as cur:
        cur.execute(
            "create temp table if not exists _sentiment_stage "
            "(source text, item_key text, ts timestamptz, symbol text, text text, "
            "score double precision) on commit drop"
        )
        cur.execute("truncate _sentiment_stage")
        with cur.copy(
            "copy _sentiment_stage (source, item_key, ts, symbol, text, score) from stdin"
        ) as copy:
            for item in items:
                copy.write_row(
                    (item.source, item.item_key, item.ts, item.symbol, item.text, item.score)
                )
        cur.execute(
            """
            insert into raw.sentiment (source, item_key, ts, symbol, text, score)
            select source, item_key, ts, symbol, text, score from _sentiment_stage
            on conflict (source, item_key) do nothing
            """
        )
        added = cur.rowcount
    return LoadReport(added=added, unchanged=len(items) - added)
