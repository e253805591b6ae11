"""Training picks up the derivatives features of a symbol that has them, and only then."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brain_lib.dbt import run_dbt
from brain_lib.market import SyntheticMarket
from brain_lib.market.data import FEATURE_COLUMNS, SENTIMENT_COLUMNS
from brain_lib.training import (
    TrainingConfig,
    build_dataset,
    load_training_candles,
    train_symbol,
)
from brain_lib.warehouse import connect, copy_ohlcv

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CONFIG = TrainingConfig(params={"num_boost_round": 20}, n_splits=3, embargo=6, min_rows=300)
WITH, WITHOUT = "BTC/USDT:USDT", "ETH/USDT:USDT"
BARS = 900


@pytest.fixture(scope="module")
def dsn(warehouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    market = SyntheticMarket(seed=21, autocorr=-0.1)
    rng = np.random.default_rng(0)
    with connect(warehouse_dsn) as conn:
        for symbol in (WITH, WITHOUT):
            candles = market.candles(symbol, BARS)
            copy_ohlcv(conn, candles, exchange="binance", symbol=symbol, timeframe="1h")
        ts = market.candles(WITH, BARS)["ts"]
        with conn.cursor() as cur:
            # funding every 8 hours, open interest every hour, a few liquidations a day
            cur.executemany(
                "insert into raw.funding_rates (exchange, symbol, ts, funding_rate) "
                "values ('binance', %s, %s, %s)",
                [(WITH, t, float(rng.normal(1e-4, 5e-5))) for t in ts[::8]],
            )
            cur.executemany(
                "insert into raw.open_interest (exchange, symbol, period, ts, "
                "open_interest_amount) values ('binance', %s, '1h', %s, %s)",
                [(WITH, t, float(1e4 + rng.normal(0, 100))) for t in ts],
            )
            cur.executemany(
                "insert into raw.liquidations (exchange, symbol, liquidation_key, ts, side, "
                "price, quantity, notional) values ('binance', %s, %s, %s, %s, 100, 1, 100)",
                [
                    (WITH, f"k{i}", t + pd.Timedelta(minutes=17), "long" if i % 2 else "short")
                    for i, t in enumerate(ts[::5])
                ],
            )
        conn.commit()
    run_dbt(
        ["build", "--select", "+fct_features_hourly", "--indirect-selection", "cautious"],
        dsn=warehouse_dsn,
        project_dir=REPO / "dbt_brain",
        state_dir=tmp_path_factory.mktemp("dbt"),
    )
    return warehouse_dsn


def _load(dsn: str, symbol: str) -> pd.DataFrame:
    with connect(dsn) as conn:
        return load_training_candles(conn, exchange="binance", symbol=symbol, timeframe="1h")


def test_a_symbol_with_derivatives_trains_on_them(dsn: str) -> None:
    candles = _load(dsn, WITH)
    assert list(candles.columns[:5]) == ["open", "high", "low", "close", "volume"]
    # every column with data in the window, and none without: no sentiment was loaded,
    # and open interest came as amounts only (no value)
    empty = {*SENTIMENT_COLUMNS, "open_interest_value"}
    assert set(FEATURE_COLUMNS) - empty <= set(candles.columns)
    assert not empty & set(candles.columns)
    assert candles["funding_rate"].notna().sum() > BARS - 10
    result = train_symbol(candles, exchange="binance", symbol=WITH, config=CONFIG)
    manifest = result.manifest
    assert manifest["feature_sets"] == [
        "ohlcv",
        "derivatives",
        "funding",
        "open_interest",
        "liquidations",
    ]
    assert "funding_rate" in manifest["features"] and "liq_count_24h" in manifest["features"]
    # the model really sees them: the booster knows their names
    assert "open_interest_change_1h" in result.model.feature_names


def test_a_symbol_without_derivatives_trains_on_ohlcv_only(dsn: str) -> None:
    candles = _load(dsn, WITHOUT)
    assert list(candles.columns) == ["open", "high", "low", "close", "volume"]
    result = train_symbol(candles, exchange="binance", symbol=WITHOUT, config=CONFIG)
    assert result.manifest["feature_sets"] == ["ohlcv"]
    assert not set(FEATURE_COLUMNS) & set(result.manifest["features"])


def test_other_columns_never_become_features() -> None:
    candles = SyntheticMarket(seed=1).candles("X/USDT", 400).set_index("ts")
    assert "regime" in candles.columns  # what the simulator knows and a model must not
    X, _ = build_dataset(candles, 1)
    assert "regime" not in X.columns


def test_funding_prints_are_charged_on_the_bar_they_fall_in(dsn: str) -> None:
    """A print stamped at F is paid by the position held over the bar whose (open, close]
    holds F; a quarantined print is not charged; a symbol without prints pays nothing."""
    from brain_lib.training import FUNDING_COLUMN

    with connect(dsn) as conn:
        prints = conn.execute(
            "select ts, funding_rate from raw.funding_rates where symbol = %s order by ts",
            (WITH,),
        ).fetchall()
        quarantined_at, quarantined_rate = prints[5]
        conn.execute(
            "insert into raw.quarantine_funding_rates (exchange, symbol, ts, funding_rate, "
            "expectation, reason, severity, run_id) values ('binance', %s, %s, %s, "
            "'expect_test', 'planted by the test', 'blocking', 'test')",
            (WITH, quarantined_at, quarantined_rate),
        )
    candles = _load(dsn, WITH)
    charge = candles[FUNDING_COLUMN]
    hour = pd.Timedelta(hours=1)
    expected = pd.Series(0.0, index=candles.index)
    for stamp, rate in prints:
        bar = pd.Timestamp(stamp) - hour  # the print closes the bar that opened an hour before
        if bar in expected.index and stamp != quarantined_at:
            expected[bar] += rate
    pd.testing.assert_series_equal(charge, expected, check_names=False)
    assert charge[pd.Timestamp(quarantined_at) - hour] == 0.0
    assert (charge != 0).sum() == len(prints) - 2  # the first print has no bar before it
    assert FUNDING_COLUMN not in _load(dsn, WITHOUT)
    # the backtest charges it: positions times the rate of the bar they are held over
    frame = train_symbol(candles, exchange="binance", symbol=WITH, config=CONFIG).backtest.frame
    np.testing.assert_allclose(frame["funding_rate"], charge.reindex(frame.index).fillna(0.0))
