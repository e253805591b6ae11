"""Exceptions that name what went wrong and where.

Every error a user can cause derives from :class:`BrainError`; the CLI prints its
message on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "BrainError",
    "ConfigError",
    "DataError",
    "UnknownSymbolError",
    "WarehouseError",
    "WarehouseUnavailableError",
]


class BrainError(Exception):
    """Base class of Brain's user-facing errors."""


class ConfigError(BrainError):
    """A setting or argument is invalid."""


class WarehouseError(BrainError):
    """The warehouse refused an operation."""


class WarehouseUnavailableError(WarehouseError):
    """The warehouse cannot be reached."""


class DataError(BrainError):
    """Input data is malformed; the message names the file, row or column."""


class UnknownSymbolError(DataError):
    """No candles are stored for the requested exchange, symbol and timeframe."""
