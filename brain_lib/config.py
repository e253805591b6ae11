"""Typed settings for Brain (pydantic-settings, environment prefix ``BRAIN_``).

The library never reads the environment itself: callers build one :class:`Settings`
(``Settings()`` reads ``BRAIN_*`` variables and an optional ``.env`` file) and pass
plain values on. Flows build it at their start and hand values to ``brain_lib``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from brain_lib.errors import ConfigError
from brain_lib.names import check_exchange, check_symbol, check_timeframe

if TYPE_CHECKING:
    from brain_lib.policy import PolicySpec
    from brain_lib.registry import JudgementRules
    from brain_lib.training import TrainingConfig

__all__ = ["Settings", "default_home"]


def _named(check: Callable[[str], str], value: str) -> str:
    """A name checked by :mod:`brain_lib.names`, its error as pydantic expects it."""
    try:
        return check(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


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

    # allow_inf_nan: a fee, a threshold or a bound of inf or nan is refused, not used
    model_config = SettingsConfigDict(
        env_prefix="BRAIN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        allow_inf_nan=False,
    )

    home: Path = Field(
        default_factory=default_home, description="Data folder of the embedded default."
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL. When set, it is used and no embedded warehouse starts.",
    )
    bi_password: SecretStr | None = Field(
        default=None,
        description="Password `brain db login brain_bi` gives the read-only BI role.",
    )
    writer_password: SecretStr | None = Field(
        default=None,
        description="Password `brain db login brain_writer` gives the flows' role.",
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

    lookback_days: int = Field(
        default=365, ge=7, le=3650, description="Training window, in days (at most ten years)."
    )
    label_horizon: int = Field(
        default=8,
        ge=1,
        description="Bars ahead the label looks; also the purge and the policy's minimum hold.",
    )
    n_splits: int = Field(default=5, ge=1, le=50)
    test_size: int | None = Field(default=None, ge=1, description="Bars per test fold.")
    train_size: int | None = Field(
        default=None, ge=1, description="Sliding training window in bars; None is expanding."
    )
    embargo: int = Field(default=24, ge=0, description="Bars between purged train and test.")
    fee_bps: float = Field(default=5.0, ge=0, description="Fee per unit of position change.")
    slippage_bps: float = Field(
        default=0.0, ge=0, description="Slippage or half spread per unit of position change."
    )
    charge_funding: bool = Field(
        default=True, description="Charge perpetuals the funding of raw.funding_rates."
    )
    risk_free_rate: float = 0.0

    # the position policy of every recipe (brain_lib.policy, docs/backtest.md)
    policy_kind: Literal["band", "sign"] = "band"
    policy_entry_margin: float = Field(
        default=0.5, ge=0, description="Entry margin over the cost, in prediction spreads."
    )
    policy_exit_level: float = Field(
        default=0.0, ge=0, description="Signal level an open position is closed through."
    )
    policy_min_hold: int | None = Field(
        default=None, ge=1, description="Minimum holding period in bars; unset: the horizon."
    )
    policy_confidence_z: float = Field(
        default=1.5, ge=0, description="z of the skill's lower confidence bound."
    )
    policy_sizing: Literal["unit", "vol_target"] = "unit"
    policy_max_position: float = Field(
        default=1.0, gt=0, le=1, description="Largest absolute position, in (0, 1]."
    )

    # the judgement of a challenger (brain_lib.registry, docs/registry.md)
    degradation_threshold: float = Field(default=0.05, ge=0)
    degradation_min_abs: float = Field(
        default=0.02, ge=0, description="A composite drop below this never rolls back."
    )
    min_dsr: float = Field(
        default=0.5, ge=0, le=1, description="Smallest deflated Sharpe ratio that promotes."
    )
    seed: int = 42

    # how daily-retrain and nightly-feature-analysis run their tasks (brain_lib.runners)
    task_runner: Literal["threads", "dask"] = Field(
        default="threads",
        description="threads: a bounded thread pool in the flow's process; dask: a Dask "
        "cluster (BRAIN_DASK_ADDRESS, or a local one of BRAIN_DASK_WORKERS processes).",
    )
    task_concurrency: int | None = Field(
        default=None,
        description="Tasks run at once by the threads runner; unset: the cores divided by "
        "LightGBM's 2 threads (at least 1). Between 1 and 4x the cores.",
    )
    dask_address: str | None = Field(
        default=None,
        description="Address of a running Dask scheduler (tcp://10.0.0.5:8786); unset: a "
        "local cluster is started for each flow run.",
    )
    dask_workers: int = Field(
        default=2, ge=1, description="Worker processes of the local Dask cluster."
    )
    dask_threads_per_worker: int = Field(
        default=1, ge=1, description="Threads per worker process of the local Dask cluster."
    )

    @field_validator("exchange")
    @classmethod
    def _check_exchange(cls, value: str) -> str:
        return _named(check_exchange, value)

    @field_validator("timeframe")
    @classmethod
    def _check_timeframe(cls, value: str) -> str:
        return _named(check_timeframe, value)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("no symbols: give at least one, e.g. BTC/USDT")
        return [_named(check_symbol, symbol) for symbol in value]

    @field_validator("model_types")
    @classmethod
    def _check_model_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("no model types: give at least one, e.g. lightgbm")
        return value

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

    def policy_spec(self) -> PolicySpec:
        """The position policy these settings describe."""
        from brain_lib.policy import PolicySpec

        return PolicySpec(
            kind=self.policy_kind,
            entry_margin=self.policy_entry_margin,
            exit_level=self.policy_exit_level,
            min_hold=self.policy_min_hold,
            confidence_z=self.policy_confidence_z,
            sizing=self.policy_sizing,
            max_position=self.policy_max_position,
        )

    def training_config(
        self, model_type: str = "lightgbm", params: dict[str, Any] | None = None
    ) -> TrainingConfig:
        """How these settings train and judge one model type (every setting checked:
        :class:`~brain_lib.errors.ConfigError` names a bad one)."""
        from brain_lib.training import TrainingConfig

        return TrainingConfig(
            model_type=model_type,
            params=dict(params or {}),
            label_horizon=self.label_horizon,
            n_splits=self.n_splits,
            test_size=self.test_size,
            train_size=self.train_size,
            embargo=self.embargo,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            policy=self.policy_spec(),
            charge_funding=self.charge_funding,
            timeframe=self.timeframe,
            risk_free_rate=self.risk_free_rate,
        )

    def judgement_rules(self) -> JudgementRules:
        """How challengers are judged under these settings."""
        from brain_lib.registry import JudgementRules

        return JudgementRules(
            threshold=self.degradation_threshold,
            min_abs_degradation=self.degradation_min_abs,
            min_dsr=self.min_dsr,
        )

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


# the fewest bars a scored test fold may have: fewer leave a Sharpe of noise
MIN_FOLD_BARS = 48


def check_retrain_setup(settings: Settings) -> None:
    """Refuse a training setup that cannot work, before anything starts (``brain
    train`` and the daily-retrain flow both call it): unknown model types, an invalid
    policy or cost (the training config checks every setting), test folds too short
    for a Sharpe or for the label horizon, a task runner that cannot run (a concurrency
    out of range, an unreachable Dask scheduler), an artifact root that cannot be
    written."""
    from brain_lib.features import feature_warmup_bars
    from brain_lib.models import MODEL_TYPES
    from brain_lib.models._base import model_type_error
    from brain_lib.registry import check_artifact_root
    from brain_lib.runners import check_task_runner
    from brain_lib.training import CALIBRATION_FOLDS, bar_length

    unknown = [t for t in settings.model_types if t not in MODEL_TYPES]
    if unknown:
        raise ConfigError(f"invalid setting BRAIN_MODEL_TYPES: {model_type_error(unknown)}")
    config = settings.training_config()
    bars = int(settings.lookback_days * 86_400 // bar_length(settings.timeframe).total_seconds())
    rows = bars - feature_warmup_bars() - config.label_horizon
    fold = config.test_size or rows // (config.n_splits + CALIBRATION_FOLDS + 1)
    if fold < MIN_FOLD_BARS:
        raise ConfigError(
            f"invalid setting BRAIN_N_SPLITS={config.n_splits}: test folds of {fold} bars "
            f"with {settings.lookback_days} days of {settings.timeframe} bars (at least "
            f"{MIN_FOLD_BARS}); use fewer splits or a longer lookback"
        )
    if config.label_horizon > fold:
        raise ConfigError(
            f"invalid setting BRAIN_LABEL_HORIZON={config.label_horizon}: longer than a test "
            f"fold ({fold} bars with {settings.lookback_days} days and "
            f"{config.n_splits} splits); use a shorter horizon or a longer lookback"
        )
    check_task_runner(settings)
    check_artifact_root(settings.artifact_location)
