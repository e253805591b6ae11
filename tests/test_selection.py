"""Regime detection and the model selector: the regimes of a synthetic market with known
regimes, no look-ahead, the fallbacks, hysteresis on an alternating series, the
confidence formula's bounds and monotonicity; one warehouse-backed test records a
decision and runs ``brain select``."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markets import STRONG_TREND, planted

from brain_lib.errors import ConfigError, NoModelError
from brain_lib.market import generate_candles
from brain_lib.selection import (
    REGIMES,
    ChampionEvidence,
    SelectionSettings,
    check_regime,
    choose_champion,
    confidence_score,
    current_regime,
    detect_regimes,
    learn_preference,
    regime_run_length,
    shrunk_agreement,
    switch_decision,
)

REPO = Path(__file__).resolve().parent.parent
SETTINGS = SelectionSettings()


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """A year of hourly bars whose hidden regime (0 calm, 1 normal, 2 turbulent) is known."""
    return generate_candles("BTC/USDT", 8760, seed=7).set_index("ts")


# ------------------------------------------------------------------ regimes


def test_regimes_recover_the_known_regimes(market: pd.DataFrame) -> None:
    detected = detect_regimes(market, SETTINGS)
    true = market["regime"]
    # judged where the true regime has held for the whole volatility window
    settled = true.rolling(SETTINGS.vol_window).apply(lambda x: len(set(x)) == 1, raw=True) == 1
    keep = settled & detected["regime"].notna()
    assert keep.sum() > 5000
    coarse = detected["regime"][keep].map({"low": 0, "normal": 1, "high": 2, "extreme": 2})
    truth = true[keep]
    assert (coarse == truth).mean() > 0.68
    # each true regime is most often detected as itself; turbulence is almost never "low"
    for regime in (0, 1, 2):
        assert coarse[truth == regime].mode().iloc[0] == regime
    assert (coarse[truth == 2] == 0).mean() < 0.01
    assert (detected["regime"][keep][truth == 0] == "extreme").mean() < 0.02
    # the volatility percentile orders the regimes
    pct = detected["percentile"][keep]
    means = [pct[truth == r].mean() for r in (0, 1, 2)]
    assert means == sorted(means)


def test_regimes_have_no_look_ahead(market: pd.DataFrame) -> None:
    full = detect_regimes(market, SETTINGS)
    for cut in (900, 2500, 6001):
        part = detect_regimes(market.iloc[:cut], SETTINGS)
        pd.testing.assert_frame_equal(part, full.iloc[:cut])
    # a wild bar after t changes nothing at t
    shocked = market.copy()
    shocked.iloc[3000:, shocked.columns.get_loc("close")] *= 3.0
    pd.testing.assert_frame_equal(detect_regimes(shocked, SETTINGS).iloc[:3000], full.iloc[:3000])


def test_current_regime_reads_the_last_bar(market: pd.DataFrame) -> None:
    reading = current_regime(market.iloc[:4000], SETTINGS)
    frame = detect_regimes(market.iloc[:4000], SETTINGS)
    assert reading.regime == frame["regime"].iloc[-1]
    assert reading.as_of_bar == market.index[3999]
    assert reading.run_bars == regime_run_length(frame["regime"])
    assert 1 <= reading.run_bars <= 4000
    with pytest.raises(Exception, match="too few candles for a volatility regime"):
        current_regime(market.iloc[:100], SETTINGS)


def test_bad_regime_and_settings_name_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown regime 'calm' \(choices: low, normal, high, extreme\)"
    ):
        check_regime("calm")
    with pytest.raises(ConfigError, match="BRAIN_SELECTION_PREFERENCE: unknown regime 'calm'"):
        SelectionSettings.load(preference={"calm": "xgboost"})
    with pytest.raises(ConfigError, match="quantiles must increase"):
        SelectionSettings.load(low_quantile=0.8)
    # a partial preference keeps the desk's defaults for the other regimes
    assert SelectionSettings.load(preference={"high": "lightgbm"}).preference == {
        "low": "xgboost",
        "normal": "lightgbm",
        "high": "lightgbm",
        "extreme": "lightgbm",
    }


# ---------------------------------------------------------------- choosing


def _champion(model_type: str, composite: float | None, dsr: float = 0.6) -> ChampionEvidence:
    return ChampionEvidence(
        version_id=f"sol-usdt.{model_type}.1",
        model_type=model_type,
        exchange="synthetic",
        symbol="SOL/USDT",
        timeframe="1h",
        composite=composite,
        dsr=dsr,
    )


LGB, XGB = _champion("lightgbm", 0.30), _champion("xgboost", 0.10)
PREF = SETTINGS.preference


def test_the_preferred_types_champion() -> None:
    low = choose_champion("low", PREF, [LGB, XGB], ["lightgbm", "xgboost"])
    assert (low.champion, low.fallback) == (XGB, False)
    assert low.reason == "regime low prefers xgboost: its champion sol-usdt.xgboost.1"
    assert choose_champion("normal", PREF, [LGB, XGB], ["lightgbm", "xgboost"]).champion == LGB


def test_fallback_when_the_type_has_no_champion() -> None:
    choice = choose_champion("low", PREF, [LGB, _champion("cnn", 0.9)], ["lightgbm", "xgboost"])
    assert (choice.champion, choice.fallback) == (LGB, True)  # cnn is not installed here
    assert "xgboost has no champion for SOL/USDT" in choice.reason
    assert "falling back to the best champion of another type: lightgbm" in choice.reason


def test_fallback_when_the_type_is_not_installed() -> None:
    installed = ["lightgbm", "xgboost"]  # no torch: the deep types are known, not installed
    choice = choose_champion("high", PREF, [XGB, LGB], installed)
    assert (choice.champion, choice.fallback) == (LGB, True)  # the higher composite
    assert "lstm is not installed here (installed: lightgbm, xgboost)" in choice.reason
    # with lstm installed but without a champion: the same fallback, another reason
    again = choose_champion("high", PREF, [XGB, LGB], [*installed, "lstm"])
    assert again.champion == LGB and "lstm has no champion" in again.reason
    # no composite anywhere: the DSR decides
    a, b = _champion("lightgbm", None, 0.4), _champion("xgboost", None, 0.7)
    assert choose_champion("high", PREF, [a, b], installed).champion == b


def test_unknown_type_regime_and_no_champion_are_one_line_errors() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown model type 'prophet' preferred for regime low "
        r"\(choices: cnn, lightgbm, lstm, transformer, xgboost\)",
    ):
        choose_champion("low", {**PREF, "low": "prophet"}, [LGB], ["lightgbm", "xgboost"])
    with pytest.raises(ConfigError, match="unknown regime 'storm'"):
        choose_champion("storm", PREF, [LGB], ["lightgbm"])
    with pytest.raises(NoModelError, match="no champion to select"):
        choose_champion("low", PREF, [], ["lightgbm", "xgboost"])
    with pytest.raises(NoModelError, match=r"only cnn, not installed here"):
        choose_champion("low", PREF, [_champion("cnn", 0.5)], ["lightgbm", "xgboost"])


def test_learned_preference_per_regime() -> None:
    idx = pd.date_range("2025-01-01", periods=400, freq="h", tz="UTC")
    regimes = pd.Series(["low", "high"] * 200, index=idx, dtype=object)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.001, 400)
    is_low = (regimes == "low").to_numpy()
    good_low = pd.Series(noise + np.where(is_low, 0.001, -0.001), index=idx)
    good_high = pd.Series(noise + np.where(is_low, -0.001, 0.001), index=idx)
    learned = learn_preference({"xgboost": good_low, "lstm": good_high}, regimes, min_bars=48)
    assert learned["low"].model_type == "xgboost"
    assert learned["high"].model_type == "lstm"
    assert learned["low"].bars == 200
    assert learned["normal"].model_type is None and "fewer than 48" in learned["normal"].note


# -------------------------------------------------------------- hysteresis


def _simulate(regimes: list[str], persist_bars: int, margin: float = 0.1) -> int:
    """Switches of a desk that asks should-switch at every bar (equal confidences)."""
    choice = {"low": "xgb", "normal": "lgb", "high": "lstm", "extreme": "lgb"}
    current, switches = choice[regimes[0]], 0
    for t in range(1, len(regimes)):
        decision = switch_decision(
            current_id=current,
            candidate_id=choice[regimes[t]],
            run_bars=regime_run_length(regimes[: t + 1]),
            current_confidence=0.5,
            candidate_confidence=0.55,
            persist_bars=persist_bars,
            margin=margin,
        )
        if decision.switch:
            current, switches = choice[regimes[t]], switches + 1
    return switches


def test_hysteresis_stops_flapping_on_an_alternating_series() -> None:
    alternating = list(itertools.chain.from_iterable(["low", "low", "high"] for _ in range(100)))
    assert _simulate(alternating, persist_bars=1) > 150  # no hysteresis: it flaps
    assert _simulate(alternating, persist_bars=6) == 0
    # a lasting change is followed, after exactly persist_bars bars
    lasting = ["low"] * 50 + ["high"] * 50
    assert _simulate(lasting, persist_bars=6) == 1
    for t in range(50, 56):
        decision = switch_decision(
            current_id="xgb",
            candidate_id="lstm",
            run_bars=regime_run_length(lasting[: t + 1]),
            current_confidence=0.5,
            candidate_confidence=0.5,
            persist_bars=6,
            margin=0.1,
        )
        assert decision.switch == (t == 55), decision.reason


def test_a_large_confidence_gain_switches_at_once() -> None:
    decision = switch_decision(
        current_id="a",
        candidate_id="b",
        run_bars=1,
        current_confidence=0.2,
        candidate_confidence=0.35,
        persist_bars=6,
        margin=0.1,
    )
    assert decision.switch and "confidence improves by 0.150" in decision.reason
    same = switch_decision(
        current_id="a",
        candidate_id="a",
        run_bars=99,
        current_confidence=0.2,
        candidate_confidence=0.9,
        persist_bars=6,
        margin=0.1,
    )
    assert not same.switch


# --------------------------------------------------------------- confidence

GRID = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]


def test_confidence_is_bounded_and_has_the_documented_value() -> None:
    assert confidence_score(1.0, 1.0, 1.0, 0.0) == pytest.approx(1.0)
    assert confidence_score(0.0, 0.0, 0.5, 0.0) == 0.0
    assert confidence_score(None, None, None, 0.0) == 0.0
    # 2^(-30/30) x (0.5 x 0.8 + 0.25 x 0.6 + 0.25 x (2 x 0.7 - 1))
    assert confidence_score(0.8, 0.6, 0.7, 30.0) == pytest.approx(0.5 * (0.4 + 0.15 + 0.1))
    for e, s, a in itertools.product(GRID, GRID, GRID):
        for d in (0.0, 5.0, 365.0):
            assert 0.0 <= confidence_score(e, s, a, d, SETTINGS) <= 1.0
    assert confidence_score(2.0, -1.0, float("nan"), -3.0) == pytest.approx(0.5)


@pytest.mark.parametrize("which", ["evidence", "stability", "agreement", "age"])
def test_confidence_is_monotone_in_each_input(which: str) -> None:
    ages = [0.0, 1.0, 10.0, 30.0, 90.0, 400.0]
    for e, s, a in itertools.product(GRID, GRID, GRID):
        base = {"evidence": e, "stability": s, "agreement": a, "age_days": 3.0}
        if which == "age":
            values = [confidence_score(**{**base, "age_days": d}, settings=SETTINGS) for d in ages]
            assert values == sorted(values, reverse=True)
        else:
            values = [confidence_score(**{**base, which: x}, settings=SETTINGS) for x in GRID]
            assert values == sorted(values)


def test_agreement_is_shrunk_towards_chance() -> None:
    assert shrunk_agreement(0, 0, 20) == 0.5
    assert shrunk_agreement(10, 10, 20) == pytest.approx(20 / 30)
    assert shrunk_agreement(100, 100, 20) > shrunk_agreement(10, 10, 20)  # more bars, more weight


# ---------------------------------------------------------------- warehouse


def test_select_records_the_decision_and_the_cli_prints_it(
    fresh_warehouse: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from brain_lib.brain import BrainLibrary
    from brain_lib.cli import main
    from brain_lib.registry import register_version
    from brain_lib.training import TrainingConfig, train_symbol
    from brain_lib.warehouse import connect, copy_ohlcv

    config = TrainingConfig(params={"num_boost_round": 30}, n_splits=3, embargo=6, min_rows=300)
    candles = planted(3, 4000, symbol="ETH/USDT", trend=STRONG_TREND)
    trained_on = candles.iloc[:3500]  # the last 500 bars are out of sample for it
    result = train_symbol(trained_on, exchange="synthetic", symbol="ETH/USDT", config=config)
    with connect(fresh_warehouse) as conn:
        copy_ohlcv(
            conn, candles.reset_index(), exchange="synthetic", symbol="ETH/USDT", timeframe="1h"
        )
        version, _ = register_version(
            conn,
            result,
            artifact_root=str(tmp_path / "artifacts"),
            candles=trained_on,
            config=config,
        )
    vid = version.version_id
    with BrainLibrary(fresh_warehouse) as brain:
        selector = brain.selector(exchange="synthetic", timeframe="1h")
        # high prefers lstm: no lstm champion (installed or not), so the lightgbm one
        chosen = selector.select_model_for_symbol("ETH/USDT", "high")
        assert (chosen.version_id, chosen.choice.fallback) == (vid, True)
        assert "prefers lstm" in chosen.reason and "falling back" in chosen.reason
        conf = chosen.confidence
        assert 0.0 < conf.value <= 1.0 and conf.agreement_bars > 100
        assert conf.evidence_metric == "dsr"
        # detected, point-in-time: a decision at bar 3600's close reads no later bar
        at = candles.index[3600] + pd.Timedelta(hours=1)
        early = selector.select_model_for_symbol("ETH/USDT", at=at)
        assert early.reading is not None and early.reading.as_of_bar == candles.index[3600]
        expected = current_regime(candles.iloc[:3601], selector.settings)
        assert early.regime == expected.regime
        assert early.reading.percentile == pytest.approx(expected.percentile)
        assert selector.get_model_confidence("ETH/USDT", at=at) == pytest.approx(
            early.confidence.value
        )
        stay = selector.should_switch_model("ETH/USDT", vid, "low")
        assert not stay.switch and "already the choice" in stay.reason
    with connect(fresh_warehouse) as conn:
        rows = conn.execute(
            "select kind, regime, regime_source, version_id, is_fallback, confidence, switch "
            "from raw.model_selections order by selection_id"
        ).fetchall()
    assert [r[:5] for r in rows] == [
        ("select", "high", "given", vid, True),
        ("select", early.regime, "detected", vid, early.choice.fallback),
        ("switch", "low", "given", vid, True),
    ]
    assert rows[-1][6] is False

    monkeypatch.setenv("BRAIN_DATABASE_URL", fresh_warehouse)
    monkeypatch.setenv("BRAIN_HOME", str(tmp_path / "home"))

    def brain_cli(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["brain", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out = capsys.readouterr()
        return int(exit_info.value.code or 0), out.out, out.err

    code, out, err = brain_cli("select", "ETH/USDT", "--exchange", "synthetic", "--timeframe", "1h")
    assert code == 0, err
    assert "regime:" in out and f"model:      lightgbm {vid}" in out
    assert "confidence: " in out and "reason:" in out
    code, _, err = brain_cli("select", "ETH/USDT", "--regime", "stormy")
    assert code == 2 and err.strip() == (
        "error: unknown regime 'stormy' (choices: low, normal, high, extreme)"
    )
    code, _, err = brain_cli("select", "BTC/USDT", "--exchange", "synthetic", "--timeframe", "1h")
    assert code == 2 and err.startswith("error: no champion") and err.count("\n") == 1


def test_the_selection_marts_build(fresh_warehouse: str, tmp_path: Path) -> None:
    from brain_lib.dbt import run_dbt

    run_dbt(
        ["build", "--select", "+model_selection_daily"],
        dsn=fresh_warehouse,
        project_dir=REPO / "dbt_brain",
        state_dir=tmp_path / "dbt",
    )
    assert set(REGIMES) == {"low", "normal", "high", "extreme"}
