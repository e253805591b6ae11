"""Exceptions that name what went wrong and where.

Every error a user can cause derives from :class:`BrainError`; the CLI prints its
message on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "BrainError",
    "ConfigError",
    "DataError",
    "ManifestError",
    "MarketDataError",
    "MartNotBuiltError",
    "NoModelError",
    "QualityError",
    "RegistryError",
    "UnknownExchangeError",
    "UnknownSymbolError",
    "UnknownVersionError",
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


class RegistryError(BrainError):
    """A model version, champion or manifest request that cannot be served."""


class UnknownVersionError(RegistryError):
    """No model version has the requested id."""


class NoModelError(RegistryError):
    """A symbol (and model type) has no model version or no champion."""


class ArtifactError(RegistryError):
    """A model artifact is missing, or its sha256 differs from the one recorded."""


class ManifestError(RegistryError):
    """A manifest is malformed or from a newer format than this Brain reads."""


class MarketDataError(BrainError):
    """Collecting market data failed; the message names the exchange, symbol and dataset."""


class UnknownExchangeError(ConfigError):
    """An exchange id Brain does not collect from (the message lists the supported ones)."""


class QualityError(BrainError):
    """A data-quality validation could not run (unknown table or filter, a missing
    quarantine table, a Great Expectations failure); the message names the table."""


class MartNotBuiltError(WarehouseError):
    """A dbt mart that a reader needs does not exist yet; the message names it and the
    command that builds it."""
