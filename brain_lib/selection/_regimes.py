"""Settings and volatility regimes (:mod:`brain_lib.selection`, module docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from brain_lib.errors import ConfigError, DataError

REGIMES: tuple[str, ...] = ("low", "normal", "high", "extreme")
DEFAULT_PREFERENCE: dict[str, str] = {
    "low": "xgboost",
    "normal": "lightgbm",
    "high": "lstm",
    "extreme": "lightgbm",
}


def check_regime(name: str) -> str:
    """``name`` when it is a regime; otherwise a :class:`ConfigError` naming the choices."""
    if name not in REGIMES:
        raise ConfigError(f"unknown regime {name!r} (choices: {', '.join(REGIMES)})")
    return name


# ------------------------------------------------------------------ settings


class SelectionSettings(BaseSettings):
    """Settings of regime detection and model selection (environment ``BRAIN_SELECTION_*``,
    e.g. ``BRAIN_SELECTION_PERSIST_BARS=12`` or
    ``BRAIN_SELECTION_PREFERENCE='{"high": "lightgbm"}'``)."""

    model_config = SettingsConfigDict(
        env_prefix="BRAIN_SELECTION_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        allow_inf_nan=False,
    )

    vol_window: int = Field(default=24, ge=2, description="Bars of the realised volatility W.")
    history_bars: int = Field(
        default=720, ge=10, description="Bars of the trailing distribution L."
    )
    min_history: int = Field(
        default=168, ge=2, description="Fewest defined volatilities in the distribution."
    )
    low_quantile: float = Field(default=0.25, gt=0, lt=1)
    high_quantile: float = Field(default=0.75, gt=0, lt=1)
    extreme_quantile: float = Field(default=0.95, gt=0, lt=1)
    preference: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PREFERENCE),
        description="Preferred model type per regime; regimes left out keep the default.",
    )
    persist_bars: int = Field(
        default=6, ge=1, description="Bars a new regime must last before the model switches."
    )
    switch_margin: float = Field(
        default=0.1, ge=0, le=1, description="Confidence gain that switches at once."
    )
    agreement_bars: int = Field(default=168, ge=1)
    agreement_prior: float = Field(default=20.0, ge=0)
    age_half_life_days: float = Field(default=30.0, gt=0)
    weight_evidence: float = Field(default=0.5, ge=0, le=1)
    weight_stability: float = Field(default=0.25, ge=0, le=1)
    weight_agreement: float = Field(default=0.25, ge=0, le=1)
    learn_bars: int = Field(
        default=2160, ge=1, description="Bars after training that the learned preference reads."
    )
    learn_min_bars: int = Field(
        default=48, ge=1, description="Fewest bars of a regime a learned choice needs."
    )

    @field_validator("preference")
    @classmethod
    def _check_preference(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = [k for k in value if k not in REGIMES]
        if unknown:
            raise ValueError(f"unknown regime {unknown[0]!r} (choices: {', '.join(REGIMES)})")
        return {**DEFAULT_PREFERENCE, **value}

    @model_validator(mode="after")
    def _check_order(self) -> SelectionSettings:
        if not self.low_quantile < self.high_quantile < self.extreme_quantile:
            raise ValueError(
                "quantiles must increase: low_quantile < high_quantile < extreme_quantile "
                f"(got {self.low_quantile}, {self.high_quantile}, {self.extreme_quantile})"
            )
        total = self.weight_evidence + self.weight_stability + self.weight_agreement
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                f"weight_evidence + weight_stability + weight_agreement must be 1 (got {total:g})"
            )
        if self.min_history > self.history_bars:
            raise ValueError(
                f"min_history ({self.min_history}) is more than history_bars ({self.history_bars})"
            )
        return self

    @classmethod
    def load(cls, **overrides: Any) -> SelectionSettings:
        """Settings from the environment and ``overrides``; a bad value is one
        :class:`ConfigError` naming the ``BRAIN_SELECTION_*`` variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = str(first["loc"][0]).upper() if first["loc"] else "SETTINGS"
            message = str(first["msg"]).removeprefix("Value error, ")
            name = f"BRAIN_SELECTION_{where}" if first["loc"] else "BRAIN_SELECTION_*"
            raise ConfigError(f"invalid setting {name}: {message}") from None


# ------------------------------------------------------------------- regimes


def realised_volatility(close: pd.Series, window: int) -> pd.Series:
    r""":math:`\sigma_t = \sqrt{\frac1W\sum_{i<W} r_{t-i}^2}` of the one-bar log returns
    (NaN until ``window`` returns exist, and while a missing close is in the window)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(close.astype(float)).diff()
    return np.sqrt((r * r).rolling(window, min_periods=window).mean())


def volatility_percentile(vol: pd.Series, history: int, min_history: int) -> pd.Series:
    r""":math:`p_t`: share of the defined :math:`\sigma_s`, :math:`s \in (t-L, t]`, that
    are :math:`\le \sigma_t` (NaN with fewer than ``min_history`` of them, or
    :math:`\sigma_t` undefined)."""
    pct = vol.rolling(history, min_periods=min_history).rank(pct=True, method="max")
    return pct.where(vol.notna())


def classify_percentiles(percentile: pd.Series, settings: SelectionSettings) -> pd.Series:
    """Regime names of percentiles (``None`` where the percentile is NaN)."""
    p = percentile.to_numpy(dtype=float)
    names = np.select(
        [
            p <= settings.low_quantile,
            p <= settings.high_quantile,
            p <= settings.extreme_quantile,
            p <= 1.0,
        ],
        list(REGIMES),
        default="",
    )
    out = pd.Series(names, index=percentile.index, dtype=object)
    return out.where(out != "", None)


def detect_regimes(
    candles: pd.DataFrame, settings: SelectionSettings | None = None
) -> pd.DataFrame:
    """Per bar of ``candles`` (a ``close`` column on the bar grid, time order): the
    realised ``volatility``, its ``percentile`` and the ``regime`` (module docstring).

    Point-in-time: row ``t`` reads only rows up to ``t``."""
    settings = settings or SelectionSettings()
    vol = realised_volatility(candles["close"], settings.vol_window)
    pct = volatility_percentile(vol, settings.history_bars, settings.min_history)
    return pd.DataFrame(
        {"volatility": vol, "percentile": pct, "regime": classify_percentiles(pct, settings)}
    )


def regime_run_length(regimes: Sequence[str | None] | pd.Series, regime: str | None = None) -> int:
    """How many bars in a row, ending at the last one, are in ``regime`` (default: the
    last bar's regime)."""
    values = list(regimes)
    if not values:
        return 0
    target = values[-1] if regime is None else regime
    n = 0
    for value in reversed(values):
        if value != target or value is None:
            break
        n += 1
    return n


@dataclass(frozen=True)
class RegimeReading:
    """The regime at a decision time: the last closed bar's."""

    regime: str
    as_of_bar: pd.Timestamp
    volatility: float
    percentile: float
    run_bars: int
    """Bars in a row, up to ``as_of_bar``, in this regime."""


def current_regime(
    candles: pd.DataFrame, settings: SelectionSettings | None = None
) -> RegimeReading:
    """The regime of the last bar of ``candles``; :class:`DataError` when too few bars."""
    settings = settings or SelectionSettings()
    frame = detect_regimes(candles, settings)
    if frame.empty or frame["regime"].iloc[-1] is None:
        need = settings.vol_window + settings.min_history
        raise DataError(
            f"too few candles for a volatility regime: {len(candles)} bars, at least "
            f"{need} consecutive ones needed (vol_window {settings.vol_window} + "
            f"min_history {settings.min_history})"
        )
    last = frame.iloc[-1]
    return RegimeReading(
        regime=str(last["regime"]),
        as_of_bar=pd.Timestamp(frame.index[-1]),
        volatility=float(last["volatility"]),
        percentile=float(last["percentile"]),
        run_bars=regime_run_length(frame["regime"]),
    )
