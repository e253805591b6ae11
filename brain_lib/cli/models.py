"""brain models: versions, champions, promotion and rollback."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brain_lib.cli._app import (
    _console,
    _prepare,
    _settings,
    models_app,
)

if TYPE_CHECKING:
    from brain_lib.config import Settings


# ------------------------------------------------------------------------- models


def _rebuild_champion_marts(dsn: str, settings: Settings) -> None:
    from brain_lib.dbt import run_dbt

    run_dbt(
        ["build", "--select", "model_champion_history", "best_model_per_symbol"],
        dsn=dsn,
        project_dir=settings.dbt_dir,
        state_dir=settings.home / "dbt",
    )


@models_app.command("list")
def models_list(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N versions.")] = 50,
) -> None:
    """Versions, newest first, with their composite score; * marks a champion."""
    from rich.table import Table

    from brain_lib.errors import NoModelError
    from brain_lib.registry import COMPOSITE_OF_METRICS_SQL
    from brain_lib.warehouse import connect

    dsn = _prepare(_settings())
    with connect(dsn) as conn:
        rows = conn.execute(
            f"""
            select v.version_id, v.symbol, v.model_type, v.created_at,
                   {COMPOSITE_OF_METRICS_SQL},
                   max(m.value) filter (where m.metric = 'sharpe'),
                   bool_or(c.version_id is not null)
            from raw.model_versions v
            left join raw.model_metrics m on m.version_id = v.version_id and m.scope = 'oos'
            left join raw.model_champions c on c.version_id = v.version_id
            where %s::text is null or v.symbol = %s
            group by v.version_id order by v.created_at desc, v.version_id desc limit %s
            """,
            (symbol, symbol, limit),
        ).fetchall()
    if not rows:
        raise NoModelError(f"no model versions{' for ' + symbol if symbol else ''}")
    table = Table(title="model versions (* = champion)")
    for col in ("", "version_id", "symbol", "model_type", "trained_at", "composite", "sharpe"):
        table.add_column(col, no_wrap=True)
    for vid, sym, mtype, created, score, sharpe, champ in rows:
        table.add_row(
            "*" if champ else "",
            vid,
            sym,
            mtype,
            f"{created:%Y-%m-%d %H:%M:%S}",
            "no evidence" if score is None else f"{score:.4f}",
            "" if sharpe is None else f"{sharpe:.3f}",
        )
    _console().print(table)


@models_app.command("show")
def models_show(version: Annotated[str, typer.Argument(help="Version id.")]) -> None:
    """Manifest, metrics, artifact location and champion status of one version."""
    import json

    from brain_lib.errors import ArtifactError
    from brain_lib.registry import check_manifest, get_version, load_model
    from brain_lib.warehouse import connect

    dsn = _prepare(_settings())
    with connect(dsn) as conn:
        info = get_version(conn, version)
    # a manifest from a newer Brain cannot be read right: refuse it. A missing, changed
    # or unloadable artifact is shown, marked, so the version's record can be inspected
    check_manifest(info.manifest, f"version {info.version_id}")
    fault: str | None = None
    try:
        load_model(info.artifact_uri, info.artifact_sha256, info.manifest, info.version_id)
    except ArtifactError as exc:
        fault = str(exc)
    with connect(dsn) as conn:
        metrics = conn.execute(
            "select scope, metric, value from raw.model_metrics where version_id = %s "
            "order by scope, metric",
            (version,),
        ).fetchall()
        champion = conn.execute(
            "select since from raw.model_champions where version_id = %s", (version,)
        ).fetchone()
    console = _console()
    console.print(
        f"{info.version_id}  {info.exchange} {info.symbol} {info.timeframe} {info.model_type}"
    )
    console.print(f"trained_at: {info.created_at:%Y-%m-%d %H:%M:%S %Z}   run: {info.run_id or '-'}")
    state = "verified" if fault is None else "CORRUPT, cannot be served"
    console.print(f"artifact:   {info.artifact_uri}  (sha256 {info.artifact_sha256}, {state})")
    since = f"yes, since {champion[0]:%Y-%m-%d %H:%M:%S}" if champion else "no"
    console.print(f"champion:   {since}")
    for scope, label in (("oos", "out of sample"), ("champion_replay", "champion replayed")):
        values = {name: value for sc, name, value in metrics if sc == scope}
        if values:
            console.print(_metric_groups(values, label))
    console.print("manifest:")
    console.print_json(json.dumps(info.manifest, default=str))
    if fault is not None:
        typer.echo(f"error: {fault}", err=True)
        raise typer.Exit(1)


METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "performance",
        (
            "sharpe",
            "sortino",
            "calmar",
            "profit_factor",
            "hit_ratio",
            "max_drawdown",
            "annualised_return",
            "total_return",
            "gross_sharpe",
        ),
    ),
    ("luck", ("psr", "dsr", "dsr_trials", "dsr_benchmark_sharpe")),
    (
        "trading",
        (
            "exposure",
            "turnover_per_bar",
            "round_trips",
            "avg_holding_bars",
            "cost_paid",
            "funding_paid",
            "policy_flat_folds",
        ),
    ),
    (
        "baselines",
        (
            "buy_hold_sharpe",
            "buy_hold_total_return",
            "buy_hold_max_drawdown",
            "buy_hold_annualised_return",
            "excess_sharpe",
            "information_ratio",
            "flat_total_return",
            "flat_max_drawdown",
        ),
    ),
)


def _metric_groups(values: dict[str, float | None], label: str) -> Any:
    """A version's metrics as a table, one row per group (performance, luck, trading,
    baselines, then anything else)."""
    from rich.table import Table

    table = Table(title=f"metrics, {label}", show_header=False, title_justify="left")
    table.add_column("group", style="bold", no_wrap=True)
    table.add_column("values")
    shown: set[str] = set()

    def cell(name: str) -> str:
        value = values[name]
        return f"{name} {'undefined' if value is None else format(value, '.4g')}"

    for group, names in METRIC_GROUPS:
        present = [n for n in names if n in values]
        shown.update(present)
        if present:
            table.add_row(group, ", ".join(cell(n) for n in present))
    rest = sorted(set(values) - shown)
    if rest:
        table.add_row("other", ", ".join(cell(n) for n in rest))
    return table


@models_app.command("history")
def models_history(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. SOL/USDT.")],
    at: Annotated[
        datetime | None, typer.Option(help="Which version was champion at this time (UTC).")
    ] = None,
    model_type: Annotated[str | None, typer.Option(help="Only this model type.")] = None,
) -> None:
    """Which version was champion when, and why it changed."""
    from datetime import UTC

    from rich.table import Table

    from brain_lib.errors import NoModelError
    from brain_lib.warehouse import connect, table_exists

    settings = _settings()
    dsn = _prepare(settings)
    when = at.replace(tzinfo=at.tzinfo or UTC) if at is not None else None
    with connect(dsn) as conn:
        if not table_exists(conn, "marts.model_champion_history"):
            _rebuild_champion_marts(dsn, settings)
        rows = conn.execute(
            """
            select model_type, version_id, valid_from, valid_to, event_type, reason, is_current
            from marts.model_champion_history
            where symbol = %s and (%s::text is null or model_type = %s)
              and (%s::timestamptz is null
                   or (valid_from <= %s::timestamptz
                       and (valid_to is null or valid_to > %s::timestamptz)))
            order by model_type, valid_from
            """,
            (symbol, model_type, model_type, when, when, when),
        ).fetchall()
    if not rows:
        moment = f" at {at:%Y-%m-%d %H:%M}" if at else ""
        raise NoModelError(f"no champion of {symbol}{moment}")
    title = f"champions of {symbol}" + (f" at {at:%Y-%m-%d %H:%M} UTC" if at else "")
    table = Table(title=title)
    for col in ("model_type", "version_id", "valid_from", "valid_to", "by", "reason"):
        table.add_column(col)
    for mtype, vid, start, end, event, reason, current in rows:
        table.add_row(
            mtype,
            vid,
            f"{start:%Y-%m-%d %H:%M:%S}",
            "current" if current else f"{end:%Y-%m-%d %H:%M:%S}",
            event,
            reason or "",
        )
    _console().print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="Version id to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the event).")],
) -> None:
    """Make a version the champion of its symbol and model type (recorded as an event)."""
    from brain_lib.registry import promote
    from brain_lib.warehouse import connect

    settings = _settings()
    dsn = _prepare(settings)
    with connect(dsn) as conn:
        previous = promote(conn, version, reason=reason)
    _rebuild_champion_marts(dsn, settings)
    typer.echo(f"{version} is champion (was: {previous or 'none'})")


@models_app.command("rollback")
def models_rollback(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. SOL/USDT.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the event).")],
    model_type: Annotated[str | None, typer.Option(help="Model type, if several.")] = None,
) -> None:
    """Move the champion back to the version that was champion before it."""
    from brain_lib.registry import rollback
    from brain_lib.warehouse import connect

    settings = _settings()
    dsn = _prepare(settings)
    with connect(dsn) as conn:
        restored, demoted = rollback(conn, symbol, reason=reason, model_type=model_type)
    _rebuild_champion_marts(dsn, settings)
    typer.echo(f"{symbol}: champion rolled back to {restored} (demoted {demoted})")
