"""The replay exchange's data: its configuration, the recorded bodies and the
deterministic synthetic market it serves (see :mod:`brain_lib.market.replay`)."""

from __future__ import annotations

import json
import math
import threading
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from brain_lib.market._synthetic import generate_candles

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
FUNDING_INTERVAL_MS = 8 * HOUR_MS

_OI_BASE = {"BTC": 80_000.0, "ETH": 1_000_000.0, "SOL": 10_000_000.0, "BNB": 2_000_000.0}
_OKX_CONTRACT_VALUE = {"BTC": 0.01, "ETH": 0.1}
_START_PRICES = {"BTC": 30_000.0, "ETH": 2_000.0, "SOL": 100.0, "BNB": 300.0, "XRP": 0.5}


# ------------------------------------------------------------------ recorded bodies


def recorded_files() -> dict[str, list[str]]:
    """Names of the recorded bodies per exchange (file names without ``.json``)."""
    root = resources.files("brain_lib.market") / "recorded"
    out: dict[str, list[str]] = {}
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if folder.is_dir() and not folder.name.startswith(("_", ".")):
            names = [p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")]
            out[folder.name] = sorted(names)
    return out


@cache
def _recorded_text(exchange: str, name: str) -> str:
    path = resources.files("brain_lib.market") / "recorded" / exchange / f"{name}.json"
    return path.read_text(encoding="utf-8")


def recorded_body(exchange: str, name: str) -> Any:
    """A recorded body, parsed (a fresh copy on every call)."""
    return json.loads(_recorded_text(exchange, name))


def recorded_name(path: str) -> str:
    """File name of the recorded body of a REST path: ``/fapi/v1/klines`` -> ``fapi_v1_klines``."""
    return path.strip("/").replace("/", "_")


# ------------------------------------------------------------------ config and faults


@dataclass(frozen=True)
class Liquidation:
    """One forced liquidation of the synthetic market: ``side`` is the side of the
    liquidated position (long or short), ``quantity`` in base units, ``ref`` its place
    in the hour (``<hour index>-<n>``), unique per base."""

    ts: int
    side: str
    price: float
    quantity: float
    ref: str


@dataclass(frozen=True)
class Hole:
    """A window the exchange itself has no data for (an outage): rows stamped in
    ``[start_ms, end_ms)`` are never served. ``dataset`` is ``ohlcv``, ``funding`` or
    ``oi``; ``base`` limits it to one base asset (None: all)."""

    dataset: str
    start_ms: int
    end_ms: int
    base: str | None = None


@dataclass(frozen=True)
class ReplayConfig:
    """What the replay exchange serves.

    ``now``: the replay's clock as epoch ms or an ISO timestamp (None: the wall clock);
    ``data_start``: the first bar of every series, a midnight UTC (synthetic data is
    prefix-stable from there); ``bases``: the listed base assets, quoted in ``quote``
    (spot and perpetuals); ``seed``, ``drift``, ``autocorr``, ``trend``,
    ``trend_half_life``: the synthetic market's settings
    (:class:`~brain_lib.market.SyntheticMarket`), e.g. the demo's planted trend.
    ``skew_s``: the clock runs this many seconds ahead of ``now`` (negative: behind).
    ``liquidation_rate``: mean forced liquidations per symbol and hour on the websocket
    streams (more in hours that move hard, :meth:`SyntheticData.liquidations`);
    ``ws_start`` and ``ws_speed``: the websocket streams' clock starts at ``ws_start``
    (epoch ms or ISO; None: the replay's clock when the server starts) and runs
    ``ws_speed`` times the wall clock, never past the replay's clock (1: live; the demo
    replays weeks of liquidations in seconds).
    """

    seed: int = 7
    data_start: str = "2025-01-01T00:00:00Z"
    now: int | str | None = None
    bases: tuple[str, ...] = ("BTC", "ETH", "SOL")
    quote: str = "USDT"
    source: str = "synthetic"
    holes: tuple[Hole, ...] = ()
    drift: float = 0.0
    autocorr: float = 0.0
    trend: float = 0.0
    trend_half_life: float = 48.0
    skew_s: float = 0.0
    liquidation_rate: float = 20.0
    ws_start: int | str | None = None
    ws_speed: float = 1.0

    def __post_init__(self) -> None:
        if not (self.liquidation_rate >= 0 and math.isfinite(self.liquidation_rate)):
            raise ValueError(f"liquidation_rate must be >= 0 (got {self.liquidation_rate!r})")
        if not (self.ws_speed > 0 and math.isfinite(self.ws_speed)):
            raise ValueError(f"ws_speed must be > 0 (got {self.ws_speed!r})")
        if self.source not in ("synthetic", "recorded"):
            raise ValueError(f"source must be 'synthetic' or 'recorded' (got {self.source!r})")
        if _to_ms(self.data_start) % DAY_MS:
            raise ValueError(
                f"data_start must be a midnight UTC, so that every timeframe's bars sit on "
                f"the exchanges' grid (got {self.data_start!r})"
            )


def timeframe_ms(timeframe: str) -> int:
    """Length of a ccxt-style timeframe (``5m``, ``1h``, ``1d``) in ms."""
    unit, amount = timeframe[-1], int(timeframe[:-1])
    scale = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
    if unit not in scale or amount < 1:
        raise ValueError(f"unsupported timeframe {timeframe!r}")
    return amount * scale[unit]


def _to_ms(value: int | str | pd.Timestamp) -> int:
    if isinstance(value, int):
        return value
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _unit_noise(*parts: object) -> float:
    """A deterministic standard-normal draw from the parts (no RNG state)."""
    h = zlib.crc32("|".join(map(str, parts)).encode())
    return NormalDist().inv_cdf((h + 0.5) / 2**32)


class SyntheticData:
    """Deterministic market data of the replay; every value depends only on the config.

    Candles of each (base, timeframe) are one synthetic path from ``data_start``; a
    value is the same whichever window asks for it. Funding prints every 8 hours
    (00, 08, 16 UTC) with a rate that follows the last 8 hours' return; open interest
    is a slow weekly wave with noise, valued at the hour's open.
    """

    def __init__(self, config: ReplayConfig) -> None:
        self.config = config
        self.start_ms = _to_ms(config.data_start)
        self._lock = threading.Lock()
        self._paths: dict[tuple[str, str], np.ndarray] = {}
        self._liquidation_cache: dict[tuple[str, int], tuple[Liquidation, ...]] = {}

    # candles -----------------------------------------------------------------
    def _path(self, base: str, timeframe: str, bars: int) -> np.ndarray:
        """The first ``bars`` closed bars: rows of (ts, open, high, low, close, volume)."""
        key = (base, timeframe)
        with self._lock:
            have = self._paths.get(key)
            if have is None or len(have) < bars:
                size = max(bars, 2 * len(have) if have is not None else 1024)
                frame = generate_candles(
                    f"{base}/{self.config.quote}",
                    size,
                    seed=self.config.seed,
                    start=self.config.data_start,
                    timeframe=timeframe,
                    drift=self.config.drift,
                    autocorr=self.config.autocorr,
                    trend=self.config.trend,
                    trend_half_life=self.config.trend_half_life,
                )
                ts = frame["ts"].astype("int64").to_numpy() // 1_000_000
                cols = [frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]
                have = np.column_stack([ts.astype("float64"), *cols])
                self._paths[key] = have
            return have[:bars]

    def hole_span(self) -> int:
        """Total length of the holes (ms): how much further back a "newest N" page must
        look to still find N rows."""
        return sum(h.end_ms - h.start_ms for h in self.config.holes)

    def _in_hole(self, dataset: str, base: str, ts: int) -> bool:
        return any(
            h.dataset == dataset
            and (h.base is None or h.base == base)
            and h.start_ms <= ts < h.end_ms
            for h in self.config.holes
        )

    def candles(
        self, base: str, timeframe: str, lo: int, hi: int, now: int
    ) -> list[tuple[int, float, float, float, float, float, bool]]:
        """Bars opened in ``[lo, hi]`` (ms, inclusive) up to ``now``, oldest first, as
        (ts, open, high, low, close, volume, closed). The bar in progress at ``now`` is
        included with partial values (closed=False), as exchanges do."""
        step = timeframe_ms(timeframe)
        first = max(0, -(-(lo - self.start_ms) // step))
        last = min((hi - self.start_ms) // step, (now - self.start_ms) // step)
        if last < first:
            return []
        path = self._path(base, timeframe, int(last) + 1)
        out = []
        for i in range(int(first), int(last) + 1):
            ts = self.start_ms + i * step
            if self._in_hole("ohlcv", base, ts):
                continue
            _, o, h, lw, c, v = (float(x) for x in path[i])
            closed = ts + step <= now
            if not closed:  # the forming bar: part of the move and volume so far
                frac = max((now - ts) / step, 1e-3)
                c = o + (c - o) * frac
                h = max(o, c) + (h - max(o, path[i][4])) * frac
                lw = min(o, c) - (min(o, path[i][4]) - lw) * frac
                v *= frac
            out.append((ts, o, h, lw, c, v, closed))
        return out

    def hourly_close(self, base: str, ts: int) -> float:
        """Close of the last hourly bar that closed at or before ``ts``."""
        i = (ts - self.start_ms) // HOUR_MS - 1
        if i < 0:
            return _START_PRICES.get(base, 100.0)
        return float(self._path(base, "1h", int(i) + 1)[int(i), 4])

    # liquidations ------------------------------------------------------------
    def liquidations(self, base: str, lo: int, hi: int) -> list[Liquidation]:
        """The forced liquidations stamped in ``(lo, hi]`` (ms), oldest first.

        Deterministic per hour: a Poisson count with mean ``liquidation_rate`` x (0.2 +
        |the hour's log return| / 0.7 %), at most 10x the rate; a falling hour
        liquidates mostly longs, a rising one mostly shorts; prices inside the hour's
        range along its path; notionals log-normal around 5,000 quote units.
        """
        if hi <= lo or self.config.liquidation_rate <= 0:
            return []
        first = max(0, (lo - self.start_ms) // HOUR_MS)
        last = (hi - self.start_ms) // HOUR_MS
        out: list[Liquidation] = []
        for i in range(int(first), int(last) + 1):
            out.extend(e for e in self._liquidation_hour(base, i) if lo < e.ts <= hi)
        return out

    def _liquidation_hour(self, base: str, i: int) -> tuple[Liquidation, ...]:
        key = (base, i)
        with self._lock:
            found = self._liquidation_cache.get(key)
        if found is not None:
            return found
        o, h, lw, c = (float(x) for x in self._path(base, "1h", i + 1)[i, 1:5])
        move = math.log(c / o) if o > 0 and c > 0 else 0.0
        rate = self.config.liquidation_rate
        lam = min(rate * (0.2 + abs(move) / 0.007), 10 * rate)
        rng = np.random.default_rng([self.config.seed, zlib.crc32(base.encode()), i])
        n = int(rng.poisson(lam))
        offsets = np.sort(rng.integers(1, HOUR_MS, size=n))
        p_long = 0.5 - 0.4 * math.tanh(move / 0.007)
        decimals = _price_decimals(base)
        events = []
        for k, offset in enumerate(offsets):
            frac = float(offset) / HOUR_MS
            along = o + (c - o) * frac
            price = min(max(along * (1 + 0.002 * float(rng.standard_normal())), lw), h)
            notional = 5_000.0 * math.exp(1.2 * float(rng.standard_normal()))
            qty = max(round(notional / price, 3), 0.001)
            side = "long" if float(rng.random()) < p_long else "short"
            ts = self.start_ms + i * HOUR_MS + int(offset)
            events.append(Liquidation(ts, side, round(price, decimals), qty, f"{i}-{k}"))
        result = tuple(events)
        with self._lock:
            if len(self._liquidation_cache) > 200_000:
                self._liquidation_cache.clear()
            self._liquidation_cache[key] = result
        return result

    # funding -----------------------------------------------------------------
    def funding(self, base: str, lo: int, hi: int, now: int) -> list[tuple[int, float, float]]:
        """Funding prints stamped in ``[lo, hi]`` up to ``now``: (ts, rate, mark price)."""
        step = FUNDING_INTERVAL_MS
        first = max(0, -(-(lo - self.start_ms) // step))
        last = (min(hi, now) - self.start_ms) // step
        out = []
        for i in range(int(first), int(last) + 1):
            ts = self.start_ms + i * step
            if self._in_hole("funding", base, ts):
                continue
            mark = self.hourly_close(base, ts)
            before = self.hourly_close(base, ts - step)
            rate = 0.0001 + 0.05 * math.log(mark / before) + 0.00002 * _unit_noise(base, ts)
            out.append((ts, round(min(max(rate, -0.0075), 0.0075), 8), mark))
        return out

    # open interest -----------------------------------------------------------
    def open_interest(
        self, base: str, period_ms: int, lo: int, hi: int, now: int
    ) -> list[tuple[int, float, float]]:
        """Samples stamped in ``[lo, hi]`` up to ``now``: (ts, amount in base, value)."""
        first = max(0, -(-(lo - self.start_ms) // period_ms))
        last = (min(hi, now) - self.start_ms) // period_ms
        level = _OI_BASE.get(base, 5_000_000.0)
        out = []
        for i in range(int(first), int(last) + 1):
            ts = self.start_ms + i * period_ms
            if self._in_hole("oi", base, ts):
                continue
            wave = 1.0 + 0.2 * math.sin(2 * math.pi * ts / (7 * DAY_MS))
            amount = level * wave * math.exp(0.02 * _unit_noise("oi", base, ts))
            hour = ts - (ts - self.start_ms) % HOUR_MS
            price = self.hourly_close(base, hour)  # the hour's open (the last close)
            out.append((ts, amount, amount * price))
        return out


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _price_decimals(base: str) -> int:
    return 2 if _START_PRICES.get(base, 100.0) >= 10 else 5
