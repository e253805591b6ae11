"""The names that come from outside: symbols, exchanges and timeframes.

Every writer that takes a name from a user or a file checks it here before anything
else, so that what lands in the warehouse, in artifact paths and on a terminal is a
name and nothing more (no path, no markup, no control character):

- **symbol**: ccxt's unified form ``BASE/QUOTE`` or ``BASE/QUOTE:SETTLE`` (a
  perpetual or future; a dated one may carry ``-YYMMDD``), each part letters, digits
  and ``. _ -``, starting with a letter or digit, at most :data:`MAX_SYMBOL_LENGTH`
  characters in all;
- **exchange**: a ccxt id (``binance``, ``binanceusdm``, ``okx``) or a lowercase slug
  of your own (``mine``, ``my-desk``): lowercase letters, digits, ``_`` and ``-``,
  starting with a letter, at most :data:`MAX_EXCHANGE_LENGTH` characters;
- **timeframe**: a bar length Brain can annualise, ``<n><unit>`` with unit ``m``,
  ``h``, ``d`` or ``w`` (case matters: ccxt's ``1M`` is a month), from one minute up to
  :data:`MAX_BAR_DAYS` days.

Importing this module imports nothing heavy (the CLI and the settings use it).
"""

from __future__ import annotations

import re

from brain_lib.errors import ConfigError

__all__ = [
    "MAX_BAR_DAYS",
    "MAX_EXCHANGE_LENGTH",
    "MAX_SYMBOL_LENGTH",
    "bar_minutes",
    "check_exchange",
    "check_symbol",
    "check_timeframe",
    "shown",
]

MAX_SYMBOL_LENGTH = 64
MAX_EXCHANGE_LENGTH = 32
MAX_BAR_DAYS = 28

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_SYMBOL = re.compile(rf"{_PART}/{_PART}(?::{_PART})?")
_EXCHANGE = re.compile(r"[a-z][a-z0-9_-]*")
_TIMEFRAME = re.compile(r"([0-9]+)([mhdw])")
_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}


def shown(value: object, limit: int = 40) -> str:
    """``value`` as it may safely appear in an error line: quoted, escaped (``ascii``:
    a newline or an emoji is written out, not printed) and cut at ``limit``
    characters with its length."""
    if not isinstance(value, str):
        return f"{type(value).__name__} {ascii(value)[:limit]}"
    if len(value) <= limit:
        return ascii(value)
    return f"{ascii(value[:limit])[:-1]}...' ({len(value)} characters)"


def _fits(value: object, pattern: re.Pattern[str], limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit and pattern.fullmatch(value) is not None


def bar_minutes(timeframe: str) -> int:
    """Minutes in one bar of a timeframe that :func:`check_timeframe` accepts."""
    check_timeframe(timeframe)
    return int(timeframe[:-1]) * _MINUTES[timeframe[-1]]


def check_symbol(value: object, where: str = "symbol") -> str:
    """``value`` if it is a ccxt-style symbol, else :class:`ConfigError` naming it."""
    if _fits(value, _SYMBOL, MAX_SYMBOL_LENGTH):
        return str(value)
    raise ConfigError(
        f"invalid {where} {shown(value)}: expected BASE/QUOTE or BASE/QUOTE:SETTLE "
        f"(letters, digits, '.', '_', '-'; at most {MAX_SYMBOL_LENGTH} characters), "
        "e.g. BTC/USDT or BTC/USDT:USDT"
    )


def check_exchange(value: object, where: str = "exchange") -> str:
    """``value`` if it is a ccxt id or a lowercase slug, else :class:`ConfigError`."""
    if _fits(value, _EXCHANGE, MAX_EXCHANGE_LENGTH):
        return str(value)
    raise ConfigError(
        f"invalid {where} {shown(value)}: expected a ccxt exchange id or a lowercase slug "
        f"(a-z, 0-9, '_', '-', starting with a letter; at most {MAX_EXCHANGE_LENGTH} "
        "characters), e.g. binance or my-desk"
    )


def check_timeframe(value: object, where: str = "timeframe") -> str:
    """``value`` if Brain can annualise it (1m … 28d), else :class:`ConfigError`."""
    match = _TIMEFRAME.fullmatch(value) if isinstance(value, str) else None
    if match is not None and not match.group(1).startswith("0"):
        minutes = int(match.group(1)) * _MINUTES[match.group(2)]
        if 1 <= minutes <= MAX_BAR_DAYS * 1440:
            return str(value)
    raise ConfigError(
        f"invalid {where} {shown(value)}: expected <n>m, <n>h, <n>d or <n>w from 1m to "
        f"{MAX_BAR_DAYS}d, e.g. 5m, 1h, 4h, 1d (1M, a month, and seconds are not supported)"
    )
