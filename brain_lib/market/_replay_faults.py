"""The replay exchange's faults: what a rule matches, and the broken answers it serves
instead of the normal one (see :mod:`brain_lib.market.replay`)."""

from __future__ import annotations

import copy
import itertools
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brain_lib.market._replay_dialects import _Dialect

FAULT_KINDS = (
    "rate_limit",  # the exchange's real rate-limit answer (status and body)
    "http_error",  # a JSON-less error status (default 500) with an empty body
    "html",  # an HTML error page (default 502, e.g. a proxy's Bad Gateway)
    "missing_field",  # one row loses a field (a dict key, or the tail of a list row)
    "shuffle",  # the rows of the page in reverse order (timestamps out of order)
    "duplicate",  # the first row repeated with a different value
    "drop_rows",  # the middle third of the page's rows left out
    "delay",  # answer after `seconds`
    "drop_connection",  # headers and half of the body, then the connection closes
    "reset",  # the connection closes without an answer
    "garbage",  # status 200, a JSON content type, `size` (512) random bytes
    "plain_text",  # status 200, a JSON content type, a line of plain text
    "truncated",  # status 200, the body cut in the middle (Content-Length says so)
    "huge_page",  # `factor` (50) x the rows asked for, most outside the asked window
    "huge_body",  # the real body padded with whitespace to `size` (16 MiB) bytes
)

HUGE_BODY_BYTES = 16 * 1024 * 1024
_STAMP_KEYS = ("fundingTime", "fundingRateTimestamp", "timestamp")


@dataclass
class FaultRule:
    """Serve ``kind`` instead of the normal answer to matching requests.

    A request matches when ``path`` is a substring of its path ("" matches every path)
    and, when set, ``exchange`` is the exchange the path belongs to. The first ``after``
    matching requests are answered normally, the next ``times`` get the fault (None:
    every one from then on).
    """

    kind: str
    path: str = ""
    exchange: str | None = None
    times: int | None = 1
    after: int = 0
    status: int | None = None
    field: str | None = None
    seconds: float = 0.0
    size: int | None = None
    factor: int = 50
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(FAULT_KINDS)})")

    def matches(self, exchange: str | None, path: str) -> bool:
        return self.path in path and (self.exchange is None or self.exchange == exchange)

    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class FaultPlan:
    """An ordered, thread-safe list of :class:`FaultRule`; the first live match fires."""

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = list(rules or [])

    def add(self, kind: str, path: str = "", **options: Any) -> FaultRule:
        """Append a rule; returns it (its ``fired`` counter tells how often it fired)."""
        rule = FaultRule(kind=kind, path=path, **options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, exchange: str | None, path: str) -> FaultRule | None:
        """The rule that fires for this request, counting it, or None."""
        with self._lock:
            for rule in self.rules:
                if rule.exhausted() or not rule.matches(exchange, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    continue
                rule.fired += 1
                return rule
        return None

    @classmethod
    def from_json(cls, items: list[dict[str, Any]]) -> FaultPlan:
        keys = {
            "kind", "path", "exchange", "times", "after", "status", "field", "seconds",
            "size", "factor",
        }  # fmt: skip
        return cls([FaultRule(**{k: v for k, v in item.items() if k in keys}) for item in items])


@dataclass(frozen=True)
class RequestRecord:
    """One request the replay answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    fault: str | None


_HTML_PAGES = {
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n",
    503: "<!DOCTYPE html>\n<html><head><title>System maintenance</title></head><body>"
    "<h1>We'll be back soon</h1><p>The exchange is undergoing scheduled maintenance. "
    "Please try again later.</p></body></html>\n",
}


def _mutate(rule: FaultRule, dialect: _Dialect, body: Any) -> Any:
    """Apply a row fault to a copy of the body."""
    body = copy.deepcopy(body)
    rows = dialect.rows(body)
    if not rows:
        return body
    if rule.kind == "missing_field":
        first = rows[0]
        if isinstance(first, dict):
            key = rule.field or next(
                (k for k in ("fundingRate", "realizedRate", "sumOpenInterest", "openInterest")
                 if k in first), next(iter(first)),
            )  # fmt: skip
            if dialect.name == "okx" and key == "fundingRate":
                key = "realizedRate"  # what ccxt reads
            first.pop(key, None)
        elif isinstance(first, list):
            del first[4 if len(first) > 4 else len(first) - 1 :]  # close, volume, ... gone
    elif rule.kind == "shuffle":
        rows.reverse()
        if len(rows) > 2:
            rows[0], rows[1] = rows[1], rows[0]
    elif rule.kind == "duplicate":
        twin = copy.deepcopy(rows[0])
        if isinstance(twin, list) and len(twin) > 4:
            twin[4] = str(float(twin[4]) * 1.01)
        elif isinstance(twin, dict):
            for key in ("fundingRate", "realizedRate", "sumOpenInterest", "openInterest"):
                if key in twin:
                    twin[key] = str(float(twin[key]) * 1.01 + 1e-6)
        rows.insert(1, twin)
    elif rule.kind == "drop_rows" and len(rows) >= 3:
        third = len(rows) // 3
        del rows[third : 2 * third]
    return body


def broken_payload(rule: FaultRule, payload: bytes) -> bytes | None:
    """The body that replaces the real ``payload`` for the body faults (None: not one)."""
    if rule.kind == "garbage":
        return random.Random(rule.fired).randbytes(rule.size or 512)
    if rule.kind == "plain_text":
        return b"upstream connect error or disconnect/reset before headers. reset reason: overflow"
    if rule.kind == "truncated":
        return payload[: max(1, len(payload) // 2)]
    return None


def _stamp_key(row: Any) -> Any:
    """Where a row keeps its stamp: index 0 of a list row, or the first stamp key."""
    if isinstance(row, list):
        return 0
    return next((k for k in _STAMP_KEYS if k in row), None)


def huge_page(rule: FaultRule, dialect: _Dialect, body: Any, query: dict[str, str]) -> Any:
    """The page with ``rule.factor`` x the rows asked for (``limit``, else the page's
    length): the real rows, and copies of the oldest and newest one stamped on the
    same grid before and after them, i.e. outside the window asked for (those after
    it lie past the exchange's clock)."""
    rows = dialect.rows(body)
    key = _stamp_key(rows[0]) if rows else None
    if not rows or key is None:
        return body
    stamps = [int(row[key]) for row in rows]
    gaps = [abs(b - a) for a, b in itertools.pairwise(stamps) if b != a]
    step = min(gaps, default=3_600_000)
    try:
        asked = int(query.get("limit") or len(rows))
    except ValueError:
        asked = len(rows)
    extra = max(rule.factor * asked - len(rows), 0)
    oldest, newest = rows[stamps.index(min(stamps))], rows[stamps.index(max(stamps))]

    def copy_at(template: Any, ts: int) -> Any:
        row = copy.copy(template)
        row[key] = ts if isinstance(template[key], int) else str(ts)
        if isinstance(row, list) and len(row) > 6 and isinstance(row[6], int):
            row[6] = ts + step - 1  # binance's close time
        return row

    before = [copy_at(oldest, min(stamps) - k * step) for k in range(extra // 2, 0, -1)]
    after = [copy_at(newest, max(stamps) + k * step) for k in range(1, extra - extra // 2 + 1)]
    ascending = stamps[0] <= stamps[-1]
    rows[:] = before + rows + after if ascending else after[::-1] + rows + before[::-1]
    return body
