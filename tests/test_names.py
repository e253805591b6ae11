"""Names from outside (symbols, exchanges, timeframes) are checked before anything."""

from __future__ import annotations

import pytest

from brain_lib.errors import ConfigError
from brain_lib.names import check_exchange, check_symbol, check_timeframe, shown

HOSTILE_SYMBOLS = [
    "../../etc/passwd",
    "BTC/USD'; DROP TABLE raw.ohlcv;--",
    "A" * 5000,
    "",
    " ",
    "BTC/USDT\n",
    "BTC/USDT🚀",
    "BTC/[/x]",
    "BTCUSDT",
    "BTC/USDT:USDT:USDT",
    "/USDT",
    ".BTC/USDT",
    "A" * 40 + "/" + "B" * 30,
]


@pytest.mark.parametrize("name", HOSTILE_SYMBOLS)
def test_hostile_symbols_are_refused_with_the_name_escaped(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_symbol(name, "--symbol")
    message = str(caught.value)
    assert message.startswith("invalid --symbol ")
    assert "\n" not in message and message.isascii()  # escaped: one printable line
    assert len(message) < 300  # a 5,000-character name is cut, with its length


@pytest.mark.parametrize(
    "name", ["BTC/USDT", "BTC/USDT:USDT", "1000SHIB/USDT", "BTC/USD:BTC-250328", "kBTC/USDT"]
)
def test_ccxt_symbols_pass(name: str) -> None:
    assert check_symbol(name) == name


@pytest.mark.parametrize("name", ["", "../x", "bin ance", "Binance", "x" * 33, "1ex", "[/x]"])
def test_hostile_exchanges_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid exchange"):
        check_exchange(name)


@pytest.mark.parametrize("name", ["binance", "binanceusdm", "okx", "my-desk", "gate_io"])
def test_exchange_ids_and_slugs_pass(name: str) -> None:
    assert check_exchange(name) == name


@pytest.mark.parametrize("name", ["1M", "0h", "abc", "1s", "", "01h", "29d", "5w", "1H"])
def test_timeframes_brain_cannot_annualise_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid timeframe"):
        check_timeframe(name)


@pytest.mark.parametrize("name", ["1m", "5m", "15m", "1h", "4h", "1d", "1w", "4w", "28d"])
def test_timeframes_brain_annualises_pass(name: str) -> None:
    assert check_timeframe(name) == name


def test_shown_escapes_and_cuts() -> None:
    assert shown("a\nb") == "'a\\nb'"
    assert shown("🚀") == "'\\U0001f680'"
    assert shown("A" * 5000).endswith("(5000 characters)")
    assert shown(3) == "int 3"


def test_settings_refuse_bad_names_and_non_finite_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from brain_lib.config import Settings

    for field, value, needle in (
        ("symbols", ["../x"], "invalid symbol"),
        ("symbols", [], "no symbols"),
        ("exchange", "bin ance", "invalid exchange"),
        ("timeframe", "1M", "invalid timeframe"),
        ("fee_bps", float("inf"), "finite"),
        ("degradation_threshold", float("nan"), "finite"),
        ("model_types", [], "no model types"),
    ):
        with pytest.raises(ValidationError, match=needle):
            Settings(**{field: value})


def test_names_print_as_themselves_not_as_rich_markup() -> None:
    """A name stored before the door checked names (or a reason, an error from an
    exchange) holding "[/x]" prints as itself and does not crash the table."""
    from brain_lib.cli._app import _console
    from brain_lib.cli.train import _metrics_table

    console = _console()
    row = {
        "symbol": "X[/x]/USDT",
        "model_type": "lightgbm",
        "status": "ok",
        "decision": "promotion",
        "version_id": "v[bold]1",
        "reason": "[red]no[/red]",
    }
    with console.capture() as captured:
        console.print(_metrics_table([row], "run [/x]"))
        console.print(f"{row['symbol']}: failed", style="red")
    out = captured.get()
    assert "X[/x]/USDT" in out and "v[bold]1" in out and "[red]no[/red]" in out
    assert "run [/x]" in out
