"""The synthetic demo market: deterministic, valid candles with the promised shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brain_lib.market import SyntheticMarket, generate_candles


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return generate_candles("BTC/USDT", 8760, seed=7)


def test_ohlc_relations_hold(year: pd.DataFrame) -> None:
    assert (year["high"] >= year[["open", "close"]].max(axis=1)).all()
    assert (year["low"] <= year[["open", "close"]].min(axis=1)).all()
    assert (year[["open", "high", "low", "close"]] > 0).all().all()
    assert (year["volume"] > 0).all()
    # each bar opens at the previous close
    np.testing.assert_allclose(year["open"].to_numpy()[1:], year["close"].to_numpy()[:-1])
    assert year["ts"].diff().iloc[1:].eq(pd.Timedelta(hours=1)).all()
    assert str(year["ts"].dt.tz) == "UTC"


def test_deterministic_and_prefix_stable() -> None:
    long = generate_candles("ETH/USDT", 500, seed=3)
    again = generate_candles("ETH/USDT", 500, seed=3)
    short = generate_candles("ETH/USDT", 200, seed=3)
    pd.testing.assert_frame_equal(long, again)
    pd.testing.assert_frame_equal(long.iloc[:200], short)
    assert not generate_candles("ETH/USDT", 200, seed=4)["close"].equals(short["close"])
    assert not generate_candles("SOL/USDT", 200, seed=3)["close"].equals(short["close"])


def test_regimes_switch_and_set_the_volatility(year: pd.DataFrame) -> None:
    returns = np.log(year["close"]).diff()
    by_regime = returns.groupby(year["regime"]).std()
    assert set(year["regime"].unique()) == {0, 1, 2}
    assert by_regime[0] < by_regime[1] < by_regime[2]
    switches = int((year["regime"].diff().fillna(0) != 0).sum())
    assert 20 < switches < 1000  # persistent regimes, not noise


def test_fat_tails(year: pd.DataFrame) -> None:
    returns = np.log(year["close"]).diff().dropna()
    within_regime = returns[year["regime"].iloc[1:].to_numpy() == 1]
    # excess kurtosis of a normal is 0; Student-t with 4 dof has a heavy tail
    assert within_regime.kurt() > 1.0


def test_autocorrelation_is_planted() -> None:
    frame = SyntheticMarket(seed=1, autocorr=-0.2).candles("BTC/USDT", 20_000)
    returns = np.log(frame["close"]).diff().dropna()
    assert returns.autocorr(lag=1) == pytest.approx(-0.2, abs=0.03)
    plain = np.log(generate_candles("BTC/USDT", 20_000, seed=1)["close"]).diff().dropna()
    assert abs(plain.autocorr(lag=1)) < 0.03


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"periods": -1}, "periods"),
        ({"autocorr": 1.0}, "autocorr"),
        ({"timeframe": "1y"}, "timeframe"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args = {"periods": 10, **kwargs}
    periods = args.pop("periods")
    with pytest.raises(ValueError, match=message):
        generate_candles("BTC/USDT", periods, **args)  # type: ignore[arg-type]
