"""brain quality and brain features: data checks and the importance marts."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brain_lib.cli._app import (
    _console,
    _prepare,
    _settings,
    _split,
    _working,
    features_app,
    quality_app,
)

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------ quality


@quality_app.command("check")
def quality_check(
    table: Annotated[
        str | None,
        typer.Option(
            help="ohlcv, funding_rates, open_interest, liquidations or model_metrics "
            "(default: all)."
        ),
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe (candles).")] = None,
    start: Annotated[datetime | None, typer.Option(help="Rows from (UTC, inclusive).")] = None,
    end: Annotated[datetime | None, typer.Option(help="Rows before (UTC, exclusive).")] = None,
) -> None:
    """Run the suites by hand: record the results, quarantine failing rows, build Data Docs.

    Exit 1 when a blocking expectation failed.
    """
    from brain_lib.quality import data_docs_dir, run_quality_checks

    settings = _settings()
    dsn = _prepare(settings)
    with _working("Great Expectations: running the suites and building Data Docs"):
        reports = run_quality_checks(
            dsn,
            tables=[table] if table else None,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            start=start,
            end=end,
            docs_dir=data_docs_dir(home=settings.home),
        )
    console = _console()
    for report in reports:
        colour = "green" if report.success else ("yellow" if report.ok else "red")
        console.print(report.describe(), style=colour, highlight=False)
    docs = next((r.docs_index for r in reports if r.docs_index), None)
    if docs:
        console.print(f"Data Docs: {docs}")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


# ----------------------------------------------------------------------- features


def _marts_table(dsn: str, sql: str, params: tuple[Any, ...], title: str) -> Any:
    """A rich table of a mart query, or a clear error when the mart is not built yet."""
    import psycopg
    from rich.table import Table

    from brain_lib.errors import WarehouseError
    from brain_lib.warehouse import connect

    with connect(dsn) as conn:
        try:
            cur = conn.execute(sql, params)
        except psycopg.errors.UndefinedTable:
            raise WarehouseError(
                f"{title}: the mart is not built yet; run brain features analyze"
            ) from None
        names = [d.name for d in cur.description or []]
        rows = cur.fetchall()
    table = Table(title=title)
    for name in names:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(
            *("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row)
        )
    return table, rows


@features_app.command("analyze")
def features_analyze(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every champion).")
    ] = None,
    window_days: Annotated[int, typer.Option(min=1, help="Recent window in days.")] = 30,
    end: Annotated[datetime | None, typer.Option(help="End of the recent window (UTC).")] = None,
) -> None:
    """Run nightly-feature-analysis once: recompute importance, build the shift and drift marts."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = _settings()
    _prepare(settings)  # fail fast on an unreachable warehouse, before Prefect starts
    from flows.nightly_feature_analysis import nightly_feature_analysis
    from flows.runner import run_flow

    with _working("nightly-feature-analysis: importance on recent bars, shifts and drift"):
        state = run_flow(
            nightly_feature_analysis,
            symbols=_split(symbols, "--symbols"),
            window_days=window_days,
            end=end,
        )
    data = state.result(raise_on_failure=False)
    if not isinstance(data, dict):
        from brain_lib.errors import BrainError

        raise BrainError(f"nightly-feature-analysis ended {state.name}: {state.message or data}")
    console = _console()
    console.print(f"nightly-feature-analysis: {state.name} ({state.message})")
    for row in data.get("shifts", []):
        if row["shift_flag"]:
            console.print(
                f"{row['symbol']} {row['model_type']} {row['importance_method']}: "
                f"shift: {row['shift_reason']}",
                style="yellow",
            )
    for m in data.get("marked", []):
        console.print(f"{m['symbol']} marked for retraining", style="yellow")
    for f in data.get("failed", []):
        console.print(f"{f['symbol']} {f['model_type']}: {f['error']}", style="red")
    if not state.is_completed():
        raise typer.Exit(1)


@features_app.command("top")
def features_top(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT.")],
    method: Annotated[str, typer.Option(help="shap, permutation or correlation.")] = "shap",
    n: Annotated[int, typer.Option(min=1, help="How many features.")] = 10,
    model_type: Annotated[str | None, typer.Option(help="Champion of this model type.")] = None,
) -> None:
    """The most important features of the symbol's champion (latest computation)."""
    from rich.table import Table

    from brain_lib.brain import BrainLibrary
    from brain_lib.errors import ConfigError

    if method not in ("shap", "permutation", "correlation"):
        raise ConfigError(f"unknown method {method!r}: use shap, permutation or correlation")
    settings = _settings()
    dsn = _prepare(settings)
    with BrainLibrary(dsn=dsn) as lib:
        rows = lib.get_top_features(symbol, n=n, method=method, model_type=model_type)
    table = Table(title=f"{symbol}: top {n} features by {method} ({rows[0]['kind']} importance)")
    for col in ("rank", "feature", "importance", "normalised", "computed_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["rank"]),
            r["feature"],
            f"{r['importance']:.6g}",
            f"{r['normalised']:.4f}",
            f"{r['computed_at']:%Y-%m-%d %H:%M}",
        )
    _console().print(table)


@features_app.command("shifts")
def features_shifts(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    flagged: Annotated[bool, typer.Option(help="Only comparisons that shifted.")] = False,
) -> None:
    """Latest training-vs-recent comparison of every champion (marts.feature_shifts)."""
    dsn = _prepare(_settings())
    table, _ = _marts_table(
        dsn,
        """
        select symbol, model_type, importance_method as method, version_id,
               computed_at::timestamp(0) as computed_at, rank_correlation, top_k_jaccard,
               moved_features, shift_flag, symbol_shift_flag
        from marts.feature_shifts
        where is_latest and is_champion and (%s::text is null or symbol = %s)
          and (not %s or shift_flag)
        order by symbol, model_type, importance_method
        """,
        (symbol, symbol, flagged),
        "marts.feature_shifts (latest, champions)",
    )
    _console().print(table)


@features_app.command("drift")
def features_drift(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Largest N PSIs.")] = 20,
) -> None:
    """Features whose distribution moved most, by PSI (marts.feature_drift)."""
    dsn = _prepare(_settings())
    table, _ = _marts_table(
        dsn,
        """
        select d.symbol, d.model_type, d.feature_name as feature, d.psi, d.drift_level,
               d.train_rows, d.recent_rows
        from marts.feature_drift d
        join raw.model_champions c on c.version_id = d.version_id
        where d.is_latest and d.psi is not null and (%s::text is null or d.symbol = %s)
        order by d.psi desc limit %s
        """,
        (symbol, symbol, limit),
        "marts.feature_drift (latest, champions)",
    )
    _console().print(table)
