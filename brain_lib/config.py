"""Typed settings for Brain (pydantic-settings, environment prefix ``BRAIN_``).

The library never reads the environment itself: callers build one :class:`Settings`
(``Settings()`` reads ``BRAIN_*`` variables and an optional ``.env`` file) and pass
plain values on. Flows build it at their start and hand values to ``brain_lib``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "default_home"]


def default_home() -> Path:
    """Per-user data folder: ``$XDG_DATA_HOME/brain`` or ``~/.local/share/brain``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "brain"


class Settings(BaseSettings):
    """Everything Brain can be configured with.

    Every field reads from ``BRAIN_<FIELD>`` (case-insensitive); for example
    ``BRAIN_DATABASE_URL`` or ``BRAIN_DEGRADATION_THRESHOLD=0.1``.
    """

    model_config = SettingsConfigDict(
        env_prefix="BRAIN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(
        default_factory=default_home, description="Data folder of the embedded default."
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL. When set, it is used and no embedded warehouse starts.",
    )
    artifact_root: str | None = Field(
        default=None, description="Where model artifacts go; default <home>/artifacts."
    )
    dbt_project_dir: Path | None = Field(
        default=None, description="dbt project; default the dbt_brain/ folder beside brain_lib/."
    )

    exchange: str = "synthetic"
    timeframe: str = "1h"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT"])
    model_types: list[str] = Field(default_factory=lambda: ["lightgbm"])

    lookback_days: int = Field(default=365, ge=7, description="Training window, in days.")
    label_horizon: int = Field(default=1, ge=1, description="Bars ahead the label looks.")
    n_splits: int = Field(default=5, ge=1)
    test_size: int | None = Field(default=None, ge=1, description="Bars per test fold.")
    train_size: int | None = Field(
        default=None, ge=1, description="Sliding training window in bars; None is expanding."
    )
    embargo: int = Field(default=24, ge=0, description="Bars between purged train and test.")
    fee_bps: float = Field(default=5.0, ge=0, description="Cost per unit of position change.")
    risk_free_rate: float = 0.0
    degradation_threshold: float = Field(default=0.05, ge=0)
    seed: int = 42

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        raw = value.get_secret_value().strip()
        if not raw.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError(
                "BRAIN_DATABASE_URL must be a PostgreSQL URL starting with postgresql:// "
                f"(got a value starting with {raw.split(':', 1)[0]!r})"
            )
        return SecretStr(raw)

    @property
    def artifact_location(self) -> str:
        """Artifact root as a string (local folder or fsspec URL)."""
        return self.artifact_root or str(self.home / "artifacts")

    @property
    def dbt_dir(self) -> Path:
        """The dbt project folder."""
        if self.dbt_project_dir is not None:
            return self.dbt_project_dir
        return Path(__file__).resolve().parent.parent / "dbt_brain"
