"""Brain's domain rules as small Great Expectations classes, each with its defaults.

Every rule is an :class:`SqlRule`: an ``UnexpectedRowsExpectation`` whose query is built
from the rule's own fields (its bounds) and selects the rows of the batch that break the
rule. The expectation succeeds when no row does. Three reasons for SQL rules rather than
GX's column-map expectations:

- The SQL runs in PostgreSQL, over the batch's query (``{batch}``), one statement per
  rule, and a rule only asks GX for the count of its rows (``metric_dependencies``
  below): no sample rows, no column reflection. GX reflects the columns of a query
  batch by running the whole query and fetching every row (~1 s per million rows), and
  every column-map expectation asks for that.
- Window rules (gaps, moves between bars, two candles in one bar) need ``lag``/``lead``
  over each series, which no built-in expectation expresses.
- Quarantine is exact: ``brain_lib.quality.quarantine`` runs the very query GX ran, with
  the same batch, to copy the failing rows. The rows quarantined are the rows counted.

A rule's query is a pure function of its fields (``violation_query``), rebuilt whenever
the expectation is constructed, including when GX reloads it from a suite, so a query
can never disagree with its bounds.

Writing rule SQL: ``{batch}`` stands for the batch (GX substitutes ``(<batch query>) AS
subselect``); never alias it and never write ``JOIN`` (GX then substitutes it without an
alias); no other braces (the query goes through ``str.format``) and no ``%`` (the
quarantine statement goes through psycopg with parameters) in a rule's own text.
"""

from __future__ import annotations

from typing import Any, ClassVar

import great_expectations.expectations as gxe
from great_expectations.compatibility import pydantic
from great_expectations.expectations.metadata_types import FailureSeverity

from expectations.settings import QualitySettings, Severity

__all__ = [
    "FIXED_BARS",
    "ExpectCandleHighAtTop",
    "ExpectCandleLowAtBottom",
    "ExpectCandleMoveWithin",
    "ExpectCandleNotASpike",
    "ExpectCandlePricesPlausible",
    "ExpectCandlePricesPositive",
    "ExpectCandleTsAligned",
    "ExpectCandleTsInRange",
    "ExpectCandleVolumeNonNegative",
    "ExpectFundingRateWithin",
    "ExpectLiquidationNoDuplicates",
    "ExpectLiquidationNotInFuture",
    "ExpectLiquidationNotionalNonNegative",
    "ExpectLiquidationPricePositive",
    "ExpectLiquidationQuantityPositive",
    "ExpectLiquidationSideKnown",
    "ExpectMetricPlausible",
    "ExpectMetricValueFinite",
    "ExpectMetricWithinDefinition",
    "ExpectNoCandleGapLongerThan",
    "ExpectOneCandlePerBar",
    "ExpectOpenInterestNonNegative",
    "SqlRule",
    "bar_length_sql",
    "bar_start_sql",
    "make_rule",
    "severity_label",
]

# ---------------------------------------------------------------------- bar grid SQL

# ccxt timeframes with a fixed length, most common first (the CASE stops at the first
# match). '1M' (a calendar month) has no fixed length: it is aligned to the first of the
# month, and gap rules skip it.
FIXED_BARS: dict[str, str] = {
    "1h": "1 hour",
    "1m": "1 minute",
    "5m": "5 minutes",
    "15m": "15 minutes",
    "1d": "1 day",
    "4h": "4 hours",
    "30m": "30 minutes",
    "3m": "3 minutes",
    "2h": "2 hours",
    "6h": "6 hours",
    "8h": "8 hours",
    "12h": "12 hours",
    "3d": "3 days",
    "1w": "7 days",
    "1s": "1 second",
}
_EPOCH = "timestamptz '1970-01-01 00:00:00+00'"
_MONDAY = "timestamptz '1970-01-05 00:00:00+00'"  # weekly bars open on Monday 00:00 UTC
_SERIES = "PARTITION BY exchange, symbol, timeframe ORDER BY ts"
_FINITE = "'Infinity'::float8"  # x < Infinity is false for +Infinity and NaN (PG sorts NaN last)


def bar_length_sql(timeframe: str = "timeframe") -> str:
    """SQL: the bar length of ``timeframe`` as an interval; NULL for '1M' and unknown ones."""
    whens = " ".join(f"WHEN '{tf}' THEN interval '{length}'" for tf, length in FIXED_BARS.items())
    # any other <n>m/h/d/w that brain_lib.names accepts: n times the unit
    units = (
        f"CASE right({timeframe}, 1) WHEN 'm' THEN interval '1 minute' "
        f"WHEN 'h' THEN interval '1 hour' WHEN 'd' THEN interval '1 day' "
        f"ELSE interval '7 days' END"
    )
    other = (
        f"CASE WHEN {timeframe} ~ '^[1-9][0-9]?[0-9]?[0-9]?[mhdw]$' "
        f"THEN substring({timeframe} from '^[0-9]+')::int * ({units}) END"
    )
    return f"(CASE {timeframe} {whens} ELSE {other} END)"


def bar_start_sql(ts: str = "ts", timeframe: str = "timeframe") -> str:
    """SQL: the open time of the bar that contains ``ts`` (UTC grid).

    Fixed-length bars are binned from 1970-01-01 00:00 UTC (``date_bin``), weekly bars
    from a Monday, monthly bars by calendar month. NULL for an unknown timeframe.
    """
    return (
        f"(CASE {timeframe} WHEN '1M' THEN date_trunc('month', {ts}, 'UTC') "
        f"WHEN '1w' THEN date_bin(interval '7 days', {ts}, {_MONDAY}) "
        f"ELSE date_bin({bar_length_sql(timeframe)}, {ts}, {_EPOCH}) END)"
    )


def _select_where(violation: str) -> str:
    return f"SELECT * FROM {{batch}} WHERE {violation}"


def _select_series_where(window_columns: str, violation: str) -> str:
    """Rows of each (exchange, symbol, timeframe) series in ts order, with ``window_columns``
    computed over ``w``, that satisfy ``violation``."""
    return (
        f"SELECT * FROM (SELECT *, {window_columns} FROM {{batch}} WINDOW w AS ({_SERIES})) "
        f"AS series WHERE {violation}"
    )


def _sql_number(value: float) -> str:
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"a rule bound must be a finite number (got {value!r})")
    return repr(number)


def _sql_text_list(values: list[str]) -> str:
    for value in values:
        if not value.replace("_", "").isalnum():
            raise ValueError(f"not a plain name: {value!r}")
    return ", ".join(f"'{value}'" for value in values)


# ----------------------------------------------------------------------------- base


class SqlRule(gxe.UnexpectedRowsExpectation):
    """A domain rule: the rows of the batch that break it are its unexpected rows.

    Subclasses set ``violation_query`` (the SQL, from the rule's fields), ``summary``
    (a one-line description; ``{field}`` placeholders are filled from the fields),
    ``default_severity`` and ``row_level`` (False when the rows the query returns are
    not themselves wrong, e.g. the candle after a gap: such rows are not quarantined).
    """

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    row_level: ClassVar[bool] = True
    default_severity: ClassVar[Severity] = "blocking"
    summary: ClassVar[str] = ""
    column: ClassVar[str | None] = None

    unexpected_rows_query: str = ""

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        """The unexpected-rows query for these field values."""
        raise NotImplementedError(f"{cls.__name__} defines no violation_query")

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        return {name: field.default for name, field in cls.__fields__.items()}

    @classmethod
    def describe(cls, params: dict[str, Any] | None = None) -> str:
        """The summary with the bounds filled in."""
        values = {**cls.field_defaults(), **(params or {})}
        shown = {
            k: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
            for k, v in values.items()
        }
        return cls.summary.format(**shown)

    @pydantic.root_validator(pre=True)
    def _build_query(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        values["unexpected_rows_query"] = cls.violation_query({**cls.field_defaults(), **values})
        return values

    def _validate(
        self,
        metrics: dict[str, Any],
        runtime_configuration: dict[str, Any] | None = None,
        execution_engine: Any = None,
    ) -> dict[str, Any]:
        # the count is the observed value, as in UnexpectedRowsExpectation: a result
        # with "unexpected_count" makes Data Docs look for percentages it cannot have
        count = int(metrics["unexpected_rows_query.row_count"])
        return {"success": count == 0, "result": {"observed_value": count}}


def severity_label(severity: FailureSeverity | str | None) -> Severity:
    """GX's failure severity as Brain's: critical → blocking, anything else → warning."""
    value = severity.value if isinstance(severity, FailureSeverity) else severity
    return "blocking" if value in (None, FailureSeverity.CRITICAL.value) else "warning"


def make_rule(rule: type[SqlRule], settings: QualitySettings, **params: Any) -> SqlRule:
    """An instance of ``rule`` with ``params`` and the configured severity.

    Severity, description and meta are always passed explicitly: GX drops field values
    equal to a class default when it stores an expectation, and reloads a missing
    severity as critical.
    """
    label = settings.severity.get(rule.expectation_type, rule.default_severity)
    description = rule.describe(params)
    row_level = rule.row_level and (label == "blocking" or settings.quarantine_warnings)
    return rule(
        severity=FailureSeverity.CRITICAL if label == "blocking" else FailureSeverity.WARNING,
        description=description,
        meta={"brain_severity": label, "row_level": row_level, "reason": description},
        **params,
    )


# ---------------------------------------------------------------------------- ohlcv


class ExpectCandleHighAtTop(SqlRule):
    """high >= max(open, close)."""

    summary: ClassVar[str] = "high is at least max(open, close)"
    column: ClassVar[str | None] = "high"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where("(high >= greatest(open, close)) IS NOT TRUE")


class ExpectCandleLowAtBottom(SqlRule):
    """low <= min(open, close)."""

    summary: ClassVar[str] = "low is at most min(open, close)"
    column: ClassVar[str | None] = "low"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where("(low <= least(open, close)) IS NOT TRUE")


class ExpectCandlePricesPositive(SqlRule):
    """open, high, low and close finite and > 0."""

    summary: ClassVar[str] = "open, high, low and close are finite and above 0"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where(
            f"(least(open, high, low, close) > 0 "
            f"AND greatest(open, high, low, close) < {_FINITE}) IS NOT TRUE"
        )


class ExpectCandleVolumeNonNegative(SqlRule):
    """volume finite and >= 0."""

    summary: ClassVar[str] = "volume is finite and not negative"
    column: ClassVar[str | None] = "volume"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where(f"(volume >= 0 AND volume < {_FINITE}) IS NOT TRUE")


class ExpectCandleTsAligned(SqlRule):
    """ts is the open time of a bar of its timeframe (UTC grid; unknown timeframes fail)."""

    summary: ClassVar[str] = "ts is the open time of a bar of its timeframe (UTC grid)"
    column: ClassVar[str | None] = "ts"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where(f"ts IS DISTINCT FROM {bar_start_sql()}")


class ExpectOneCandlePerBar(SqlRule):
    """At most one candle per (exchange, symbol, timeframe, bar).

    This is the key (exchange, symbol, timeframe, ts) made unique per *bar*. raw.ohlcv's
    primary key already makes the literal key unique, so that check alone could never
    fail there; two rows inside one bar (a close-time stamp beside an open-time stamp,
    millisecond jitter) pass the primary key and still mean two candles for one bar.
    On a relation without the key (a landing table, a copy, a view) it catches literal
    duplicates as well. All rows of such a bar are unexpected: which one is right is
    unknowable.
    """

    summary: ClassVar[str] = "one candle per bar: (exchange, symbol, timeframe, bar of ts) unique"
    column: ClassVar[str | None] = "ts"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        length = f"coalesce({bar_length_sql()}, interval '31 days')"
        here = bar_start_sql()
        return _select_series_where(
            "lag(ts) OVER w AS prev_ts, lead(ts) OVER w AS next_ts",
            f"(ts - prev_ts < {length} AND {here} = {bar_start_sql('prev_ts')}) "
            f"OR (next_ts - ts < {length} AND {here} = {bar_start_sql('next_ts')})",
        )


class ExpectNoCandleGapLongerThan(SqlRule):
    """No more than ``max_gap_bars`` missing bars between consecutive candles of a series.

    Not row-level: the candle after a gap is returned to show where the gap is, and is
    not quarantined. Only gaps inside the batch are seen; '1M' bars are skipped.
    """

    row_level: ClassVar[bool] = False
    default_severity: ClassVar[Severity] = "warning"
    summary: ClassVar[str] = "at most {max_gap_bars} missing bars between consecutive candles"
    column: ClassVar[str | None] = "ts"

    max_gap_bars: int = 3

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        bars = int(params["max_gap_bars"])
        if bars < 0:
            raise ValueError("max_gap_bars must be >= 0")
        return _select_series_where(
            "lag(ts) OVER w AS prev_ts",
            f"ts - prev_ts > {bar_length_sql()} * {bars + 1}",
        )


class ExpectCandleMoveWithin(SqlRule):
    """|close / previous close - 1| <= ``max_bar_move`` (previous candle of the series)."""

    default_severity: ClassVar[Severity] = "warning"
    summary: ClassVar[str] = "|close / previous close - 1| is at most {max_bar_move}"
    column: ClassVar[str | None] = "close"

    max_bar_move: float = 0.5

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        bound = _sql_number(params["max_bar_move"])
        return _select_series_where(
            "lag(close) OVER w AS prev_close",
            f"abs(close / nullif(prev_close, 0) - 1) > {bound}",
        )


class ExpectCandlePricesPlausible(SqlRule):
    """high <= ``max_price``: no quote currency prices a unit above it (1e300 is a typo
    or an overflow, not a price)."""

    summary: ClassVar[str] = "high is at most {max_price}"
    column: ClassVar[str | None] = "high"

    max_price: float = 1e9

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        bound = _sql_number(params["max_price"])
        return _select_where(f"high > {bound}")


class ExpectCandleTsInRange(SqlRule):
    """``earliest`` <= ts <= now + ``max_future_hours``: before the first crypto
    exchange or in the future means epoch seconds read as milliseconds (or the
    reverse), or a typo."""

    summary: ClassVar[str] = "ts is between {earliest} and {max_future_hours} hours from now"
    column: ClassVar[str | None] = "ts"

    earliest: str = "2009-01-03"
    max_future_hours: float = 24.0

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        import datetime as dt

        earliest = dt.date.fromisoformat(str(params["earliest"])).isoformat()
        hours = _sql_number(params["max_future_hours"])
        return _select_where(
            f"(ts >= timestamptz '{earliest} 00:00:00+00' "
            f"AND ts <= now() + {hours} * interval '1 hour') IS NOT TRUE"
        )


class ExpectCandleNotASpike(SqlRule):
    """No isolated spike: high is at most ``max_spike_factor`` times, and low at least
    1 / ``max_spike_factor`` of, the closes of the candles before and after it (the
    one neighbour at either end of the batch).

    Both neighbours must disagree, so a real level shift flags nothing, and a single
    bad print flags only itself (its neighbours see one normal close on their other
    side). Blocking: a move of 10x and back within a bar is a bad tick."""

    summary: ClassVar[str] = (
        "high at most {max_spike_factor}x, low at least 1/{max_spike_factor} of the "
        "neighbouring closes"
    )
    column: ClassVar[str | None] = "high"

    max_spike_factor: float = 10.0

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        factor = float(params["max_spike_factor"])
        if not factor > 1:
            raise ValueError("max_spike_factor must be above 1")
        bound = _sql_number(factor)
        return _select_series_where(
            "lag(close) OVER w AS prev_close, lead(close) OVER w AS next_close",
            # a price at or below 0 is expect_candle_prices_positive's, not a spike
            f"low > 0 AND (high > {bound} * greatest(coalesce(prev_close, next_close), "
            f"coalesce(next_close, prev_close)) "
            f"OR low * {bound} < least(coalesce(prev_close, next_close), "
            f"coalesce(next_close, prev_close)))",
        )


# ------------------------------------------------------------------- market extras


class ExpectFundingRateWithin(SqlRule):
    """|funding_rate| <= ``max_abs_rate`` (and a number)."""

    summary: ClassVar[str] = "|funding_rate| is at most {max_abs_rate}"
    column: ClassVar[str | None] = "funding_rate"

    max_abs_rate: float = 0.03

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        bound = _sql_number(params["max_abs_rate"])
        return _select_where(f"(abs(funding_rate) <= {bound}) IS NOT TRUE")


class ExpectOpenInterestNonNegative(SqlRule):
    """open_interest_amount and open_interest_value >= 0 and finite (NULL allowed)."""

    summary: ClassVar[str] = "open interest (amount and value) is finite and not negative"
    column: ClassVar[str | None] = "open_interest_amount"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        checks = " AND ".join(
            f"({col} IS NULL OR ({col} >= 0 AND {col} < {_FINITE}))"
            for col in ("open_interest_amount", "open_interest_value")
        )
        return _select_where(f"({checks}) IS NOT TRUE")


class ExpectLiquidationSideKnown(SqlRule):
    """side in {long, short}."""

    summary: ClassVar[str] = "side is 'long' or 'short'"
    column: ClassVar[str | None] = "side"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where("(side IN ('long', 'short')) IS NOT TRUE")


class ExpectLiquidationQuantityPositive(SqlRule):
    """quantity finite and > 0."""

    summary: ClassVar[str] = "quantity is finite and above 0"
    column: ClassVar[str | None] = "quantity"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where(f"(quantity > 0 AND quantity < {_FINITE}) IS NOT TRUE")


class ExpectLiquidationPricePositive(SqlRule):
    """price finite and > 0."""

    summary: ClassVar[str] = "price is finite and above 0"
    column: ClassVar[str | None] = "price"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where(f"(price > 0 AND price < {_FINITE}) IS NOT TRUE")


class ExpectLiquidationNotionalNonNegative(SqlRule):
    """notional finite and >= 0 when given (NULL allowed: staging then uses price x
    quantity). The hourly liquidation features sum it as given, so one negative or
    infinite notional would skew every window it falls in."""

    summary: ClassVar[str] = "notional, when given, is finite and not negative"
    column: ClassVar[str | None] = "notional"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where(
            f"(notional IS NULL OR (notional >= 0 AND notional < {_FINITE})) IS NOT TRUE"
        )


class ExpectLiquidationNotInFuture(SqlRule):
    """ts <= loaded_at + ``max_clock_skew_s``: stamped after it was stored means a clock
    far off or a unit mix-up. Against loaded_at, not now(), so a check run later gives
    the same answer."""

    summary: ClassVar[str] = "ts is at most {max_clock_skew_s} s after it was stored"
    column: ClassVar[str | None] = "ts"

    max_clock_skew_s: float = 5.0

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        seconds = _sql_number(params["max_clock_skew_s"])
        return _select_where(f"(ts <= loaded_at + {seconds} * interval '1 second') IS NOT TRUE")


class ExpectLiquidationNoDuplicates(SqlRule):
    """No liquidation stored twice under two keys: a row with the same exchange,
    symbol, ts, side, price and quantity as a row of the batch with a smaller
    liquidation_key fails (the copy with the smallest key stays). Keys compare
    byte-wise (``COLLATE "C"``), so which copy stays does not depend on the database's
    locale."""

    summary: ClassVar[str] = "no two rows with the same time, side, price and quantity"
    column: ClassVar[str | None] = "liquidation_key"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return (
            "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY exchange, symbol, ts, "
            'side, price, quantity ORDER BY liquidation_key COLLATE "C") AS copy '
            "FROM {batch}) AS rows WHERE copy > 1"
        )


# ----------------------------------------------------------------- model metrics

# NULL and NaN mean "undefined" (raw.model_metrics); the rules below leave them alone.
_DEFINED = "value IS NOT NULL AND value <> 'NaN'::float8"


class ExpectMetricValueFinite(SqlRule):
    """Metric values are finite, except +Infinity where it has a meaning.

    Sortino (no downside), profit factor (no losing bar) and Calmar (no drawdown) may be
    +Infinity; nothing may be -Infinity.
    """

    summary: ClassVar[str] = "metric values are finite (+Infinity only for {may_be_infinite})"
    column: ClassVar[str | None] = "value"

    may_be_infinite: tuple[str, ...] = ("sortino", "profit_factor", "calmar")

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        allowed = list(params["may_be_infinite"])
        exempt = (
            f" AND NOT (value = 'Infinity'::float8 AND metric IN ({_sql_text_list(allowed)}))"
            if allowed
            else ""
        )
        return _select_where(f"value IN ('Infinity'::float8, '-Infinity'::float8){exempt}")


class ExpectMetricWithinDefinition(SqlRule):
    """What the definitions allow (brain_lib.metrics): hit_ratio, exposure, psr and dsr
    in [0, 1]; max_drawdown and buy_hold_max_drawdown in [-1, 0]; profit_factor,
    turnover_per_bar and round_trips >= 0."""

    summary: ClassVar[str] = (
        "hit_ratio, exposure, psr, dsr in [0, 1], max drawdowns in [-1, 0], "
        "profit_factor, turnover_per_bar, round_trips >= 0 (when defined)"
    )
    column: ClassVar[str | None] = "value"

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        return _select_where(
            f"{_DEFINED} AND ("
            "(metric IN ('hit_ratio', 'exposure', 'psr', 'dsr') AND NOT (value BETWEEN 0 AND 1)) "
            "OR (metric IN ('max_drawdown', 'buy_hold_max_drawdown') "
            "AND NOT (value BETWEEN -1 AND 0)) "
            "OR (metric IN ('profit_factor', 'turnover_per_bar', 'round_trips') AND value < 0))"
        )


class ExpectMetricPlausible(SqlRule):
    """|sharpe| <= ``max_abs_sharpe`` and finite |sortino| <= ``max_abs_sortino``: larger
    out-of-sample ratios usually mean look-ahead or a tiny sample."""

    default_severity: ClassVar[Severity] = "warning"
    summary: ClassVar[str] = (
        "|sharpe| is at most {max_abs_sharpe} and a finite |sortino| at most {max_abs_sortino}"
    )
    column: ClassVar[str | None] = "value"

    max_abs_sharpe: float = 10.0
    max_abs_sortino: float = 20.0

    @classmethod
    def violation_query(cls, params: dict[str, Any]) -> str:
        sharpe = _sql_number(params["max_abs_sharpe"])
        sortino = _sql_number(params["max_abs_sortino"])
        return _select_where(
            f"{_DEFINED} AND ((metric = 'sharpe' AND abs(value) > {sharpe}) "
            f"OR (metric = 'sortino' AND abs(value) > {sortino} AND abs(value) < {_FINITE}))"
        )
