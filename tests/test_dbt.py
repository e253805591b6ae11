"""dbt_brain against a real PostgreSQL: raw DDL, build, marts, unit tests, failures.

One database for the module (``warehouse_dsn``: raw tables made by
``dbt run-operation create_raw_tables``); the tests that make dbt fail put their bad
rows back out before they return (in replica mode, which skips the append-only
triggers). The champion registry's own rules are in test_dbt_champions.py.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from composite_reference import WEIGHTS, component_scores, composite_score
from psycopg.types.json import Jsonb

from brain_lib.dbt import DbtResult, run_dbt
from brain_lib.errors import WarehouseError

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent / "dbt_brain"

# (column, data type, nullable) in table order, as information_schema reports them
RAW_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "ohlcv": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("open", "double precision", "NO"),
        ("high", "double precision", "NO"),
        ("low", "double precision", "NO"),
        ("close", "double precision", "NO"),
        ("volume", "double precision", "NO"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
    "model_versions": [
        ("version_id", "text", "NO"),
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("model_type", "text", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
        ("run_id", "text", "YES"),
        ("manifest", "jsonb", "NO"),
        ("artifact_uri", "text", "NO"),
        ("artifact_sha256", "text", "NO"),
        ("feature_set_hash", "text", "NO"),
        ("train_start", "timestamp with time zone", "NO"),
        ("train_end", "timestamp with time zone", "NO"),
        ("n_rows", "integer", "NO"),
        ("loaded_at", "timestamp with time zone", "NO"),
        ("code_version", "text", "YES"),
        ("challenged_version_id", "text", "YES"),
    ],
    "model_metrics": [
        ("version_id", "text", "NO"),
        ("scope", "text", "NO"),
        ("metric", "text", "NO"),
        ("value", "double precision", "YES"),
        ("window_start", "timestamp with time zone", "YES"),
        ("window_end", "timestamp with time zone", "YES"),
        ("computed_at", "timestamp with time zone", "NO"),
    ],
    "model_events": [
        ("event_id", "bigint", "NO"),
        ("event_type", "text", "NO"),
        ("exchange", "text", "YES"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "YES"),
        ("model_type", "text", "NO"),
        ("version_id", "text", "YES"),
        ("previous_version_id", "text", "YES"),
        ("champion_score", "double precision", "YES"),
        ("challenger_score", "double precision", "YES"),
        ("degradation", "double precision", "YES"),
        ("threshold", "double precision", "YES"),
        ("reason", "text", "YES"),
        ("run_id", "text", "YES"),
        ("created_at", "timestamp with time zone", "NO"),
        ("details", "jsonb", "YES"),
    ],
    "model_selections": [
        ("selection_id", "bigint", "NO"),
        ("decided_at", "timestamp with time zone", "NO"),
        ("kind", "text", "NO"),
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("regime", "text", "NO"),
        ("regime_source", "text", "NO"),
        ("as_of_bar", "timestamp with time zone", "YES"),
        ("volatility", "double precision", "YES"),
        ("volatility_percentile", "double precision", "YES"),
        ("regime_run_bars", "integer", "YES"),
        ("preferred_model_type", "text", "NO"),
        ("model_type", "text", "NO"),
        ("version_id", "text", "NO"),
        ("is_fallback", "boolean", "NO"),
        ("confidence", "double precision", "NO"),
        ("learned_model_type", "text", "YES"),
        ("current_version_id", "text", "YES"),
        ("current_confidence", "double precision", "YES"),
        ("switch", "boolean", "YES"),
        ("reason", "text", "NO"),
        ("details", "jsonb", "YES"),
        ("created_at", "timestamp with time zone", "NO"),
    ],
    "model_champions": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("model_type", "text", "NO"),
        ("version_id", "text", "NO"),
        ("since", "timestamp with time zone", "NO"),
        ("event_id", "bigint", "NO"),
    ],
    "feature_importance": [
        ("version_id", "text", "NO"),
        ("kind", "text", "NO"),
        ("method", "text", "NO"),
        ("feature", "text", "NO"),
        ("importance", "double precision", "YES"),
        ("normalised", "double precision", "YES"),
        ("rank", "integer", "YES"),
        ("skipped_reason", "text", "YES"),
        ("window_start", "timestamp with time zone", "YES"),
        ("window_end", "timestamp with time zone", "YES"),
        ("n_rows", "integer", "NO"),
        ("computed_at", "timestamp with time zone", "NO"),
    ],
    # market data (macros/raw_market.sql), quality (raw_quality.sql), nightly analysis
    "collection_gaps": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("dataset", "text", "NO"),
        ("series", "text", "NO"),
        ("last_before", "timestamp with time zone", "NO"),
        ("first_after", "timestamp with time zone", "NO"),
        ("missing_rows", "integer", "YES"),
        ("run_id", "text", "YES"),
        ("detected_at", "timestamp with time zone", "NO"),
    ],
    "collection_runs": [
        ("collection_run_id", "bigint", "NO"),
        ("run_id", "text", "YES"),
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("dataset", "text", "NO"),
        ("series", "text", "NO"),
        ("status", "text", "NO"),
        ("message", "text", "YES"),
        ("new_rows", "bigint", "NO"),
        ("unchanged_rows", "bigint", "NO"),
        ("pages", "integer", "NO"),
        ("requests", "integer", "NO"),
        ("retries", "integer", "NO"),
        ("gaps", "integer", "NO"),
        ("first_ts", "timestamp with time zone", "YES"),
        ("last_ts", "timestamp with time zone", "YES"),
        ("lag_seconds", "double precision", "YES"),
        ("started_at", "timestamp with time zone", "NO"),
        ("finished_at", "timestamp with time zone", "NO"),
    ],
    "collection_streams": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("dataset", "text", "NO"),
        ("series", "text", "NO"),
        ("status", "text", "NO"),
        ("message", "text", "YES"),
        ("last_ts", "timestamp with time zone", "YES"),
        ("last_run_id", "text", "YES"),
        ("updated_at", "timestamp with time zone", "NO"),
    ],
    "data_quality_results": [
        ("result_id", "bigint", "NO"),
        ("run_id", "text", "NO"),
        ("suite", "text", "NO"),
        ("table_name", "text", "NO"),
        ("expectation", "text", "NO"),
        ("column_name", "text", "YES"),
        ("severity", "text", "NO"),
        ("success", "boolean", "NO"),
        ("observed_value", "jsonb", "YES"),
        ("unexpected_count", "bigint", "YES"),
        ("element_count", "bigint", "YES"),
        ("exchange", "text", "YES"),
        ("symbol", "text", "YES"),
        ("batch_start", "timestamp with time zone", "YES"),
        ("batch_end", "timestamp with time zone", "YES"),
        ("validated_at", "timestamp with time zone", "NO"),
        ("timeframe", "text", "YES"),
        ("description", "text", "YES"),
        ("exception_message", "text", "YES"),
    ],
    "feature_distributions": [
        ("version_id", "text", "NO"),
        ("computed_at", "timestamp with time zone", "NO"),
        ("feature", "text", "NO"),
        ("bin", "integer", "NO"),
        ("lower_edge", "double precision", "YES"),
        ("upper_edge", "double precision", "YES"),
        ("train_count", "bigint", "NO"),
        ("recent_count", "bigint", "NO"),
        ("skipped_reason", "text", "YES"),
        ("train_start", "timestamp with time zone", "NO"),
        ("train_end", "timestamp with time zone", "NO"),
        ("window_start", "timestamp with time zone", "NO"),
        ("window_end", "timestamp with time zone", "NO"),
    ],
    "funding_rates": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("funding_rate", "double precision", "NO"),
        ("mark_price", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
    "listener_heartbeats": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("dataset", "text", "NO"),
        ("listener_id", "text", "NO"),
        ("run_id", "text", "YES"),
        ("host", "text", "NO"),
        ("pid", "integer", "NO"),
        ("started_at", "timestamp with time zone", "NO"),
        ("beat_at", "timestamp with time zone", "NO"),
        ("state", "text", "NO"),
        ("connected", "boolean", "NO"),
        ("messages", "bigint", "NO"),
        ("new_rows", "bigint", "NO"),
        ("unchanged_rows", "bigint", "NO"),
        ("rejected", "bigint", "NO"),
        ("reconnects", "integer", "NO"),
        ("last_ts", "timestamp with time zone", "YES"),
        ("message", "text", "YES"),
    ],
    "quarantine_messages": [
        ("message_id", "bigint", "NO"),
        ("exchange", "text", "NO"),
        ("dataset", "text", "NO"),
        ("symbol", "text", "YES"),
        ("reason", "text", "NO"),
        ("frame", "text", "NO"),
        ("frame_sha256", "text", "NO"),
        ("frame_bytes", "integer", "NO"),
        ("run_id", "text", "YES"),
        ("received_at", "timestamp with time zone", "NO"),
    ],
    "liquidations": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("liquidation_key", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("side", "text", "YES"),
        ("price", "double precision", "YES"),
        ("quantity", "double precision", "YES"),
        ("notional", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
    "open_interest": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("period", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("open_interest_amount", "double precision", "YES"),
        ("open_interest_value", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
    "quarantine_funding_rates": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("funding_rate", "double precision", "YES"),
        ("mark_price", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "YES"),
        ("expectation", "text", "NO"),
        ("reason", "text", "NO"),
        ("severity", "text", "NO"),
        ("run_id", "text", "NO"),
        ("quarantined_at", "timestamp with time zone", "NO"),
    ],
    "quarantine_liquidations": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("liquidation_key", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("side", "text", "YES"),
        ("price", "double precision", "YES"),
        ("quantity", "double precision", "YES"),
        ("notional", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "YES"),
        ("expectation", "text", "NO"),
        ("reason", "text", "NO"),
        ("severity", "text", "NO"),
        ("run_id", "text", "NO"),
        ("quarantined_at", "timestamp with time zone", "NO"),
    ],
    "quarantine_ohlcv": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("open", "double precision", "YES"),
        ("high", "double precision", "YES"),
        ("low", "double precision", "YES"),
        ("close", "double precision", "YES"),
        ("volume", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "YES"),
        ("expectation", "text", "NO"),
        ("reason", "text", "NO"),
        ("severity", "text", "NO"),
        ("run_id", "text", "NO"),
        ("quarantined_at", "timestamp with time zone", "NO"),
        ("landed", "boolean", "NO"),
        ("source", "text", "YES"),
        ("source_row", "bigint", "YES"),
    ],
    "ohlcv_landing": [
        ("batch_id", "text", "NO"),
        ("source_row", "bigint", "NO"),
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("open", "double precision", "YES"),
        ("high", "double precision", "YES"),
        ("low", "double precision", "YES"),
        ("close", "double precision", "YES"),
        ("volume", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
    "ohlcv_revisions": [
        ("revision_id", "bigint", "NO"),
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("old_open", "double precision", "NO"),
        ("old_high", "double precision", "NO"),
        ("old_low", "double precision", "NO"),
        ("old_close", "double precision", "NO"),
        ("old_volume", "double precision", "NO"),
        ("old_loaded_at", "timestamp with time zone", "NO"),
        ("new_open", "double precision", "NO"),
        ("new_high", "double precision", "NO"),
        ("new_low", "double precision", "NO"),
        ("new_close", "double precision", "NO"),
        ("new_volume", "double precision", "NO"),
        ("decision", "text", "NO"),
        ("rule", "text", "NO"),
        ("source", "text", "YES"),
        ("revised_at", "timestamp with time zone", "NO"),
    ],
    "quarantine_open_interest": [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("period", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("open_interest_amount", "double precision", "YES"),
        ("open_interest_value", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "YES"),
        ("expectation", "text", "NO"),
        ("reason", "text", "NO"),
        ("severity", "text", "NO"),
        ("run_id", "text", "NO"),
        ("quarantined_at", "timestamp with time zone", "NO"),
    ],
    "retrain_requests": [
        ("request_id", "bigint", "NO"),
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("reason", "text", "NO"),
        ("version_id", "text", "YES"),
        ("source", "text", "NO"),
        ("requested_run_id", "text", "YES"),
        ("requested_at", "timestamp with time zone", "NO"),
        ("consumed_at", "timestamp with time zone", "YES"),
        ("consumed_run_id", "text", "YES"),
    ],
    "sentiment": [
        ("source", "text", "NO"),
        ("item_key", "text", "NO"),
        ("ts", "timestamp with time zone", "NO"),
        ("symbol", "text", "YES"),
        ("text", "text", "YES"),
        ("score", "double precision", "YES"),
        ("loaded_at", "timestamp with time zone", "NO"),
    ],
}

RAW_PRIMARY_KEYS = {
    "ohlcv": ["exchange", "symbol", "timeframe", "ts"],
    "model_versions": ["version_id"],
    "model_metrics": ["version_id", "scope", "metric"],
    "model_events": ["event_id"],
    "model_selections": ["selection_id"],
    "model_champions": ["exchange", "symbol", "timeframe", "model_type"],
    "feature_importance": ["version_id", "kind", "method", "feature", "computed_at"],
    "collection_gaps": ["exchange", "symbol", "dataset", "series", "last_before"],
    "collection_runs": ["collection_run_id"],
    "collection_streams": ["exchange", "symbol", "dataset", "series"],
    "data_quality_results": ["result_id"],
    "feature_distributions": ["version_id", "computed_at", "feature", "bin"],
    "funding_rates": ["exchange", "symbol", "ts"],
    "liquidations": ["exchange", "symbol", "liquidation_key"],
    "listener_heartbeats": ["exchange", "symbol", "dataset"],
    "quarantine_messages": ["message_id"],
    "open_interest": ["exchange", "symbol", "period", "ts"],
    "quarantine_funding_rates": ["exchange", "symbol", "ts", "expectation"],
    "quarantine_liquidations": ["exchange", "symbol", "liquidation_key", "expectation"],
    "quarantine_ohlcv": ["exchange", "symbol", "timeframe", "ts", "expectation", "landed"],
    "ohlcv_landing": ["batch_id", "source_row"],
    "ohlcv_revisions": ["revision_id"],
    "quarantine_open_interest": ["exchange", "symbol", "period", "ts", "expectation"],
    "retrain_requests": ["request_id"],
    "sentiment": ["source", "item_key"],
}

# (table, column) -> referenced table.column
RAW_FOREIGN_KEYS = {
    ("feature_importance", "version_id"): "model_versions.version_id",
    ("model_champions", "event_id"): "model_events.event_id",
    ("model_champions", "version_id"): "model_versions.version_id",
    ("model_metrics", "version_id"): "model_versions.version_id",
    ("model_versions", "challenged_version_id"): "model_versions.version_id",
    ("feature_distributions", "version_id"): "model_versions.version_id",
    ("retrain_requests", "version_id"): "model_versions.version_id",
}

APPEND_ONLY = (
    "model_versions",
    "model_metrics",
    "model_events",
    "model_selections",
    "feature_importance",
    "feature_distributions",
    "collection_runs",
    "ohlcv_revisions",
    "data_quality_results",
    "quarantine_ohlcv",
    "quarantine_funding_rates",
    "quarantine_open_interest",
    "quarantine_liquidations",
    "quarantine_messages",
)

SCORE_FUNCTIONS = [
    "composite_score",
    "evidence_rule",
    "has_evidence",
    "score_calmar",
    "score_hit_ratio",
    "score_max_drawdown",
    "score_profit_factor",
    "score_sharpe",
    "score_sortino",
]

UNIT_TESTS = [
    "model_composite_scores::composite_score_formula",
    "model_composite_scores::composite_score_pivots_oos_metrics",
    "best_model_per_symbol::best_model_is_best_champion",
    "model_champion_history::champion_history_periods",
    "model_champion_history::champion_history_same_instant",
    "stg_raw__model_metrics::metric_nan_becomes_null",
    "feature_importance_trends::importance_trend_slopes_and_rank_changes",
    "feature_shifts::shift_flags_planted_shift_not_stable_ranking",
    "feature_drift::psi_by_hand",
]

# ----------------------------------------------------------- the formula, in Python

# (tests/composite_reference.py: WEIGHTS, component_scores, composite_score)


# -------------------------------------------------------------------- test data

T0 = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Version:
    version_id: str
    exchange: str
    symbol: str
    model_type: str
    trained_at: datetime
    metrics: dict[str, float | None]
    challenged_version_id: str | None = None
    generation: int = 0

    @property
    def window(self) -> tuple[datetime, datetime]:
        """The out-of-sample window: one per generation (one daily run judges every
        model type of a symbol on the same bars of the same candles)."""
        end = T0 + timedelta(days=self.generation)
        return end - timedelta(days=30), end

    @property
    def fingerprint(self) -> str:
        return f"candles-{self.symbol}-{self.generation}"


def _versions() -> list[Version]:
    """2 symbols × 2 model types × 2 versions, with the awkward cases mixed in, and one
    SOL/USDT version that never becomes champion. A second version challenged the first."""
    metric_sets: dict[tuple[str, str, int], dict[str, float | None]] = {
        ("BTC/USDT", "lightgbm", 0): {
            "sharpe": 2.4,
            "sortino": 3.1,
            "calmar": 4.0,
            "profit_factor": 1.9,
            "hit_ratio": 0.58,
            "max_drawdown": -0.08,
        },
        ("BTC/USDT", "lightgbm", 1): {
            "sharpe": 0.7,
            "sortino": 0.9,
            "calmar": 0.8,
            "profit_factor": 1.1,
            "hit_ratio": 0.51,
            "max_drawdown": -0.21,
        },
        ("BTC/USDT", "xgboost", 0): {
            "sharpe": -0.4,
            "sortino": -0.5,
            "calmar": -0.3,
            "profit_factor": 0.9,
            "hit_ratio": 0.48,
            "max_drawdown": -0.3,
        },
        ("BTC/USDT", "xgboost", 1): {
            "sharpe": 1.3,
            "sortino": math.inf,
            "calmar": 2.2,
            "profit_factor": math.inf,
            "hit_ratio": 0.61,
            "max_drawdown": -0.04,
        },
        ("ETH/USDT", "lightgbm", 0): {
            "sharpe": 1.0,
            "sortino": 1.4,
            "calmar": 1.2,
            "profit_factor": 1.3,
            "hit_ratio": 0.53,
            "max_drawdown": -0.15,
        },
        ("ETH/USDT", "lightgbm", 1): {
            "sharpe": -1.6,
            "sortino": -2.0,
            "calmar": -0.9,
            "profit_factor": 0.6,
            "hit_ratio": 0.44,
            "max_drawdown": -1.0,
        },
        ("ETH/USDT", "xgboost", 0): {
            "sharpe": 0.2,
            "sortino": 0.3,
            "calmar": 0.1,
            "profit_factor": 1.02,
            "hit_ratio": 0.5,
            "max_drawdown": -0.4,
        },
        ("ETH/USDT", "xgboost", 1): {
            # undefined Sharpe written as NaN, undefined Sortino as NULL
            "sharpe": math.nan,
            "sortino": None,
            "calmar": 0.5,
            "profit_factor": 1.2,
            "hit_ratio": 0.52,
            "max_drawdown": -0.12,
        },
        ("SOL/USDT", "lightgbm", 0): {
            "sharpe": 3.0,
            "sortino": 4.0,
            "calmar": 5.0,
            "profit_factor": 2.5,
            "hit_ratio": 0.6,
            "max_drawdown": -0.05,
        },
    }
    # every backtest traded enough to be scored, but the BTC/USDT lightgbm challenger,
    # which barely traded: no evidence, no composite, refused
    evidence = {key: {"round_trips": 40.0, "exposure": 0.3} for key in metric_sets}
    evidence[("BTC/USDT", "lightgbm", 1)] = {"round_trips": 3.0, "exposure": 0.01}
    versions: list[Version] = []
    first: dict[tuple[str, str], str] = {}
    for (symbol, model_type, generation), scored in metric_sets.items():
        metrics = {**scored, **evidence[(symbol, model_type, generation)]}
        trained_at = T0 + timedelta(days=generation, hours=len(versions))
        slug = symbol.lower().replace("/", "-")
        version_id = f"{slug}.{model_type}.{trained_at:%Y%m%dT%H%M%S}.{len(versions):06x}"
        challenged = first.get((symbol, model_type)) if generation else None
        first.setdefault((symbol, model_type), version_id)
        versions.append(
            Version(
                version_id,
                "binance",
                symbol,
                model_type,
                trained_at,
                metrics,
                challenged,
                generation,
            )
        )
    return versions


VERSIONS = _versions()


@dataclass(frozen=True)
class Event:
    event_type: str
    version: Version
    previous: Version | None
    at: datetime


def _events() -> list[Event]:
    """The champion decisions, as brain_lib.registry records them: the first version of
    each BTC and ETH model type is promoted; the second challenges it and is promoted
    when its composite is not lower, refused (a rollback event) otherwise. SOL/USDT gets
    no decision, so it has versions but no champion."""
    by_id = {v.version_id: v for v in VERSIONS}
    events = []
    for v in VERSIONS:
        if v.symbol == "SOL/USDT":
            continue
        at = v.trained_at + timedelta(minutes=30)
        if v.challenged_version_id is None:
            events.append(Event("promotion", v, None, at))
            continue
        champion = by_id[v.challenged_version_id]
        mine, theirs = composite_score(v.metrics), composite_score(champion.metrics)
        not_worse = mine is not None and (theirs is None or mine >= theirs)
        events.append(Event("promotion" if not_worse else "rollback", v, champion, at))
    return events


EVENTS = _events()


def champions() -> dict[tuple[str, str], Version]:
    """(symbol, model_type) -> the champion after all EVENTS."""
    current: dict[tuple[str, str], Version] = {}
    for e in sorted(EVENTS, key=lambda e: e.at):
        if e.event_type != "rollback":
            current[(e.version.symbol, e.version.model_type)] = e.version
    return current


def candidate_scores() -> dict[
    tuple[str, str], tuple[Version, float | None, tuple[datetime, datetime], str]
]:
    """(symbol, model_type) -> (champion, its score on the window of the newest judgement
    of its type, that window, its candles): the challenger's own score when it was
    promoted, the champion's replay (here: its metrics) when the challenger was refused."""
    out = {}
    for key, champion in champions().items():
        latest = max(
            (e for e in EVENTS if (e.version.symbol, e.version.model_type) == key),
            key=lambda e: e.at,
        )
        out[key] = (
            champion,
            composite_score(champion.metrics),
            latest.version.window,
            latest.version.fingerprint,
        )
    return out


def expected_best() -> dict[str, tuple[Version, float]]:
    """Per symbol: among champions scored on the newest window, the best composite (then
    the newest version) — what marts.best_model_per_symbol must pick."""
    by_symbol: dict[str, list[tuple[Version, float | None, tuple[datetime, datetime], str]]] = {}
    for (symbol, _), candidate in candidate_scores().items():
        by_symbol.setdefault(symbol, []).append(candidate)
    best: dict[str, tuple[Version, float]] = {}
    for symbol, candidates in by_symbol.items():
        reference = max(candidates, key=lambda c: (c[2][1], c[2][0]))
        ranked = [
            c
            for c in candidates
            if c[1] is not None and (c[2], c[3]) == (reference[2], reference[3])
        ]
        if ranked:
            pick = max(ranked, key=lambda c: (c[1], c[0].trained_at, c[0].version_id))
            assert pick[1] is not None
            best[symbol] = (pick[0], pick[1])
    return best


def _insert_versions(conn: psycopg.Connection[Any], versions: list[Version]) -> None:
    with conn.cursor() as cur:
        for v in versions:
            cur.execute(
                """
                insert into raw.model_versions (
                    version_id, exchange, symbol, timeframe, model_type, created_at, run_id,
                    manifest, artifact_uri, artifact_sha256, feature_set_hash,
                    train_start, train_end, n_rows, code_version, challenged_version_id
                ) values (%s, %s, %s, '1h', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    v.version_id,
                    v.exchange,
                    v.symbol,
                    v.model_type,
                    v.trained_at,
                    "0b6d1f1e-0000-4000-8000-000000000001",
                    Jsonb(
                        {
                            "model_type": v.model_type,
                            "features": ["ret_1", "vol_24"],
                            "dataset": {"fingerprint_sha256": v.fingerprint},
                        }
                    ),
                    f"file:///artifacts/{v.version_id}/model.txt",
                    "ab" * 32,
                    "f" * 16,
                    v.trained_at - timedelta(days=180),
                    v.trained_at - timedelta(days=30),
                    3600,
                    "0.1.0+g1a2b3c4",
                    v.challenged_version_id,
                ),
            )
            cur.executemany(
                """
                insert into raw.model_metrics
                    (version_id, scope, metric, value, window_start, window_end)
                values (%s, 'oos', %s, %s, %s, %s)
                """,
                [
                    (v.version_id, name, value, *v.window)
                    for name, value in [*v.metrics.items(), ("n_bars", 720.0)]
                ],
            )
            # an in-sample Sharpe that the marts must ignore
            cur.execute(
                "insert into raw.model_metrics (version_id, scope, metric, value) "
                "values (%s, 'in_sample', 'sharpe', 9.9)",
                (v.version_id,),
            )


def _insert_market_and_events(conn: psycopg.Connection[Any]) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    candles = [
        (
            "binance",
            symbol,
            "1h",
            now - timedelta(hours=i),
            100.0 + i,
            101.0 + i,
            99.0 + i,
            100.5 + i,
            12.5,
        )
        for symbol in ("BTC/USDT", "ETH/USDT")
        for i in range(3)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, "
            "volume) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            candles,
        )
        for e in EVENTS:
            _record_event(cur, e)


def _record_event(cur: psycopg.Cursor[Any], e: Event) -> None:
    """Insert the event; on a champion change also move the pointer (upsert), as the
    registry does in the same transaction."""
    v, champion = e.version, e.previous
    if e.event_type == "rollback" and champion is not None:
        # the champion's recipe replayed on the challenger's bars, stored beside it
        cur.executemany(
            "insert into raw.model_metrics (version_id, scope, metric, value, window_start, "
            "window_end) values (%s, 'champion_replay', %s, %s, %s, %s)",
            [(v.version_id, name, value, *v.window) for name, value in champion.metrics.items()],
        )
    scores = (
        composite_score(champion.metrics) if champion else None,
        composite_score(v.metrics),
    )
    row = cur.execute(
        """
        insert into raw.model_events (
            event_type, exchange, symbol, timeframe, model_type, version_id,
            previous_version_id, champion_score, challenger_score, threshold, reason,
            created_at, details
        ) values (%s, %s, %s, '1h', %s, %s, %s, %s, %s, 0.05, %s, %s, %s)
        returning event_id
        """,
        (
            e.event_type,
            v.exchange,
            v.symbol,
            v.model_type,
            v.version_id,
            champion.version_id if champion else None,
            *scores,
            "challenger degraded by more than the threshold"
            if e.event_type == "rollback"
            else "challenger not worse than the champion",
            e.at,
            Jsonb({"window": "oos", "scores": {"champion": scores[0], "challenger": scores[1]}}),
        ),
    ).fetchone()
    assert row is not None
    if e.event_type != "rollback":
        cur.execute(
            """
            insert into raw.model_champions
                (exchange, symbol, timeframe, model_type, version_id, since, event_id)
            values (%s, %s, '1h', %s, %s, %s, %s)
            on conflict (exchange, symbol, timeframe, model_type) do update
                set version_id = excluded.version_id,
                    since = excluded.since,
                    event_id = excluded.event_id
            """,
            (v.exchange, v.symbol, v.model_type, v.version_id, e.at, row[0]),
        )


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dbt_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One target/ for the module, so later runs parse partially (faster)."""
    return tmp_path_factory.mktemp("dbt-state")


@pytest.fixture(scope="module")
def built(warehouse_dsn: str, dbt_state: Path) -> DbtResult:
    """The module database with realistic rows, after a successful ``dbt build``."""
    with psycopg.connect(warehouse_dsn) as conn:
        _insert_versions(conn, VERSIONS)
        _insert_market_and_events(conn)
    return run_dbt(["build"], dsn=warehouse_dsn, project_dir=PROJECT, state_dir=dbt_state)


def _query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def _purge(dsn: str, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Delete test rows from append-only tables: replica mode (superuser) skips ordinary
    triggers, the append-only ones included, as it skips foreign keys."""
    with psycopg.connect(dsn) as conn:
        conn.execute("set session_replication_role = replica")
        for sql, params in statements:
            conn.execute(sql, params)


# ---------------------------------------------------------------- (a) raw schema


def _raw_columns(dsn: str) -> dict[str, list[tuple[str, str, str]]]:
    rows = _query(
        dsn,
        """
        select table_name, column_name, data_type, is_nullable
        from information_schema.columns
        where table_schema = 'raw'
        order by table_name, ordinal_position
        """,
    )
    found: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, data_type, nullable in rows:
        found.setdefault(table, []).append((column, data_type, nullable))
    return found


def _raw_primary_keys(dsn: str) -> dict[str, list[str]]:
    rows = _query(
        dsn,
        """
        select tc.table_name, kcu.column_name
        from information_schema.table_constraints as tc
        join information_schema.key_column_usage as kcu
            on kcu.constraint_name = tc.constraint_name
            and kcu.table_schema = tc.table_schema
        where tc.table_schema = 'raw' and tc.constraint_type = 'PRIMARY KEY'
        order by tc.table_name, kcu.ordinal_position
        """,
    )
    keys: dict[str, list[str]] = {}
    for table, column in rows:
        keys.setdefault(table, []).append(column)
    return keys


def _raw_foreign_keys(dsn: str) -> dict[tuple[str, str], str]:
    rows = _query(
        dsn,
        """
        select c.conrelid::regclass::text, a.attname,
               c.confrelid::regclass::text || '.' || fa.attname
        from pg_constraint as c
        join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
        join pg_attribute as fa on fa.attrelid = c.confrelid and fa.attnum = c.confkey[1]
        where c.contype = 'f' and c.connamespace = 'raw'::regnamespace
        """,
    )
    return {
        (table.removeprefix("raw."), column): target.removeprefix("raw.")
        for table, column, target in rows
    }


def _append_only_triggers(dsn: str) -> dict[str, list[str]]:
    """table -> the trigger events that raw.forbid_change() guards."""
    rows = _query(
        dsn,
        """
        select event_object_table, event_manipulation
        from information_schema.triggers
        where trigger_schema = 'raw' and strpos(action_statement, 'raw.forbid_change') > 0
        order by 1, 2
        """,
    )
    found: dict[str, list[str]] = {}
    for table, event in rows:
        found.setdefault(table, []).append(event)
    # information_schema does not list TRUNCATE triggers
    truncate = _query(
        dsn,
        "select tgrelid::regclass::text from pg_trigger "
        "where tgfoid = 'raw.forbid_change'::regproc and tgtype & 32 <> 0",
    )
    for (table,) in truncate:
        found.setdefault(table.removeprefix("raw."), []).append("TRUNCATE")
    return found


def _score_functions(dsn: str) -> list[str]:
    rows = _query(
        dsn,
        "select proname from pg_proc where pronamespace = 'brain'::regnamespace "
        "and provolatile = 'i' and proparallel = 's' order by proname",
    )
    return [name for (name,) in rows]


def _assert_raw_schema(dsn: str) -> None:
    assert _raw_columns(dsn) == RAW_COLUMNS
    assert _raw_primary_keys(dsn) == RAW_PRIMARY_KEYS
    assert _raw_foreign_keys(dsn) == RAW_FOREIGN_KEYS
    assert _append_only_triggers(dsn) == {
        table: ["DELETE", "UPDATE", "TRUNCATE"] for table in APPEND_ONLY
    }
    assert _score_functions(dsn) == SCORE_FUNCTIONS


def test_create_raw_tables_makes_the_exact_raw_schema(warehouse_dsn: str) -> None:
    _assert_raw_schema(warehouse_dsn)
    identity = _query(
        warehouse_dsn,
        "select is_identity, identity_generation from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'model_events' and column_name = 'event_id'",
    )
    assert identity == [("YES", "ALWAYS")]


# The raw DDL as first released (before the champion registry), to test the upgrade.
_FIRST_RELEASE_DDL = """
create schema raw;
create table raw.ohlcv (
    exchange text not null, symbol text not null, timeframe text not null,
    ts timestamptz not null, open double precision not null, high double precision not null,
    low double precision not null, close double precision not null,
    volume double precision not null, loaded_at timestamptz not null default now(),
    primary key (exchange, symbol, timeframe, ts)
);
create table raw.model_versions (
    version_id text primary key, exchange text not null, symbol text not null,
    timeframe text not null, model_type text not null,
    created_at timestamptz not null default now(), run_id text null, manifest jsonb not null,
    artifact_uri text not null,
    artifact_sha256 text not null check (length(artifact_sha256) = 64),
    feature_set_hash text not null, train_start timestamptz not null,
    train_end timestamptz not null, n_rows integer not null,
    loaded_at timestamptz not null default now()
);
create table raw.model_metrics (
    version_id text not null references raw.model_versions (version_id),
    scope text not null default 'oos', metric text not null, value double precision null,
    window_start timestamptz, window_end timestamptz,
    computed_at timestamptz not null default now(),
    primary key (version_id, scope, metric)
);
create table raw.model_events (
    event_id bigint generated always as identity primary key,
    event_type text not null
        check (event_type in ('promotion', 'rollback', 'manual_promotion', 'manual_rollback')),
    exchange text, symbol text not null, timeframe text, model_type text not null,
    version_id text null, previous_version_id text null,
    champion_score double precision, challenger_score double precision,
    degradation double precision, threshold double precision, reason text, run_id text,
    created_at timestamptz not null default now()
);
"""


def test_create_raw_tables_upgrades_a_first_release_warehouse(
    fresh_dsn: str, tmp_path: Path
) -> None:
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute(_FIRST_RELEASE_DDL)
        conn.execute(
            """
            insert into raw.model_versions (
                version_id, exchange, symbol, timeframe, model_type, manifest, artifact_uri,
                artifact_sha256, feature_set_hash, train_start, train_end, n_rows
            ) values ('old.v', 'binance', 'BTC/USDT', '1h', 'lightgbm', '{}', 'x', %s, 'h',
                      %s, %s, 1)
            """,
            ("0" * 64, T0, T0),
        )
        # raw.quarantine_ohlcv as schema v6 had it (its key had no `landed` yet)
        conn.execute(
            """
            create table raw.quarantine_ohlcv (
                exchange text not null, symbol text not null, timeframe text not null,
                ts timestamptz not null, open double precision null,
                high double precision null, low double precision null,
                close double precision null, volume double precision null,
                loaded_at timestamptz null, expectation text not null, reason text not null,
                severity text not null, run_id text not null,
                quarantined_at timestamptz not null default now(),
                primary key (exchange, symbol, timeframe, ts, expectation)
            );
            insert into raw.quarantine_ohlcv (exchange, symbol, timeframe, ts, expectation,
                                              reason, severity, run_id)
            values ('binance', 'BTC/USDT', '1h', '2025-01-01', 'expect_x', 'r', 'blocking', 'q');
            """
        )
    for _ in range(2):  # the upgrade, then a plain re-run on the upgraded warehouse
        run_dbt(
            ["run-operation", "create_raw_tables"],
            dsn=fresh_dsn,
            project_dir=PROJECT,
            state_dir=tmp_path,
        )
        # the same schema as a fresh warehouse, column order included
        _assert_raw_schema(fresh_dsn)
    rows = _query(
        fresh_dsn, "select version_id, code_version, challenged_version_id from raw.model_versions"
    )
    assert rows == [("old.v", None, None)]
    # the v6 quarantine row is kept, as a copy of a landed candle
    assert _query(fresh_dsn, "select expectation, landed, source from raw.quarantine_ohlcv") == [
        ("expect_x", True, None)
    ]
    with psycopg.connect(fresh_dsn) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("delete from raw.model_versions where version_id = 'old.v'")


def test_create_raw_tables_twice_is_harmless(warehouse_dsn: str, dbt_state: Path) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute(
            "insert into raw.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, "
            "volume) values ('okx', 'SOL/USDT', '1d', %s, 1, 2, 0.5, 1.5, 10)",
            (T0,),
        )
    try:
        result = run_dbt(
            ["run-operation", "create_raw_tables"],
            dsn=warehouse_dsn,
            project_dir=PROJECT,
            state_dir=dbt_state,
        )
        assert result.ok
        _assert_raw_schema(warehouse_dsn)
        rows = _query(warehouse_dsn, "select count(*) from raw.ohlcv where exchange = 'okx'")
        assert rows == [(1,)]
    finally:
        with psycopg.connect(warehouse_dsn) as conn:
            conn.execute("delete from raw.ohlcv where exchange = 'okx'")


def test_raw_defaults_and_checks(warehouse_dsn: str) -> None:
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute(
            """
            insert into raw.model_versions (
                version_id, exchange, symbol, timeframe, model_type, manifest, artifact_uri,
                artifact_sha256, feature_set_hash, train_start, train_end, n_rows
            ) values ('tmp.v', 'binance', 'BTC/USDT', '1h', 'lightgbm', '{}', 'x', %s, 'h',
                      %s, %s, 1)
            """,
            ("0" * 64, T0, T0),
        )
        conn.execute(
            "insert into raw.model_metrics (version_id, metric, value) "
            "values ('tmp.v', 'profit_factor', 'Infinity')"
        )
        scope, value, loaded = conn.execute(
            "select m.scope, m.value, v.loaded_at is not null from raw.model_metrics m "
            "join raw.model_versions v using (version_id) where version_id = 'tmp.v'"
        ).fetchone() or (None, None, None)
        assert (scope, value, loaded) == ("oos", math.inf, True)
        conn.rollback()

        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                """
                insert into raw.model_versions (
                    version_id, exchange, symbol, timeframe, model_type, manifest,
                    artifact_uri, artifact_sha256, feature_set_hash, train_start, train_end,
                    n_rows
                ) values ('tmp.v', 'binance', 'BTC/USDT', '1h', 'lightgbm', '{}', 'x',
                          'not-a-sha', 'h', %s, %s, 1)
                """,
                (T0, T0),
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "insert into raw.model_events (event_type, symbol, model_type) "
                "values ('demotion', 'BTC/USDT', 'lightgbm')"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "insert into raw.model_metrics (version_id, metric, value) "
                "values ('no.such.version', 'sharpe', 1)"
            )
        conn.rollback()


# -------------------------------------------------------------- (b) build, marts


def test_build_passes(built: DbtResult) -> None:
    assert built.ok
    assert re.search(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", built.output), built.output
    assert "deprecat" not in built.output.lower(), built.output


def test_composite_scores_match_the_formula(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        """
        select version_id, sharpe, score_sharpe, score_sortino, score_calmar,
               score_profit_factor, score_hit_ratio, score_max_drawdown, composite_score,
               n_bars, n_rows
        from marts.model_composite_scores
        """,
    )
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == {v.version_id for v in VERSIONS}
    for v in VERSIONS:
        _, sharpe, *scores, composite, n_bars, n_rows = by_id[v.version_id]
        expected = component_scores(v.metrics)
        assert scores == [
            pytest.approx(expected[name], rel=1e-12, abs=1e-15)
            if expected[name] is not None
            else None
            for name in WEIGHTS
        ], v.version_id
        want = composite_score(v.metrics)
        if want is None:  # no evidence, or an undefined component
            assert composite is None, v.version_id
        else:
            assert composite == pytest.approx(want, rel=1e-12, abs=1e-15)
            assert -1.0 <= composite <= 1.0
        assert (n_bars, n_rows) == (720, 3600)
        if component_scores(v.metrics)["sharpe"] is None:  # metric None or NaN
            assert sharpe is None  # NaN in raw, NULL from staging on


def test_infinite_and_undefined_metrics(built: DbtResult, warehouse_dsn: str) -> None:
    no_losses = next(v for v in VERSIONS if v.metrics["profit_factor"] == math.inf)
    undefined = next(v for v in VERSIONS if v.metrics["sortino"] is None)
    rows = _query(
        warehouse_dsn,
        "select version_id, profit_factor, score_profit_factor, score_sortino "
        "from marts.model_composite_scores where version_id in (%s, %s)",
        (no_losses.version_id, undefined.version_id),
    )
    found = {row[0]: row[1:] for row in rows}
    assert found[no_losses.version_id] == (math.inf, 1.0, 1.0)
    assert found[undefined.version_id][2] is None


def test_best_model_per_symbol(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        """
        select exchange, symbol, timeframe, model_type, version_id, composite_score,
               window_start, window_end, n_candidates, n_compared
        from marts.best_model_per_symbol
        order by symbol
        """,
    )
    best = expected_best()
    # the data exercises the rule: on ETH/USDT the pick is not the latest version of its
    # model type (the newer lightgbm lost its challenge, so the older one stays champion)
    eth_pick = best["ETH/USDT"][0]
    assert any(
        v.model_type == eth_pick.model_type and v.trained_at > eth_pick.trained_at
        for v in VERSIONS
        if v.symbol == "ETH/USDT"
    )
    # SOL/USDT has a version but no champion: no pick
    assert "SOL/USDT" in {v.symbol for v in VERSIONS}
    assert [row[1] for row in rows] == sorted(best) == ["BTC/USDT", "ETH/USDT"]
    for exchange, symbol, timeframe, model_type, version_id, composite, *window, n, m in rows:
        want, score = best[symbol]
        assert (exchange, timeframe, n, m) == ("binance", "1h", 2, 2)
        assert (model_type, version_id) == (want.model_type, want.version_id)
        assert composite == pytest.approx(score, rel=1e-12)
        # every score compared is from the newest judged window, generation 1
        assert tuple(window) == Version("", "", symbol, "", T0, {}, generation=1).window


def test_marts_have_enforced_shape(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        """
        select column_name, data_type from information_schema.columns
        where table_schema = 'marts' and table_name = 'best_model_per_symbol'
        order by ordinal_position
        """,
    )
    assert rows == [
        ("exchange", "text"),
        ("symbol", "text"),
        ("timeframe", "text"),
        ("model_type", "text"),
        ("version_id", "text"),
        ("composite_score", "double precision"),
        ("sharpe", "double precision"),
        ("trained_at", "timestamp with time zone"),
        ("window_start", "timestamp with time zone"),
        ("window_end", "timestamp with time zone"),
        ("n_candidates", "integer"),
        ("n_compared", "integer"),
    ]
    rows = _query(
        warehouse_dsn,
        """
        select column_name, data_type, is_nullable from information_schema.columns
        where table_schema = 'marts' and table_name = 'model_champion_history'
        order by ordinal_position
        """,
    )
    assert rows == [
        ("exchange", "text", "NO"),
        ("symbol", "text", "NO"),
        ("timeframe", "text", "NO"),
        ("model_type", "text", "NO"),
        ("version_id", "text", "NO"),
        ("valid_from", "timestamp with time zone", "NO"),
        ("valid_to", "timestamp with time zone", "YES"),
        ("event_type", "text", "NO"),
        ("reason", "text", "YES"),
        ("previous_version_id", "text", "YES"),
        ("is_current", "boolean", "NO"),
        ("event_id", "bigint", "NO"),
    ]


def test_champion_history_follows_the_events(built: DbtResult, warehouse_dsn: str) -> None:
    rows = _query(
        warehouse_dsn,
        "select symbol, model_type, version_id, valid_from, valid_to, event_type, is_current "
        "from marts.model_champion_history order by symbol, model_type, valid_from",
    )
    expected = []
    for (symbol, model_type), _ in sorted(champions().items()):
        changes = [
            e
            for e in sorted(EVENTS, key=lambda e: e.at)
            if (e.version.symbol, e.version.model_type) == (symbol, model_type)
            and e.event_type != "rollback"
        ]
        for e, following in zip(changes, [*changes[1:], None], strict=True):
            valid_to = following.at if following else None
            period = (e.version.version_id, e.at, valid_to, e.event_type, valid_to is None)
            expected.append((symbol, model_type, *period))
    assert rows == expected
    # the refused challengers never were champions
    refused = {e.version.version_id for e in EVENTS if e.event_type == "rollback"}
    assert refused
    assert refused.isdisjoint(row[2] for row in rows)


def test_source_freshness_passes_on_fresh_rows(
    built: DbtResult, warehouse_dsn: str, dbt_state: Path
) -> None:
    result = run_dbt(
        ["source", "freshness", "--select", "source:raw"],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
    )
    assert "PASS freshness of raw.ohlcv" in result.output
    assert "PASS freshness of raw.model_versions" in result.output
    # a market table nothing was ever collected into is stale, not silently fine
    empty = run_dbt(
        ["source", "freshness", "--select", "source:market.funding_rates"],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
        check=False,
    )
    assert not empty.ok and "ERROR STALE freshness of market.funding_rates" in empty.output


# --------------------------------------------------------------- (c) unit tests


def test_unit_tests_pass(built: DbtResult, warehouse_dsn: str, dbt_state: Path) -> None:
    result = run_dbt(
        ["test", "--select", "test_type:unit"],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
    )
    for name in UNIT_TESTS:
        assert re.search(rf"PASS {re.escape(name)}\b", result.output), name
    # dbt build ran them too, before building each model
    for name in UNIT_TESTS:
        assert re.search(rf"PASS {re.escape(name)}\b", built.output), name


def test_unit_tests_pin_the_weights(built: DbtResult, warehouse_dsn: str, dbt_state: Path) -> None:
    other = "{composite_weights: {sharpe: 0.5, sortino: 0.1, calmar: 0.1, profit_factor: 0.1, hit_ratio: 0.1, max_drawdown: 0.1}}"  # noqa: E501
    # Sharpe 2 and every other component 0 (Sortino, Calmar 0, profit factor 1, hit
    # ratio 0.5, drawdown -0.5), with evidence: the Sharpe weight times tanh(1)
    probe = "select brain.composite_score(2, 0, 0, 1, 0.5, -0.5, 20, 0.5)"
    assert _query(warehouse_dsn, probe) == [(pytest.approx(0.3 * math.tanh(1)),)]
    try:
        with pytest.raises(WarehouseError, match="composite_score_formula"):
            run_dbt(
                ["test", "--select", "test_type:unit", "--vars", other],
                dsn=warehouse_dsn,
                project_dir=PROJECT,
                state_dir=dbt_state,
            )
        # every dbt invocation redefines the functions from the weights it was given
        # (hence README's warning against --vars composite_weights on the warehouse)
        assert _query(warehouse_dsn, probe) == [(pytest.approx(0.5 * math.tanh(1)),)]
    finally:
        run_dbt(
            ["run-operation", "create_raw_tables"],
            dsn=warehouse_dsn,
            project_dir=PROJECT,
            state_dir=dbt_state,
        )
    assert _query(warehouse_dsn, probe) == [(pytest.approx(0.3 * math.tanh(1)),)]


def test_weights_must_sum_to_one(built: DbtResult, warehouse_dsn: str, dbt_state: Path) -> None:
    bad = "{composite_weights: {sharpe: 0.9, sortino: 0.15, calmar: 0.15, profit_factor: 0.15, hit_ratio: 0.1, max_drawdown: 0.15}}"  # noqa: E501
    result = run_dbt(
        ["compile", "--select", "model_composite_scores", "--vars", bad],
        dsn=warehouse_dsn,
        project_dir=PROJECT,
        state_dir=dbt_state,
        check=False,
    )
    assert not result.ok
    assert "var composite_weights must sum to 1" in result.output


# ------------------------------------------------------------ (d) failures raise


def test_out_of_range_metric_fails_the_build(
    built: DbtResult, warehouse_dsn: str, dbt_state: Path
) -> None:
    bad = Version(
        "btc-usdt.lightgbm.20250310T000000.bad000",
        "binance",
        "BTC/USDT",
        "lightgbm",
        T0 + timedelta(days=9),
        {"sharpe": 1.0, "hit_ratio": 1.7},  # a hit ratio above 1: garbage from upstream
    )
    with psycopg.connect(warehouse_dsn) as conn:
        _insert_versions(conn, [bad])
    try:
        with pytest.raises(WarehouseError, match="accepted_range_model_composite_scores"):
            run_dbt(["build"], dsn=warehouse_dsn, project_dir=PROJECT, state_dir=dbt_state)
    finally:
        _purge(
            warehouse_dsn,
            ("delete from raw.model_metrics where version_id = %s", (bad.version_id,)),
            ("delete from raw.model_versions where version_id = %s", (bad.version_id,)),
        )


def test_orphan_metric_fails_the_relationships_test(
    built: DbtResult, warehouse_dsn: str, dbt_state: Path
) -> None:
    # The foreign key stops such a row at insert time; replica mode (superuser) skips
    # it, as a bulk load with triggers off would, so the dbt test has something to find.
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute(
            "insert into raw.model_metrics (version_id, metric, value) "
            "values ('no.such.version', 'sharpe', 1)"
        )
    try:
        with pytest.raises(WarehouseError, match="relationships_raw_model_metrics_version_id"):
            run_dbt(
                ["test", "--select", "source:raw.model_metrics"],
                dsn=warehouse_dsn,
                project_dir=PROJECT,
                state_dir=dbt_state,
            )
    finally:
        _purge(
            warehouse_dsn,
            ("delete from raw.model_metrics where version_id = 'no.such.version'", ()),
        )


def test_contract_drift_fails_the_build(
    built: DbtResult, warehouse_dsn: str, tmp_path: Path
) -> None:
    project = tmp_path / "dbt_brain"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    count = "select count(*), max(composite_score) from marts.model_composite_scores"
    before = _query(warehouse_dsn, count)
    model = project / "models" / "marts" / "model_composite_scores.sql"
    sql = model.read_text()
    assert "versions.n_rows,\n" in sql
    model.write_text(sql.replace("versions.n_rows,\n", "versions.n_rows::bigint as n_rows,\n"))
    with pytest.raises(WarehouseError, match="model_composite_scores"):
        run_dbt(
            ["run", "--select", "model_composite_scores"],
            dsn=warehouse_dsn,
            project_dir=project,
            state_dir=tmp_path / "state",
        )
    # the failed run left the mart as it was
    assert _query(warehouse_dsn, count) == before
