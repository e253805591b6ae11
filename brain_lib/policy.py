r"""Position policies: predictions → positions, fitted on training rows only.

A model predicts the forward return over the label horizon; a *policy* decides what
to hold. Every recipe carries one (:class:`PolicySpec`, recorded in the manifest), and
every number a policy uses is fitted on a **calibration set**: out-of-sample predictions
of rows that lie in the training part of the fold being traded, with their realised
labels (:func:`brain_lib.training.evaluate_walk_forward` builds it from an extra,
unscored walk-forward fold and the folds before the one traded). Nothing about a
policy is ever fitted on the bars it is scored on.

The default policy, ``band`` (:class:`BandPolicy`), in the notation of
``docs/backtest.md``:

1. **Scale.** A prediction is first taken relative to its model's centre, the model's
   mean prediction on its own training rows (the drift it learnt,
   :func:`brain_lib.training.prediction_center`): the policy trades what a forecast
   says beyond that drift, and two fold models that learnt different average returns
   share one scale. The calibration predictions :math:`\hat y` (so centred) give a
   centre :math:`\mu = \operatorname{mean}\hat y` and a spread :math:`\sigma_p =
   \operatorname{std}\hat y`; the signal of a bar is :math:`s = (\hat y - \mu) /
   \sigma_p`, in units of the training window's prediction spread.
2. **Skill.** :math:`\rho` is Spearman's rank correlation of :math:`s` with the
   realised label :math:`y` over the :math:`n` calibration rows, with
   :math:`n_{eff}` independent observations — Bartlett's effective sample size of two
   autocorrelated series, :math:`n / (1 + 2\sum_k r_s(k) r_y(k))`, at most :math:`n/h`
   (labels over :math:`h` bars overlap) — and standard error
   :math:`se = \sqrt{(1 - \rho^2)/(n_{eff} - 2)}`. The policy trusts only the lower
   confidence bound :math:`\rho_{lo} = \rho - z\,se` (``confidence_z``). When
   :math:`\rho_{lo} \le 0` the model has shown no skill on its training window and the
   policy **stays flat** for the whole fold.
3. **Band.** The expected label per unit of signal is :math:`\beta = \rho_{lo}\,\sigma_y`
   (:math:`\sigma_y` the standard deviation of the label winsorised at its 1st and 99th
   percentiles).
   A position is entered when the expected edge beats the round-trip cost :math:`2c`
   (``c`` = fee + slippage per unit of position change) by ``entry_margin`` spreads:
   :math:`|s| \ge e = 2c / \beta + m`. It is held for at least ``min_hold`` bars
   (default: the label horizon) and then until the signal falls back through the exit
   level :math:`x` (``exit_level``, :math:`0 \le x < e`): a long is closed when
   :math:`s < x`, a short when :math:`s > -x`; a signal beyond the opposite entry level
   flips it. This hysteresis keeps a position through the wiggles of the signal.
4. **Size** (``sizing="vol_target"``): at entry, :math:`|p| = p_{max} \cdot
   \min(1, \sigma^* / \sigma_t) \cdot \min(1, |s| / (e + 1))`, with :math:`\sigma_t` the
   trailing volatility of the bar and :math:`\sigma^*` its median on the calibration
   rows; the size is kept until the position is closed (no rebalancing on every bar).
   ``sizing="unit"`` (default) holds :math:`\pm p_{max}`.

A NaN signal (no prediction, a gap) closes the position. ``sign`` (:class:`SignPolicy`)
is the naive rule — long when the prediction is positive, short when negative — kept as
a reference: it trades on every wiggle and is what the band replaced.

Policies are pure: no I/O, deterministic, JSON-able parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from brain_lib.errors import ConfigError

__all__ = [
    "POLICY_KINDS",
    "SIZINGS",
    "BandPolicy",
    "FittedPolicy",
    "Policy",
    "PolicyContext",
    "PolicySpec",
    "SignPolicy",
    "apply_policies",
    "fitted_from_params",
    "get_policy",
    "register_policy",
    "trailing_volatility",
]

FloatArray = npt.NDArray[np.float64]
SIZINGS = ("unit", "vol_target")


@dataclass(frozen=True)
class PolicySpec:
    """What a recipe says about turning predictions into positions (in every manifest).

    Parameters
    ----------
    kind : str, default "band"
        A registered policy (:data:`POLICY_KINDS`): ``band`` or ``sign``.
    entry_margin : float, default 0.5
        :math:`m`, in spreads of the calibration predictions, added to the cost-derived
        entry level; ``>= 0``.
    exit_level : float, default 0.0
        :math:`x`, the signal level (in spreads) through which an open position is
        closed; ``>= 0`` and below the entry level.
    min_hold : int or None, default None
        Bars a new position is held at least; ``None`` = the label horizon.
    confidence_z : float, default 1.5
        :math:`z` of the skill's lower confidence bound; ``>= 0``.
    sizing : {"unit", "vol_target"}, default "unit"
        Unit positions, or volatility targeting scaled by conviction.
    vol_window : int, default 72
        Bars of the trailing volatility used by ``vol_target``; ``>= 2``.
    max_position : float, default 1.0
        Largest absolute position, in ``(0, 1]``.
    min_calibration_rows : int, default 200
        Fewer calibration rows leave the fold flat (nothing to fit on); ``>= 10``.
    """

    kind: str = "band"
    entry_margin: float = 0.5
    exit_level: float = 0.0
    min_hold: int | None = None
    confidence_z: float = 1.5
    sizing: str = "unit"
    vol_window: int = 72
    max_position: float = 1.0
    min_calibration_rows: int = 200

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""

        def bad(name: str, rule: str, value: object) -> ConfigError:
            return ConfigError(f"invalid policy setting {name}={value!r}: {rule}")

        if self.kind not in POLICY_KINDS:
            known = ", ".join(sorted(POLICY_KINDS))
            raise bad("kind", f"must be one of {known}", self.kind)
        for name in ("entry_margin", "exit_level", "confidence_z"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(name, "must be a number", value)
            if not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0", value)
        if self.min_hold is not None and (
            isinstance(self.min_hold, bool)
            or not isinstance(self.min_hold, int)
            or self.min_hold < 1
        ):
            raise bad(
                "min_hold", "must be an int >= 1 (or None for the label horizon)", self.min_hold
            )
        if self.sizing not in SIZINGS:
            raise bad("sizing", f"must be one of {', '.join(SIZINGS)}", self.sizing)
        if isinstance(self.vol_window, bool) or not isinstance(self.vol_window, int):
            raise bad("vol_window", "must be an int >= 2", self.vol_window)
        if self.vol_window < 2:
            raise bad("vol_window", "must be an int >= 2", self.vol_window)
        mp = self.max_position
        if isinstance(mp, bool) or not isinstance(mp, int | float) or not (0.0 < mp <= 1.0):
            raise bad("max_position", "must lie in (0, 1]", mp)
        rows = self.min_calibration_rows
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 10:
            raise bad("min_calibration_rows", "must be an int >= 10", rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PolicySpec:
        """A spec from a manifest's ``policy.spec`` (unknown keys are refused)."""
        if data is None:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown policy setting(s): {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class PolicyContext:
    """What a policy is fitted with besides the calibration rows.

    ``cost`` is the cost of one unit of position change as a fraction (fee plus
    slippage, ``(fee_bps + slippage_bps) / 10,000``); ``horizon`` the label horizon in
    bars.
    """

    cost: float
    horizon: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cost) and self.cost >= 0):
            raise ConfigError(f"policy cost must be a finite number >= 0, got {self.cost!r}")
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1:
            raise ConfigError(f"label horizon must be an int >= 1, got {self.horizon!r}")


@runtime_checkable
class FittedPolicy(Protocol):
    """A policy with its numbers fitted: maps a bar's prediction to a position."""

    @property
    def spec(self) -> PolicySpec:
        """The spec it was fitted from."""
        ...

    @property
    def params(self) -> dict[str, Any]:
        """The fitted numbers, JSON-able (recorded in the manifest)."""
        ...

    def step(
        self, state: tuple[float, int], prediction: float, volatility: float
    ) -> tuple[float, int]:
        """Next ``(position, bars held)`` from the current state and one bar's inputs."""
        ...


@runtime_checkable
class Policy(Protocol):
    """A policy kind: fits a :class:`FittedPolicy` on calibration rows."""

    def fit(
        self,
        predictions: npt.ArrayLike,
        labels: npt.ArrayLike,
        volatility: npt.ArrayLike | None,
        context: PolicyContext,
    ) -> FittedPolicy: ...


POLICY_KINDS: dict[str, Callable[[PolicySpec], Policy]] = {}


def register_policy(kind: str, factory: Callable[[PolicySpec], Policy]) -> None:
    """Make ``factory`` available as ``PolicySpec(kind=...)``."""
    POLICY_KINDS[kind] = factory


def get_policy(spec: PolicySpec) -> Policy:
    """The policy of a spec."""
    return POLICY_KINDS[spec.kind](spec)


def _finite_pairs(
    predictions: npt.ArrayLike, labels: npt.ArrayLike, volatility: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError("calibration predictions and labels must be 1-D and of one length")
    v = np.full_like(p, np.nan) if volatility is None else np.asarray(volatility, dtype=np.float64)
    if v.shape != p.shape:
        raise ValueError("calibration volatility must have the length of the predictions")
    keep = np.isfinite(p) & np.isfinite(y)
    return p[keep], y[keep], v[keep]


# ------------------------------------------------------------------------ band


@dataclass(frozen=True)
class FittedBand:
    """The band policy with its fitted numbers; ``entry`` is +inf when it stays flat."""

    spec: PolicySpec
    center: float
    scale: float
    entry: float
    exit: float
    min_hold: int
    vol_target: float
    diagnostics: Mapping[str, Any]

    @property
    def flat(self) -> bool:
        return not math.isfinite(self.entry)

    @property
    def params(self) -> dict[str, Any]:
        def num(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "center": num(self.center),
            "scale": num(self.scale),
            "entry": num(self.entry),  # None: flat (no skill shown, or nothing to fit on)
            "exit": num(self.exit),
            "min_hold": self.min_hold,
            "vol_target": num(self.vol_target),
            **dict(self.diagnostics),
        }

    def signal(self, prediction: float) -> float:
        return (prediction - self.center) / self.scale

    def _size(self, signal: float, volatility: float) -> float:
        size = self.spec.max_position
        if self.spec.sizing == "vol_target":
            if math.isfinite(volatility) and volatility > 0 and math.isfinite(self.vol_target):
                size *= min(1.0, self.vol_target / volatility)
            size *= min(1.0, abs(signal) / (self.entry + 1.0))
        return size

    def step(
        self, state: tuple[float, int], prediction: float, volatility: float
    ) -> tuple[float, int]:
        position, held = state
        if self.flat or not math.isfinite(prediction):
            return 0.0, 0
        s = self.signal(prediction)
        if position != 0.0 and held < self.min_hold:
            return position, held + 1
        if s >= self.entry and position <= 0.0:
            return self._size(s, volatility), 1
        if s <= -self.entry and position >= 0.0:
            return -self._size(s, volatility), 1
        if position > 0.0 and s < self.exit:
            return 0.0, 0
        if position < 0.0 and s > -self.exit:
            return 0.0, 0
        return position, (held + 1 if position != 0.0 else 0)


class BandPolicy:
    """The cost-aware no-trade band with hysteresis (module docstring, steps 1–4)."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec

    def _flat(self, context: PolicyContext, why: str, **diagnostics: Any) -> FittedBand:
        return FittedBand(
            spec=self.spec,
            center=0.0,
            scale=1.0,
            entry=math.inf,
            exit=self.spec.exit_level,
            min_hold=self.spec.min_hold or context.horizon,
            vol_target=math.nan,
            diagnostics={"flat_reason": why, **diagnostics},
        )

    def fit(
        self,
        predictions: npt.ArrayLike,
        labels: npt.ArrayLike,
        volatility: npt.ArrayLike | None,
        context: PolicyContext,
    ) -> FittedBand:
        p, y, v = _finite_pairs(predictions, labels, volatility)
        n = int(p.size)
        if n < self.spec.min_calibration_rows:
            return self._flat(
                context,
                f"{n} calibration rows, fewer than {self.spec.min_calibration_rows}",
                n_calibration=n,
            )
        center = float(p.mean())
        scale = float(p.std(ddof=1))
        if not (math.isfinite(scale) and scale > 0.0):
            return self._flat(context, "constant predictions", n_calibration=n)
        lo, hi = np.quantile(y, [0.01, 0.99])
        yw = np.clip(y, lo, hi)
        s = (p - center) / scale
        sd_y = float(yw.std(ddof=1))
        if not (math.isfinite(sd_y) and sd_y > 0.0):
            return self._flat(context, "constant labels", n_calibration=n)
        rho = _skill(s, y)
        n_eff = _effective_rows(s, y, context.horizon)
        if not math.isfinite(rho) or n_eff <= 3:
            return self._flat(context, "skill cannot be estimated", n_calibration=n)
        se = math.sqrt(max(1.0 - rho * rho, 0.0) / (n_eff - 2.0))
        rho_lo = rho - self.spec.confidence_z * se
        diagnostics = {
            "n_calibration": n,
            "n_effective": round(n_eff, 3),
            "skill_rho": rho,
            "skill_rho_lower": rho_lo,
        }
        if rho_lo <= 0.0:
            return self._flat(
                context,
                f"no skill on the training window: correlation {rho:.4f}, "
                f"lower bound {rho_lo:.4f} <= 0",
                **diagnostics,
            )
        beta = rho_lo * sd_y
        entry = 2.0 * context.cost / beta + self.spec.entry_margin
        exit_level = min(self.spec.exit_level, entry)
        finite_vol = v[np.isfinite(v) & (v > 0)]
        vol_target = float(np.median(finite_vol)) if finite_vol.size else math.nan
        return FittedBand(
            spec=self.spec,
            center=center,
            scale=scale,
            entry=entry,
            exit=exit_level,
            min_hold=self.spec.min_hold or context.horizon,
            vol_target=vol_target,
            diagnostics={
                **diagnostics,
                "edge_per_signal": beta,
                "round_trip_cost": 2 * context.cost,
            },
        )


# ------------------------------------------------------------------------ sign


@dataclass(frozen=True)
class FittedSign:
    """The naive rule: the sign of the prediction, every bar."""

    spec: PolicySpec

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def step(
        self, state: tuple[float, int], prediction: float, volatility: float
    ) -> tuple[float, int]:
        if not math.isfinite(prediction) or prediction == 0.0:
            return 0.0, 0
        position = math.copysign(self.spec.max_position, prediction)
        return position, (state[1] + 1 if position == state[0] else 1)


class SignPolicy:
    """Long when the prediction is positive, short when negative: nothing to fit."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec

    def fit(
        self,
        predictions: npt.ArrayLike,
        labels: npt.ArrayLike,
        volatility: npt.ArrayLike | None,
        context: PolicyContext,
    ) -> FittedSign:
        return FittedSign(self.spec)


register_policy("band", BandPolicy)
register_policy("sign", SignPolicy)


def fitted_from_params(spec: PolicySpec, params: Mapping[str, Any]) -> FittedPolicy:
    """The fitted policy a manifest recorded (``policy.serving``): what a version trades
    with when it serves. ``entry`` None means it stays flat."""
    if spec.kind == "sign":
        return FittedSign(spec)
    if spec.kind != "band":
        raise ConfigError(f"no fitted form for policy kind {spec.kind!r}")

    def num(key: str, default: float) -> float:
        value = params.get(key)
        return default if value is None else float(value)

    known = {"center", "scale", "entry", "exit", "min_hold", "vol_target"}
    return FittedBand(
        spec=spec,
        center=num("center", 0.0),
        scale=num("scale", 1.0),
        entry=num("entry", math.inf),
        exit=num("exit", spec.exit_level),
        min_hold=int(params.get("min_hold") or spec.min_hold or 1),
        vol_target=num("vol_target", math.nan),
        diagnostics={k: v for k, v in params.items() if k not in known},
    )


# ------------------------------------------------------------------------ apply


def apply_policies(
    predictions: npt.ArrayLike,
    volatility: npt.ArrayLike | None,
    segments: list[tuple[int, int, FittedPolicy]],
) -> FloatArray:
    """Positions for a series of predictions, each segment with its own fitted policy.

    Parameters
    ----------
    predictions : array-like of shape (n,)
        Predictions in time order (NaN = no prediction: flat).
    volatility : array-like of shape (n,) or None
        Trailing volatility at each bar (only ``vol_target`` sizing reads it).
    segments : list of (start, stop, policy)
        Half-open row ranges covering ``0..n`` in order, and the policy that trades
        each (one per walk-forward fold). The position carries over from one segment to
        the next, as a desk's book does when a new model takes over. A policy with
        ``flat`` true (a band that showed no skill) holds 0 on each of its bars and
        leaves the state at ``(0, 0)``, as its ``step`` would, without a loop.

    Returns
    -------
    numpy.ndarray
        Position decided at the close of each bar, in ``[-1, 1]``.
    """
    p = np.asarray(predictions, dtype=np.float64)
    v = np.full_like(p, np.nan) if volatility is None else np.asarray(volatility, dtype=np.float64)
    out = np.zeros(p.size)
    state: tuple[float, int] = (0.0, 0)
    covered = 0
    for start, stop, policy in segments:
        if start != covered or stop < start or stop > p.size:
            raise ValueError("policy segments must cover the predictions in order, without gaps")
        if getattr(policy, "flat", False) is True:
            # a flat policy's step is (0, 0) whatever it is given: no bar-by-bar loop
            if stop > start:
                state = (0.0, 0)  # out[start:stop] is already 0
        else:
            for i in range(start, stop):
                state = policy.step(state, float(p[i]), float(v[i]))
                out[i] = state[0]
        covered = stop
    if covered != p.size:
        raise ValueError("policy segments must cover every prediction")
    return out


def trailing_volatility(close: npt.ArrayLike, window: int) -> FloatArray:
    """Standard deviation of the last ``window`` one-bar log returns at each bar
    (``ddof=1``; NaN until ``window`` returns exist or when one of them is missing)."""
    import pandas as pd

    c = pd.Series(np.asarray(close, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ret = np.log(c).diff()
    return log_ret.rolling(window, min_periods=window).std().to_numpy()


def _autocorrelation(x: FloatArray, max_lag: int) -> FloatArray:
    """Sample autocorrelations of ``x`` at lags ``1..max_lag`` (FFT, biased estimator)."""
    centred = x - x.mean()
    n = centred.size
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[: max_lag + 1]
    if acov[0] <= 0.0:
        return np.zeros(max_lag)
    return np.asarray(acov[1:] / acov[0], dtype=np.float64)


def _effective_rows(s: FloatArray, y: FloatArray, horizon: int) -> float:
    r"""Independent observations behind a correlation of two autocorrelated series:
    :math:`n / (1 + 2\sum_{k=1}^{n/5} r_s(k)\,r_y(k))` (Bartlett; Pyper & Peterman 1998)
    on the ranks, and never more than :math:`n / h` (labels over :math:`h` bars overlap).
    A prediction that barely moves (a model that learnt a constant per fold) and a
    label that trends have few independent observations, however many rows."""
    import pandas as pd

    n = s.size
    max_lag = max(1, n // 5)
    rs = pd.Series(s).rank().to_numpy()
    ry = pd.Series(y).rank().to_numpy()
    factor = 1.0 + 2.0 * float(np.dot(_autocorrelation(rs, max_lag), _autocorrelation(ry, max_lag)))
    return min(n / horizon, n / max(factor, 1.0))


def _skill(s: FloatArray, y: FloatArray) -> float:
    """Spearman's rank correlation (average ranks for ties): robust to the fat tails and
    the volatility regimes of crypto returns, which swamp a Pearson correlation."""
    import pandas as pd

    rs = pd.Series(s).rank().to_numpy()
    ry = pd.Series(y).rank().to_numpy()
    if rs.std() == 0.0 or ry.std() == 0.0:
        return math.nan
    return float(np.corrcoef(rs, ry)[0, 1])
