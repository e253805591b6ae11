"""brain select: the model type that suits the volatility regime of the moment."""

from __future__ import annotations

from typing import Annotated

import typer

from brain_lib.cli._app import _console, _prepare, _settings, app


@app.command("select")
def select(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTC/USDT.")],
    exchange: Annotated[str | None, typer.Option(help="Exchange (default BRAIN_EXCHANGE).")] = None,
    timeframe: Annotated[
        str | None, typer.Option(help="Bar length (default BRAIN_TIMEFRAME).")
    ] = None,
    regime: Annotated[
        str | None, typer.Option(help="Use this regime (low, normal, high, extreme).")
    ] = None,
    learn: Annotated[
        bool, typer.Option(help="Also report the preference learned from history.")
    ] = True,
) -> None:
    """Detect the volatility regime, choose the champion that suits it, and print the
    regime, the chosen model, its confidence and the reason (recorded in
    raw.model_selections)."""
    from brain_lib.selection import ModelSelector, SelectionSettings, check_regime

    if regime is not None:
        check_regime(regime)
    settings = _settings(exchange=exchange, timeframe=timeframe)
    selection_settings = SelectionSettings.load()
    dsn = _prepare(settings)
    selector = ModelSelector(
        dsn,
        settings=selection_settings,
        exchange=settings.exchange,
        timeframe=settings.timeframe,
        learn=learn,
    )
    result = selector.select_model_for_symbol(symbol, regime)
    console = _console()
    console.print(
        f"{result.exchange} {result.symbol} {result.timeframe} at "
        f"{result.decided_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    reading = result.reading
    if result.regime_source == "given":
        console.print(f"regime:     {result.regime} (given)")
    elif reading is not None:
        console.print(
            f"regime:     {result.regime} (volatility {reading.volatility:.5f} per bar, "
            f"percentile {reading.percentile:.3f} of the last "
            f"{selection_settings.history_bars} bars, {reading.run_bars} bars in a row, "
            f"bar {reading.as_of_bar:%Y-%m-%d %H:%M})"
        )
    fallback = f" (preferred {result.choice.preferred_model_type}: fallback)"
    console.print(
        f"model:      {result.model_type} {result.version_id}"
        + (fallback if result.choice.fallback else "")
    )
    console.print(f"confidence: {result.confidence.explain(selection_settings)}")
    if result.learned:
        learned = ", ".join(f"{r} {lc.model_type or '-'}" for r, lc in result.learned.items())
        console.print(f"learned:    {learned}")
    console.print(f"reason:     {result.reason}")
