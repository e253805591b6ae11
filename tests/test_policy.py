"""The position policy: fitted on calibration rows only, flat without skill, a band with
hysteresis and a minimum hold, sizing within its limits, bad settings named."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from brain_lib.errors import ConfigError
from brain_lib.policy import (
    BandPolicy,
    FittedBand,
    PolicyContext,
    PolicySpec,
    SignPolicy,
    apply_policies,
    fitted_from_params,
    get_policy,
    trailing_volatility,
)

CONTEXT = PolicyContext(cost=0.0005, horizon=4)


def _skilled(n: int = 2000, rho: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels whose correlation is about ``rho``."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(n)
    labels = 0.01 * (rho * signal + math.sqrt(1 - rho**2) * rng.standard_normal(n))
    return 0.002 * signal + 0.0001, labels


def _band(**params: float) -> FittedBand:
    base = dict(center=0.0, scale=1.0, entry=1.0, exit=0.2, min_hold=3, vol_target=math.nan)
    base.update(params)
    return FittedBand(spec=PolicySpec(), diagnostics={}, **base)  # type: ignore[arg-type]


def test_band_is_fitted_from_costs_and_the_prediction_scale() -> None:
    pred, labels = _skilled()
    fitted = BandPolicy(PolicySpec(entry_margin=0.5, confidence_z=1.0)).fit(
        pred, labels, None, CONTEXT
    )
    p = fitted.params
    assert p["center"] == pytest.approx(pred.mean())
    assert p["scale"] == pytest.approx(pred.std(ddof=1))
    assert 0.2 < p["skill_rho"] < 0.4
    # the entry level: round-trip cost over the edge per spread, plus the margin
    beta = p["skill_rho_lower"] * np.clip(labels, *np.quantile(labels, [0.01, 0.99])).std(ddof=1)
    assert p["entry"] == pytest.approx(2 * 0.0005 / beta + 0.5, rel=1e-9)
    assert p["min_hold"] == 4  # the label horizon
    assert p["n_effective"] == pytest.approx(2000 / 4)


def test_no_skill_means_flat() -> None:
    rng = np.random.default_rng(1)
    pred, labels = rng.standard_normal(3000), rng.standard_normal(3000) * 0.01
    fitted = get_policy(PolicySpec()).fit(pred, labels, None, CONTEXT)
    assert fitted.params["entry"] is None
    assert "no skill" in fitted.params["flat_reason"]
    positions = apply_policies(rng.standard_normal(500) * 10, None, [(0, 500, fitted)])
    assert not positions.any()


def test_too_few_calibration_rows_is_flat() -> None:
    pred, labels = _skilled(n=150)
    fitted = get_policy(PolicySpec()).fit(pred, labels, None, CONTEXT)
    assert fitted.params["entry"] is None
    assert "150 calibration rows" in fitted.params["flat_reason"]


def test_hysteresis_and_minimum_hold() -> None:
    policy = _band(entry=1.0, exit=0.2, min_hold=3)
    signal = np.array([0.5, 1.2, -0.5, -0.3, 0.1, 0.3, 0.1, -1.5, -0.4, -0.1, np.nan, 2.0])
    positions = apply_policies(signal, None, [(0, len(signal), policy)])
    # 0.5 < entry: flat; 1.2 enters long and is held 3 bars whatever the signal (bars
    # 1-3); 0.1 < exit closes it (bar 4); 0.3 and 0.1 are below the entry: flat; -1.5
    # enters short, held 3 bars although -0.1 is inside the exit band; NaN closes; 2.0 long
    np.testing.assert_array_equal(positions, [0, 1, 1, 1, 0, 0, 0, -1, -1, -1, 0, 1])


def test_a_strong_opposite_signal_flips_after_the_minimum_hold() -> None:
    policy = _band(entry=1.0, exit=0.0, min_hold=2)
    signal = np.array([1.5, -2.0, -2.0, 0.5])
    positions = apply_policies(signal, None, [(0, 4, policy)])
    np.testing.assert_array_equal(positions, [1, 1, -1, -1])


def test_positions_carry_over_between_segments() -> None:
    first, second = _band(entry=1.0, exit=0.0, min_hold=1), _band(entry=5.0, exit=0.0, min_hold=1)
    signal = np.array([2.0, 2.0, 2.0, -0.5])
    positions = apply_policies(signal, None, [(0, 2, first), (2, 4, second)])
    # the long opened under the first policy is kept by the second (2.0 > its exit 0)
    np.testing.assert_array_equal(positions, [1, 1, 1, 0])
    with pytest.raises(ValueError, match="cover"):
        apply_policies(signal, None, [(0, 2, first)])


def test_vol_target_sizing_stays_within_limits() -> None:
    spec = PolicySpec(sizing="vol_target", max_position=0.5)
    policy = FittedBand(
        spec=spec,
        center=0.0,
        scale=1.0,
        entry=1.0,
        exit=0.0,
        min_hold=1,
        vol_target=0.01,
        diagnostics={},
    )
    signal = np.array([3.0, 3.0, -0.1, -3.0, -1.5])
    vol = np.array([0.02, 0.001, 0.01, 0.005, 0.04])
    positions = apply_policies(signal, vol, [(0, 5, policy)])
    assert np.all(np.abs(positions) <= 0.5)
    # entry at bar 0: 0.5 · min(1, 0.01/0.02) · min(1, 3/2) = 0.25, kept while held
    assert positions[0] == pytest.approx(0.25)
    assert positions[1] == pytest.approx(0.25)
    assert positions[2] == 0.0
    # short at bar 3: 0.5 · min(1, 2) · 1 = 0.5
    assert positions[3] == pytest.approx(-0.5)


def test_sign_policy_trades_every_wiggle() -> None:
    fitted = SignPolicy(PolicySpec(kind="sign")).fit([1.0], [1.0], None, CONTEXT)
    positions = apply_policies(np.array([0.1, -0.1, 0.2, np.nan]), None, [(0, 4, fitted)])
    np.testing.assert_array_equal(positions, [1, -1, 1, 0])


def test_fitted_parameters_round_trip_through_the_manifest() -> None:
    pred, labels = _skilled()
    spec = PolicySpec(confidence_z=1.0)
    fitted = get_policy(spec).fit(pred, labels, None, CONTEXT)
    again = fitted_from_params(spec, fitted.params)
    signal = np.random.default_rng(2).standard_normal(300) * 0.004
    np.testing.assert_array_equal(
        apply_policies(signal, None, [(0, 300, fitted)]),
        apply_policies(signal, None, [(0, 300, again)]),
    )


def test_trailing_volatility_only_looks_back() -> None:
    close = np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, 100)))
    vol = trailing_volatility(close, 10)
    assert np.isnan(vol[:10]).all()
    shocked = close.copy()
    shocked[60:] *= 1.5
    np.testing.assert_array_equal(trailing_volatility(shocked, 10)[:60], vol[:60])
    expected = pd.Series(np.log(close)).diff().iloc[41:51].std()
    assert vol[50] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"entry_margin": -0.1}, "entry_margin"),
        ({"exit_level": -1.0}, "exit_level"),
        ({"confidence_z": float("nan")}, "confidence_z"),
        ({"max_position": 1.5}, "max_position"),
        ({"max_position": 0.0}, "max_position"),
        ({"sizing": "kelly"}, "sizing"),
        ({"min_hold": 0}, "min_hold"),
        ({"kind": "magic"}, "kind"),
        ({"vol_window": 1}, "vol_window"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        PolicySpec(**settings)  # type: ignore[arg-type]


def test_bad_context_is_named() -> None:
    with pytest.raises(ConfigError, match="cost"):
        PolicyContext(cost=-0.001, horizon=1)
    with pytest.raises(ConfigError, match="horizon"):
        PolicyContext(cost=0.001, horizon=0)
