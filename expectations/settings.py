"""Bounds and severities of the data-quality suites (pydantic-settings, prefix ``BRAIN_QUALITY_``).

Light on purpose: importing this module does not import Great Expectations, so the CLI
and the flows can read the settings before they decide to validate anything.

Every field reads from ``BRAIN_QUALITY_<FIELD>`` (case-insensitive), e.g.::

    BRAIN_QUALITY_MAX_GAP_BARS=6
    BRAIN_QUALITY_MAX_BAR_MOVE=0.3
    BRAIN_QUALITY_SEVERITY='{"expect_no_candle_gap_longer_than": "blocking"}'
    BRAIN_QUALITY_DOCS_DIR=/srv/brain/quality/data_docs
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["QualitySettings", "Severity", "default_docs_dir"]

Severity = Literal["blocking", "warning"]


def default_docs_dir(home: Path) -> Path:
    """Where Data Docs go by default: ``<brain home>/quality/data_docs``."""
    return Path(home).expanduser() / "quality" / "data_docs"


class QualitySettings(BaseSettings):
    """Bounds of the domain rules and the severity of each expectation.

    Severity: a failed ``blocking`` expectation keeps a symbol's window out of training
    (``brain_lib.quality.gate_training_window``); a failed ``warning`` is recorded and
    does not block. Defaults are in ``expectations/README.md``; ``severity`` overrides
    them per expectation type (its snake_case name, e.g. ``expect_candle_move_within``).
    """

    model_config = SettingsConfigDict(
        env_prefix="BRAIN_QUALITY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    max_gap_bars: int = Field(
        default=3,
        ge=0,
        description=(
            "Most bars that may be missing between two consecutive candles of a series "
            "(0: every bar must be there)."
        ),
    )
    max_bar_move: float = Field(
        default=0.5,
        gt=0,
        description="Largest |close / previous close - 1| of one bar (0.5 = a 50% move).",
    )
    max_price: float = Field(
        default=1e9,
        gt=0,
        description="Largest plausible price of one unit, in any quote currency.",
    )
    max_spike_factor: float = Field(
        default=10.0,
        gt=1,
        description=(
            "An isolated spike: high above this many times, or low below 1/this of, the "
            "closes on both sides."
        ),
    )
    earliest_candle: str = Field(
        default="2009-01-03",
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="No candle before this day (UTC; the genesis block).",
    )
    max_future_hours: float = Field(
        default=24.0,
        ge=0,
        description="Most hours a candle's ts may lie after now (clock differences).",
    )
    max_clock_skew_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Most seconds a liquidation's ts may lie after the moment it was stored "
            "(loaded_at): the exchange's clock ahead of ours."
        ),
    )
    max_abs_funding_rate: float = Field(
        default=0.03,
        gt=0,
        description="Largest |funding rate| of one funding interval (0.03 = 3%).",
    )
    max_abs_sharpe: float = Field(
        default=10.0, gt=0, description="Largest plausible |annualised Sharpe| of a model."
    )
    max_abs_sortino: float = Field(
        default=20.0,
        gt=0,
        description="Largest plausible finite |annualised Sortino| of a model.",
    )
    quarantine_warnings: bool = Field(
        default=True,
        description=(
            "Also quarantine (and so keep out of training) the rows that fail a row-level "
            "expectation of severity warning; false: report them only."
        ),
    )
    severity: dict[str, Severity] = Field(
        default_factory=dict,
        description=(
            "Severity overrides by expectation type, "
            "e.g. {'expect_candle_move_within': 'blocking'}."
        ),
    )
    docs_dir: Path | None = Field(
        default=None,
        description="Data Docs folder; default <BRAIN_HOME>/quality/data_docs.",
    )
