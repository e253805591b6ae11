"""brain_lib.sentiment: the source protocol, the file source and the idempotent load.

Parsing and validation need no database; the loads go into ``raw.sentiment`` of a real
PostgreSQL (``warehouse_dsn``). The hourly sentiment feature itself is tested with the
mart in test_derivatives_features.py and in the dbt unit test features_sentiment_hourly.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from brain_lib.errors import DataError
from brain_lib.sentiment import (
    FileSentimentSource,
    SentimentItem,
    SentimentSource,
    load_sentiment,
)
from brain_lib.warehouse import LoadReport

RECORDS: list[dict[str, Any]] = [
    {"timestamp": "2024-06-01T12:00:00Z", "source": "news", "text": "BTC up", "score": 0.5},
    {
        "timestamp": "2024-06-01T14:30:00+02:00",
        "source": "social",
        "text": "ETH, meh",
        "score": -0.25,
        "symbol": "ETH",
    },
    # no offset: UTC; no source: the source's name; empty symbol: market-wide
    {"ts": "2024-06-01T13:00:00", "text": "markets calm", "score": 0, "symbol": ""},
    {"timestamp": "2024-06-01T13:00:00.123456Z", "text": "edge", "score": -1, "source": "news"},
    {"timestamp": "2024-06-01T13:00:00Z", "text": "edge", "score": 1.0, "symbol": "BTC/USDT"},
]

EXPECTED = [
    ("news", datetime(2024, 6, 1, 12, tzinfo=UTC), "BTC up", 0.5, None),
    ("social", datetime(2024, 6, 1, 12, 30, tzinfo=UTC), "ETH, meh", -0.25, "ETH"),
    ("file:items.jsonl", datetime(2024, 6, 1, 13, tzinfo=UTC), "markets calm", 0.0, None),
    ("news", datetime(2024, 6, 1, 13, 0, 0, 123456, tzinfo=UTC), "edge", -1.0, None),
    ("file:items.jsonl", datetime(2024, 6, 1, 13, tzinfo=UTC), "edge", 1.0, "BTC/USDT"),
]


def write_jsonl(path: Path, records: Iterable[Any], blank_lines: bool = False) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    sep = "\n\n" if blank_lines else "\n"
    path.write_text(sep.join(lines) + "\n", encoding="utf-8")
    return path


def as_tuples(items: Iterable[SentimentItem]) -> list[tuple[Any, ...]]:
    return [(i.source, i.ts, i.text, i.score, i.symbol) for i in items]


# ------------------------------------------------------------------- parsing


def test_jsonl_file(tmp_path: Path) -> None:
    source = FileSentimentSource(write_jsonl(tmp_path / "items.jsonl", RECORDS, blank_lines=True))
    assert source.name == "file:items.jsonl"
    assert isinstance(source, SentimentSource)
    items = source.read()
    assert as_tuples(items) == EXPECTED
    assert all(i.ts.utcoffset() == timedelta(0) for i in items)


def test_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "timestamp,source,text,score,symbol\n"
        "2024-06-01T12:00:00Z,news,BTC up,0.5,\n"
        '2024-06-01T14:30:00+02:00,social,"ETH, meh",-0.25,ETH\n'
        '2024-06-01T13:00:00,,"two\nlines",0,\n'
        "\n"
        "2024-06-01T15:00:00Z,news,last,1,BTC/USDT\n",
        encoding="utf-8",
    )
    items = FileSentimentSource(path, name="desk-file").read()
    assert as_tuples(items) == [
        ("news", datetime(2024, 6, 1, 12, tzinfo=UTC), "BTC up", 0.5, None),
        ("social", datetime(2024, 6, 1, 12, 30, tzinfo=UTC), "ETH, meh", -0.25, "ETH"),
        ("desk-file", datetime(2024, 6, 1, 13, tzinfo=UTC), "two\nlines", 0.0, None),
        ("news", datetime(2024, 6, 1, 15, tzinfo=UTC), "last", 1.0, "BTC/USDT"),
    ]


def test_bad_jsonl_lines_are_named_and_nothing_is_returned(tmp_path: Path) -> None:
    good = {"timestamp": "2024-06-01T12:00:00Z", "text": "ok", "score": 0.1}
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            good,  # line 1
            "{not json",  # 2
            {**good, "score": 1.5},  # 3
            '{"timestamp": "2024-06-01T12:00:00Z", "text": "x", "score": NaN}',  # 4
            {**good, "timestamp": "yesterday"},  # 5
            {**good, "text": "  "},  # 6
            {**good, "mood": "happy"},  # 7
            "[1, 2]",  # 8
            {**good, "score": "0.3"},  # 9: a numeric string is fine
            {**good, "score": True},  # 10
            {"text": "no time", "score": 0.0},  # 11
        ],
    )
    with pytest.raises(DataError) as caught:
        FileSentimentSource(path).read()
    message = str(caught.value)
    assert str(path) in message
    assert "9 bad line(s), nothing loaded" in message
    for line, words in [
        (2, "not valid JSON"),
        (3, "[-1, 1]"),
        (4, "finite"),
        (5, "ISO 8601"),
        (6, "text"),
        (7, "unknown field(s) mood"),
        (8, "not a JSON object"),
        (10, "number"),
        (11, "timestamp"),
    ]:
        assert f"line {line}: " in message, line
        segment = message.split(f"line {line}: ", 1)[1].split("; line ", 1)[0]
        assert words in segment, (line, segment)
    assert "line 1:" not in message and "line 9:" not in message


def test_many_bad_lines_are_summarised(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "many.jsonl", ["oops"] * 30)
    with pytest.raises(DataError, match=r"30 bad line\(s\).*and 10 more bad line\(s\)"):
        FileSentimentSource(path).read()


def test_bad_csv(tmp_path: Path) -> None:
    no_score = tmp_path / "no_score.csv"
    no_score.write_text("timestamp,text\n2024-06-01T12:00:00Z,hi\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"no_score.csv: 1 bad line.*header lacks column\(s\) score"
    ):
        FileSentimentSource(no_score).read()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(
        "timestamp,text,score\n2024-06-01T12:00:00Z,hi,0.1,extra\n2024-06-01T13:00:00Z,hi\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as caught:
        FileSentimentSource(ragged).read()
    assert "line 2: more values than header columns" in str(caught.value)
    assert "line 3: fewer values than header columns" in str(caught.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot tell the format"):
        FileSentimentSource(tmp_path / "items.xlsx")
    with pytest.raises(DataError, match="no such file"):
        FileSentimentSource(tmp_path / "missing.jsonl").read()
    latin = tmp_path / "latin.csv"
    latin.write_bytes("timestamp,text,score\n2024-06-01T12:00:00Z,caf\xe9,0.1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        FileSentimentSource(latin).read()
    # an explicit format overrides the suffix
    txt = write_jsonl(tmp_path / "items.txt", RECORDS[:1])
    assert len(FileSentimentSource(txt, format="jsonl").read()) == 1


def test_item_validation_and_key() -> None:
    ts = datetime(2024, 6, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        SentimentItem(ts=datetime(2024, 6, 1), source="s", text="t", score=0.0)
    for score in (1.01, -2.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="score"):
            SentimentItem(ts=ts, source="s", text="t", score=score)
    item = SentimentItem(ts=ts, source="news", text="BTC up", score=0.5)
    expected = hashlib.sha256(b"news\x1f2024-06-01T12:00:00.000000+00:00\x1fBTC up").hexdigest()
    assert item.item_key == expected
    # the same instant in another offset, another score or symbol: the same item
    same = SentimentItem(
        ts=ts.astimezone(timezone(timedelta(hours=2))),
        source="news",
        text="BTC up",
        score=-0.5,
        symbol="BTC",
    )
    assert same.item_key == item.item_key
    assert SentimentItem(ts=ts, source="social", text="BTC up", score=0.5).item_key != expected
    assert SentimentItem(ts=ts, source="news", text="BTC up!", score=0.5).item_key != expected


# ---------------------------------------------------------------------- load


def stored(dsn: str, source: str | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select source, ts, text, score, symbol, item_key from raw.sentiment "
            "where %s::text is null or source = %s order by ts, source, text",
            (source, source),
        ).fetchall()


def test_load_is_idempotent(warehouse_dsn: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "items.jsonl", RECORDS)
    source = FileSentimentSource(path)
    with psycopg.connect(warehouse_dsn) as conn:
        first = load_sentiment(conn, source)
    assert first == LoadReport(added=5, unchanged=0)
    rows = stored(warehouse_dsn)
    assert sorted(r[:5] for r in rows) == sorted(EXPECTED)
    keys = {r[5] for r in rows}
    assert keys == {i.item_key for i in source.read()}

    with psycopg.connect(warehouse_dsn) as conn:
        again = load_sentiment(conn, source)
    assert again == LoadReport(added=0, unchanged=5)

    # one new item, one repeated within the file, the rest known
    more = write_jsonl(
        tmp_path / "more.jsonl",
        [
            *RECORDS,
            {"timestamp": "2024-06-02T00:00:00Z", "text": "new", "score": 0.9},
            RECORDS[0],
        ],
    )
    with psycopg.connect(warehouse_dsn) as conn:
        third = load_sentiment(conn, FileSentimentSource(more, name="file:items.jsonl"))
    assert third == LoadReport(added=1, unchanged=6)
    assert len(stored(warehouse_dsn)) == 6


def test_bad_file_loads_nothing(warehouse_dsn: str, tmp_path: Path) -> None:
    before = len(stored(warehouse_dsn))
    path = write_jsonl(
        tmp_path / "half.jsonl",
        [
            {"timestamp": "2024-07-01T00:00:00Z", "text": "fine", "score": 0.1},
            {"timestamp": "2024-07-01T01:00:00Z", "text": "too happy", "score": 2},
        ],
    )
    with psycopg.connect(warehouse_dsn) as conn, pytest.raises(DataError, match="line 2"):
        load_sentiment(conn, FileSentimentSource(path))
    assert len(stored(warehouse_dsn)) == before


class MemorySource:
    """A source as a network plug-in would be: anything with ``name`` and ``read()``."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    @property
    def name(self) -> str:
        return "memory"

    def read(self) -> Iterable[SentimentItem]:
        yield from self.items


def test_any_source_plugs_in(warehouse_dsn: str) -> None:
    ts = datetime(2024, 8, 1, 9, 15, tzinfo=UTC)
    items = [
        SentimentItem(ts=ts, source="news:test", text="halving soon", score=0.75, symbol="BTC"),
        SentimentItem(ts=ts, source="social:test", text="halving soon", score=0.25),
    ]
    source = MemorySource(items)
    assert isinstance(source, SentimentSource)
    with psycopg.connect(warehouse_dsn) as conn:
        assert load_sentiment(conn, source) == LoadReport(added=2, unchanged=0)
    rows = stored(warehouse_dsn, "news:test") + stored(warehouse_dsn, "social:test")
    assert [(r[0], r[3], r[4]) for r in rows] == [
        ("news:test", 0.75, "BTC"),
        ("social:test", 0.25, None),
    ]
    with psycopg.connect(warehouse_dsn) as conn:
        assert load_sentiment(conn, MemorySource([])) == LoadReport(0, 0)
        with pytest.raises(DataError, match="item 2 is a dict"):
            load_sentiment(conn, MemorySource([items[0], {"text": "x"}]))
