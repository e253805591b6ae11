"""The collection's types: streams, reports, the retry policy, and the summary of a
run (see :mod:`brain_lib.market.collect`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from brain_lib.errors import ConfigError

DATASETS = ("ohlcv", "funding", "oi", "liquidations")
DEFAULT_BACKFILL = timedelta(days=365)
HOUR_MS = 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    return _dt(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timeframe_ms(timeframe: str) -> int:
    """ccxt-style timeframe in ms (``1m``..``1d``; ``1w``, ``1M`` too)."""
    try:
        amount, unit = int(timeframe[:-1]), timeframe[-1]
    except ValueError:
        raise ConfigError(f"invalid timeframe {timeframe!r} (use e.g. 5m, 1h, 1d)") from None
    scale = {"m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS, "w": 7 * 24 * HOUR_MS}
    if unit == "M":
        return amount * 30 * 24 * HOUR_MS
    if unit not in scale or amount < 1:
        raise ConfigError(f"invalid timeframe {timeframe!r} (use e.g. 5m, 1h, 1d)")
    return amount * scale[unit]


# ------------------------------------------------------------------------ types


@dataclass(frozen=True)
class StreamSpec:
    """One stream: ``timeframe`` is the candle timeframe (ohlcv) or the sampling period
    (oi); it is ignored for funding and liquidations."""

    exchange: str
    symbol: str
    dataset: str
    timeframe: str = "1h"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r} (known: {', '.join(DATASETS)})")

    @property
    def series(self) -> str:
        return self.timeframe if self.dataset in ("ohlcv", "oi") else ""

    @property
    def label(self) -> str:
        parts = [self.exchange, self.symbol, self.dataset] + ([self.series] if self.series else [])
        return " ".join(parts)


@dataclass(frozen=True)
class Gap:
    """A hole that remained: nothing between ``last_before`` and ``first_after``."""

    last_before: datetime
    first_after: datetime
    missing_rows: int | None


@dataclass
class StreamTimings:
    """Where a stream's time went (seconds).

    ``ccxt_s``: inside ccxt's unified calls, of which ``http_s`` waiting on the
    network/server, ``json_s`` decoding JSON, ``throttle_s`` in the rate limiter and
    ``parse_s`` the rest (request building, parsing into unified structures);
    ``validate_s``: Brain's checks of the parsed rows; ``write_s``: the warehouse
    transactions; ``backoff_s``: sleeping between retries.
    """

    ccxt_s: float = 0.0
    http_s: float = 0.0
    json_s: float = 0.0
    throttle_s: float = 0.0
    parse_s: float = 0.0
    validate_s: float = 0.0
    write_s: float = 0.0
    backoff_s: float = 0.0

    @property
    def ccxt_parsing_s(self) -> float:
        """JSON decoding plus ccxt's parsing: the "ccxt parsing" of the benchmark."""
        return self.json_s + self.parse_s


@dataclass
class StreamReport:
    """What one run of one stream did.

    ``status``: ``ok``, ``unsupported`` or ``failed`` (``message`` says why);
    ``new_rows`` / ``unchanged_rows``: rows added / already stored; ``first_ts`` /
    ``last_ts``: the range fetched in this run; ``stored_last_ts``: the newest stored
    stamp after it; ``lag_seconds``: exchange clock minus the end of the newest stored
    row (a candle ends when it closes); ``gaps``: holes that remained.
    """

    exchange: str
    symbol: str
    dataset: str
    series: str
    status: str = "ok"
    message: str = ""
    new_rows: int = 0
    unchanged_rows: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    stored_last_ts: datetime | None = None
    lag_seconds: float | None = None
    gaps: list[Gap] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    run_id: str | None = None
    timings: StreamTimings = field(default_factory=StreamTimings)

    @property
    def label(self) -> str:
        parts = [self.exchange, self.symbol, self.dataset] + ([self.series] if self.series else [])
        return " ".join(parts)

    @property
    def elapsed_s(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def as_row(self) -> dict[str, Any]:
        """A flat, JSON-friendly summary (for artifacts and logs)."""
        out = asdict(self)
        out.pop("timings")
        out["gaps"] = len(self.gaps)
        for key in ("first_ts", "last_ts", "stored_last_ts", "started_at", "finished_at"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        return out


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``attempts`` tries per request, waits of
    ``base_delay_s * factor**n`` capped at ``max_delay_s`` (a ``Retry-After`` header
    may lengthen a wait up to the cap)."""

    attempts: int = 5
    base_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, hint_s: float | None = None) -> float:
        wait = self.base_delay_s * self.factor ** (attempt - 1)
        if hint_s is not None:
            wait = max(wait, hint_s)
        return min(wait, self.max_delay_s)


def stream_specs(
    exchanges: Iterable[str],
    symbols: Iterable[str] | Mapping[str, Iterable[str]],
    datasets: Iterable[str] = DATASETS,
    *,
    timeframe: str = "1h",
    oi_period: str = "1h",
) -> list[StreamSpec]:
    """Every exchange x symbol x dataset. ``symbols`` is one list for all exchanges or
    a list per exchange. Derivatives datasets are left out for spot symbols (no ``:``
    in the unified symbol), which have none."""
    datasets = list(datasets)
    for dataset in datasets:
        if dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    out = []
    for exchange in exchanges:
        chosen = symbols.get(exchange, []) if isinstance(symbols, Mapping) else symbols
        for symbol in chosen:
            for dataset in datasets:
                if dataset != "ohlcv" and ":" not in symbol:
                    continue
                series = timeframe if dataset == "ohlcv" else oi_period
                out.append(StreamSpec(exchange, symbol, dataset, series))
    return out


def _fmt_ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _fmt_lag(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def summary_markdown(reports: Sequence[StreamReport], title: str = "collect-market-data") -> str:
    """A markdown table of the streams: status, new / unchanged rows, lag, gaps."""
    counts = {s: sum(1 for r in reports if r.status == s) for s in ("ok", "unsupported", "failed")}
    new = sum(r.new_rows for r in reports)
    lines = [
        f"# {title}",
        "",
        f"{len(reports)} streams: {counts['ok']} ok, {counts['unsupported']} unsupported, "
        f"{counts['failed']} failed; {new} new rows.",
        "",
        "| exchange | symbol | dataset | status | new rows | unchanged | last stored | lag "
        "| gaps | requests | retries | note |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        dataset = f"{r.dataset} {r.series}".strip()
        note = r.message.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r.exchange} | {r.symbol} | {dataset} | {r.status} | {r.new_rows} "
            f"| {r.unchanged_rows} | {_fmt_ts(r.stored_last_ts)} | {_fmt_lag(r.lag_seconds)} "
            f"| {len(r.gaps)} | {r.requests} | {r.retries} | {note} |"
        )
    gaps = [(r, g) for r in reports for g in r.gaps]
    if gaps:
        lines += ["", "## Gaps that remain", "", "| stream | after | before | missing |"]
        lines.append("|---|---|---|---:|")
        for r, g in gaps:
            missing = "" if g.missing_rows is None else str(g.missing_rows)
            lines.append(
                f"| {r.label} | {_fmt_ts(g.last_before)} | {_fmt_ts(g.first_after)} | {missing} |"
            )
    return "\n".join(lines) + "\n"
