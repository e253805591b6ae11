"""The :class:`ModelSelector`: regime, champion, confidence, switch; every decision
recorded in ``raw.model_selections``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brain_lib.errors import ConfigError, DataError, NoModelError, UnknownVersionError
from brain_lib.selection._choice import (
    ChampionEvidence,
    Choice,
    Confidence,
    LearnedChoice,
    SwitchDecision,
    choose_champion,
    confidence_score,
    learn_preference,
    shrunk_agreement,
    switch_decision,
)
from brain_lib.selection._regimes import (
    RegimeReading,
    SelectionSettings,
    check_regime,
    current_regime,
    detect_regimes,
    regime_run_length,
)

if TYPE_CHECKING:
    import psycopg

    from brain_lib.warehouse import SharedConnection

# ------------------------------------------------------------------ selector


@dataclass(frozen=True)
class Selection:
    """One decision of the selector, as recorded in ``raw.model_selections``."""

    exchange: str
    symbol: str
    timeframe: str
    decided_at: datetime
    regime: str
    regime_source: str
    reading: RegimeReading | None
    choice: Choice
    confidence: Confidence
    learned: dict[str, LearnedChoice]
    reason: str

    @property
    def model_type(self) -> str:
        return self.choice.champion.model_type

    @property
    def version_id(self) -> str:
        return self.choice.champion.version_id

    @property
    def learned_model_type(self) -> str | None:
        learned = self.learned.get(self.regime)
        return learned.model_type if learned else None


def _utc(at: datetime | pd.Timestamp | None) -> pd.Timestamp:
    ts = pd.Timestamp(at if at is not None else datetime.now(UTC))
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class ModelSelector:
    """Picks the champion that suits the volatility regime of the moment.

    Parameters
    ----------
    db : str or SharedConnection
        Warehouse URL, or the connection of a :class:`~brain_lib.brain.BrainLibrary`.
    settings : SelectionSettings, optional
        Default: ``SelectionSettings.load()`` (``BRAIN_SELECTION_*``).
    exchange, timeframe : str, optional
        Market of the symbols (needed when a symbol has champions on several).
    learn : bool
        Also learn the preference from history and report it beside the configured one.
    record : bool
        Record every decision in ``raw.model_selections``.
    """

    def __init__(
        self,
        db: str | SharedConnection,
        *,
        settings: SelectionSettings | None = None,
        exchange: str | None = None,
        timeframe: str | None = None,
        learn: bool = True,
        record: bool = True,
    ) -> None:
        from brain_lib.warehouse import SharedConnection

        self._db = SharedConnection(db) if isinstance(db, str) else db
        self.settings = settings or SelectionSettings.load()
        self.exchange = exchange
        self.timeframe = timeframe
        self.learn = learn
        self.record = record

    # ------------------------------------------------------------- reading

    def _market(
        self, conn: psycopg.Connection, symbol: str, exchange: str | None, timeframe: str | None
    ) -> tuple[str, str]:
        exchange = exchange or self.exchange
        timeframe = timeframe or self.timeframe
        if exchange and timeframe:
            return exchange, timeframe
        rows = conn.execute(
            """
            select distinct exchange, timeframe from raw.model_champions
            where symbol = %s and (%s::text is null or exchange = %s)
              and (%s::text is null or timeframe = %s)
            order by 1, 2
            """,
            (symbol, exchange, exchange, timeframe, timeframe),
        ).fetchall()
        if not rows:
            raise NoModelError(f"no champion for {symbol}: train one first (brain train)")
        if len(rows) > 1:
            listed = ", ".join(f"{ex} {tf}" for ex, tf in rows)
            raise ConfigError(
                f"{symbol} has champions on several markets ({listed}); pass exchange and timeframe"
            )
        return str(rows[0][0]), str(rows[0][1])

    def champions(
        self, conn: psycopg.Connection, symbol: str, exchange: str, timeframe: str
    ) -> list[ChampionEvidence]:
        """The symbol's champions with their stored out-of-sample evidence."""
        from brain_lib.registry import COMPOSITE_OF_METRICS_SQL

        rows = conn.execute(
            f"""
            select v.version_id, v.model_type, c.since, v.train_end, v.manifest,
                   v.artifact_uri, v.artifact_sha256, {COMPOSITE_OF_METRICS_SQL},
                   max(m.value) filter (where m.metric = 'dsr'),
                   max(m.value) filter (where m.metric = 'psr'),
                   max(m.value) filter (where m.metric = 'policy_flat_folds')
            from raw.model_champions c
            join raw.model_versions v on v.version_id = c.version_id
            left join raw.model_metrics m on m.version_id = v.version_id and m.scope = 'oos'
            where c.symbol = %s and c.exchange = %s and c.timeframe = %s
            group by v.version_id, c.since
            order by v.model_type
            """,
            (symbol, exchange, timeframe),
        ).fetchall()
        return [self._evidence(row, exchange, symbol, timeframe) for row in rows]

    @staticmethod
    def _evidence(
        row: Sequence[Any], exchange: str, symbol: str, timeframe: str
    ) -> ChampionEvidence:
        vid, mtype, since, train_end, manifest, uri, sha, composite, dsr, psr, flat = row
        folds = (manifest.get("policy") or {}).get("folds")
        return ChampionEvidence(
            version_id=vid,
            model_type=mtype,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            since=since,
            train_end=pd.Timestamp(train_end) if train_end is not None else None,
            composite=composite,
            dsr=dsr,
            psr=psr,
            policy_flat_folds=flat,
            scored_folds=len(folds) if isinstance(folds, list) else None,
            manifest=manifest,
            artifact_uri=uri,
            artifact_sha256=sha,
        )

    def _version(self, conn: psycopg.Connection, version_id: str) -> ChampionEvidence:
        from brain_lib.registry import COMPOSITE_OF_METRICS_SQL

        row = conn.execute(
            f"""
            select v.version_id, v.model_type, null::timestamptz, v.train_end, v.manifest,
                   v.artifact_uri, v.artifact_sha256, {COMPOSITE_OF_METRICS_SQL},
                   max(m.value) filter (where m.metric = 'dsr'),
                   max(m.value) filter (where m.metric = 'psr'),
                   max(m.value) filter (where m.metric = 'policy_flat_folds'),
                   v.exchange, v.symbol, v.timeframe
            from raw.model_versions v
            left join raw.model_metrics m on m.version_id = v.version_id and m.scope = 'oos'
            where v.version_id = %s
            group by v.version_id
            """,
            (version_id,),
        ).fetchone()
        if row is None:
            raise UnknownVersionError(f"unknown model version {version_id!r}")
        return self._evidence(row[:11], row[11], row[12], row[13])

    def _candles(
        self,
        conn: psycopg.Connection,
        exchange: str,
        symbol: str,
        timeframe: str,
        at: pd.Timestamp,
        bars: int,
    ) -> pd.DataFrame:
        """The last ``bars`` bars of the candles closed at or before ``at`` (``ts + bar
        <= at``), on the bar grid. Point-in-time: nothing later is read. When the newest
        such candle is old, the regime is that bar's (the reading names it)."""
        from brain_lib.errors import UnknownSymbolError
        from brain_lib.training import bar_length, candles_on_grid, load_training_candles

        bar = bar_length(timeframe)
        end = at - bar + pd.Timedelta(microseconds=1)
        row = conn.execute(
            "select max(ts) from raw.ohlcv where exchange = %s and symbol = %s "
            "and timeframe = %s and ts < %s",
            (exchange, symbol, timeframe, end.to_pydatetime()),
        ).fetchone()
        if row is None or row[0] is None:
            raise UnknownSymbolError(
                f"no {timeframe} candles of {symbol} on {exchange} closed at or before "
                f"{at:%Y-%m-%d %H:%M} UTC: collect or ingest some first"
            )
        start = pd.Timestamp(row[0]) - bar * (bars - 1)
        candles = load_training_candles(
            conn, exchange=exchange, symbol=symbol, timeframe=timeframe, start=start, end=end
        )
        return candles_on_grid(candles, timeframe)

    # ------------------------------------------------------------- serving

    def _served(
        self, champion: ChampionEvidence, grid: pd.DataFrame
    ) -> tuple[pd.Series, pd.Series, pd.Series] | str:
        """Centred predictions, forward-return labels and net returns of ``champion`` on
        the bars of ``grid`` after its training window; a note when it cannot serve."""
        from brain_lib.analysis import Champion
        from brain_lib.backtest import backtest_positions
        from brain_lib.errors import BrainError
        from brain_lib.features import feature_warmup_bars
        from brain_lib.labels import forward_return
        from brain_lib.policy import apply_policies, trailing_volatility
        from brain_lib.registry import load_model
        from brain_lib.training import FUNDING_COLUMN, feature_frame

        if champion.train_end is None or not champion.artifact_uri:
            return "no artifact"
        after = grid.index > champion.train_end
        if not after.any():
            return "no bar after its training window yet"
        ch = Champion(
            version_id=champion.version_id,
            exchange=champion.exchange,
            symbol=champion.symbol,
            timeframe=champion.timeframe,
            model_type=champion.model_type,
            manifest=champion.manifest,
            artifact_uri=champion.artifact_uri,
            artifact_sha256=champion.artifact_sha256,
            train_start=champion.train_end,
            train_end=champion.train_end,
        )
        try:
            features = feature_frame(grid)
            names = [str(n) for n in champion.manifest.get("features", [])]
            if not names or any(n not in features.columns for n in names):
                return "its features are not made from these candles"
            rows = features.iloc[feature_warmup_bars() :][names]
            rows = rows[(rows.index > champion.train_end) & rows.notna().all(axis=1).to_numpy()]
            if rows.empty:
                return "no complete feature row after its training window"
            model = load_model(ch.artifact_uri, ch.artifact_sha256, ch.manifest, ch.version_id)
            center = float(ch.manifest.get("policy", {}).get("prediction_center") or 0.0)
            pred = pd.Series(model.predict(rows), index=rows.index, dtype=float) - center
            policy = ch.policy()
            vol = pd.Series(
                trailing_volatility(grid["close"].to_numpy(dtype=float), policy.spec.vol_window),
                index=grid.index,
            ).reindex(pred.index)
            positions = apply_policies(pred.to_numpy(), vol.to_numpy(), [(0, len(pred), policy)])
            # the last decision bar has no next bar to book on
            pos = pd.Series(positions, index=pred.index).iloc[:-1]
            net = (
                backtest_positions(
                    pos, grid["close"], cost_bps=ch.cost_bps, funding=grid.get(FUNDING_COLUMN)
                ).net_returns
                if len(pos)
                else pd.Series(dtype=float)
            )
        except (BrainError, ValueError, KeyError, ImportError) as exc:
            return f"cannot serve it: {exc}"
        label = forward_return(grid, horizon=ch.label_horizon).reindex(pred.index)
        return pred, label, net

    def _confidence(
        self,
        champion: ChampionEvidence,
        at: pd.Timestamp,
        served: tuple[pd.Series, pd.Series, pd.Series] | str,
    ) -> Confidence:
        s = self.settings
        note = ""
        hits = n = 0
        if isinstance(served, str):
            note = f"agreement: {served}"
        else:
            pred, label, _ = served
            known = pd.concat([pred, label], axis=1).dropna().iloc[-s.agreement_bars :]
            n = len(known)
            hits = int((np.sign(known.iloc[:, 0]) == np.sign(known.iloc[:, 1])).sum())
        agreement = shrunk_agreement(hits, n, s.agreement_prior)
        age = (
            max((at - champion.train_end).total_seconds() / 86_400.0, 0.0)
            if champion.train_end is not None
            else math.inf
        )
        evidence, metric = champion.evidence
        stability = champion.stability
        value = confidence_score(evidence, stability, agreement, age, s)
        return Confidence(value, evidence, metric, stability, agreement, n, hits, age, note)

    # ------------------------------------------------------------- decisions

    def _installed(self) -> tuple[list[str], list[str]]:
        import brain_lib.models as models

        installed = sorted(models.MODEL_TYPES)
        # known here but not installed: the deep types without torch
        return installed, sorted({*installed, *models.UNAVAILABLE_MODEL_TYPES})

    def _decide(
        self,
        conn: psycopg.Connection,
        symbol: str,
        volatility_regime: str | None,
        exchange: str | None,
        timeframe: str | None,
        at: datetime | pd.Timestamp | None,
    ) -> tuple[Selection, pd.DataFrame, dict[str, Any]]:
        from brain_lib.features import feature_warmup_bars

        if volatility_regime is not None:
            check_regime(volatility_regime)
        when = _utc(at)
        s = self.settings
        exchange, timeframe = self._market(conn, symbol, exchange, timeframe)
        champions = self.champions(conn, symbol, exchange, timeframe)
        if not champions:
            raise NoModelError(f"no champion for {exchange} {symbol} {timeframe}")
        installed, known = self._installed()
        bars = max(s.history_bars + s.vol_window, s.learn_bars) + feature_warmup_bars() + 1
        grid = self._candles(conn, exchange, symbol, timeframe, when, bars)
        regimes = detect_regimes(grid, s)
        reading: RegimeReading | None
        try:
            reading = current_regime(grid, s)
        except DataError:
            if volatility_regime is None:
                raise
            reading = None  # a given regime needs no detection
        regime = volatility_regime or (reading.regime if reading else "normal")
        reading_bars = regime_run_length(regimes["regime"], regime)
        choice = choose_champion(regime, s.preference, champions, installed, known=known)
        cache: dict[str, Any] = {}
        for c in champions:
            if c.model_type in installed and (
                self.learn or c.version_id == choice.champion.version_id
            ):
                cache[c.version_id] = self._served(c, grid)
        served = cache.get(choice.champion.version_id, "not served")
        confidence = self._confidence(choice.champion, when, served)
        learned: dict[str, LearnedChoice] = {}
        if self.learn:
            from brain_lib.metrics import periods_per_year

            returns = {
                c.model_type: cache[c.version_id][2]
                for c in champions
                if c.version_id in cache and not isinstance(cache[c.version_id], str)
            }
            learned = learn_preference(
                returns,
                regimes["regime"],
                min_bars=s.learn_min_bars,
                periods_per_year=periods_per_year(timeframe),
            )
        source = "given" if volatility_regime is not None else "detected"
        reason = choice.reason
        if self.learn:
            lc = learned[regime]
            if lc.model_type is None:
                reason += f"; learned from history: no choice for {regime} ({lc.note})"
            elif lc.model_type == choice.champion.model_type:
                reason += f"; learned from history: {lc.model_type} too"
            else:
                reason += f"; learned from history: {lc.model_type} (Sharpe {lc.sharpe:.2f})"
        selection = Selection(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            decided_at=when.to_pydatetime(),
            regime=regime,
            regime_source=source,
            reading=reading,
            choice=choice,
            confidence=confidence,
            learned=learned,
            reason=reason,
        )
        context = {"run_bars": reading_bars, "grid": grid, "cache": cache}
        return selection, regimes, context

    def select_model_for_symbol(
        self,
        symbol: str,
        volatility_regime: str | None = None,
        *,
        exchange: str | None = None,
        timeframe: str | None = None,
        at: datetime | pd.Timestamp | None = None,
    ) -> Selection:
        """The champion of ``symbol`` that suits ``volatility_regime`` (detected from the
        candles closed at or before ``at``, default now, when not given)."""

        def work(conn: psycopg.Connection) -> Selection:
            selection, _, _ = self._decide(conn, symbol, volatility_regime, exchange, timeframe, at)
            if self.record:
                _record(conn, selection, kind="select")
            return selection

        return self._db.run(work)

    def get_model_confidence(
        self,
        symbol: str,
        *,
        model_type: str | None = None,
        exchange: str | None = None,
        timeframe: str | None = None,
        at: datetime | pd.Timestamp | None = None,
    ) -> float:
        """Confidence in [0, 1] in the champion of ``symbol`` (of ``model_type``; default
        the one the current regime selects): the module docstring's formula."""
        return self.confidence(
            symbol, model_type=model_type, exchange=exchange, timeframe=timeframe, at=at
        ).value

    def confidence(
        self,
        symbol: str,
        *,
        model_type: str | None = None,
        exchange: str | None = None,
        timeframe: str | None = None,
        at: datetime | pd.Timestamp | None = None,
    ) -> Confidence:
        """:meth:`get_model_confidence` with every input of the formula."""
        when = _utc(at)

        def work(conn: psycopg.Connection) -> Confidence:
            if model_type is None:
                selection, _, _ = self._decide(conn, symbol, None, exchange, timeframe, at)
                return selection.confidence
            ex, tf = self._market(conn, symbol, exchange, timeframe)
            installed, known = self._installed()
            if model_type not in installed:
                raise ConfigError(
                    f"model type {model_type!r} is "
                    f"{'not installed here' if model_type in known else 'unknown'} "
                    f"(installed: {', '.join(installed)})"
                )
            found = [c for c in self.champions(conn, symbol, ex, tf) if c.model_type == model_type]
            if not found:
                raise NoModelError(f"no {model_type} champion for {ex} {symbol} {tf}")
            grid = self._candles(conn, ex, symbol, tf, when, self.settings.agreement_bars + 400)
            return self._confidence(found[0], when, self._served(found[0], grid))

        return self._db.run(work)

    def should_switch_model(
        self,
        symbol: str,
        current_model_id: str,
        volatility_regime: str | None = None,
        *,
        exchange: str | None = None,
        timeframe: str | None = None,
        at: datetime | pd.Timestamp | None = None,
    ) -> SwitchDecision:
        """Whether to replace ``current_model_id`` (a version id) by the selector's
        choice for ``volatility_regime`` (detected when not given), with hysteresis
        (:func:`switch_decision`): the regime must have lasted ``persist_bars`` bars or
        the confidence must improve by ``switch_margin``."""
        when = _utc(at)

        def work(conn: psycopg.Connection) -> SwitchDecision:
            current = self._version(conn, current_model_id)
            if current.symbol != symbol:
                raise ConfigError(
                    f"version {current_model_id} is a model of {current.symbol}, not {symbol}"
                )
            selection, _, context = self._decide(
                conn,
                symbol,
                volatility_regime,
                exchange or current.exchange,
                timeframe or current.timeframe,
                at,
            )
            served = context["cache"].get(current.version_id)
            if served is None:
                served = self._served(current, context["grid"])
            current_conf = self._confidence(current, when, served)
            decision = switch_decision(
                current_id=current.version_id,
                candidate_id=selection.version_id,
                run_bars=int(context["run_bars"]),
                current_confidence=current_conf.value,
                candidate_confidence=selection.confidence.value,
                persist_bars=self.settings.persist_bars,
                margin=self.settings.switch_margin,
            )
            if self.record:
                _record(
                    conn,
                    selection,
                    kind="switch",
                    current=current.version_id,
                    current_confidence=current_conf.value,
                    decision=decision,
                )
            return decision

        return self._db.run(work)


# ------------------------------------------------------------------ recording


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _record(
    conn: psycopg.Connection,
    selection: Selection,
    *,
    kind: str,
    current: str | None = None,
    current_confidence: float | None = None,
    decision: SwitchDecision | None = None,
) -> None:
    """One row of ``raw.model_selections`` (append-only)."""
    from psycopg.types.json import Jsonb

    reading = selection.reading
    conf = selection.confidence
    details = {
        "confidence": {
            k: v if not isinstance(v, float) or math.isfinite(v) else None
            for k, v in asdict(conf).items()
        },
        "learned": {r: asdict(lc) for r, lc in selection.learned.items()},
        "choice_reason": selection.choice.reason,
    }
    reason = selection.reason if decision is None else f"{decision.reason}; {selection.reason}"
    conn.execute(
        """
        insert into raw.model_selections (
            decided_at, kind, exchange, symbol, timeframe, regime, regime_source,
            as_of_bar, volatility, volatility_percentile, regime_run_bars,
            preferred_model_type, model_type, version_id, is_fallback, confidence,
            learned_model_type, current_version_id, current_confidence, switch, reason,
            details
        ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                  %s, %s, %s, %s, %s)
        """,
        (
            selection.decided_at,
            kind,
            selection.exchange,
            selection.symbol,
            selection.timeframe,
            selection.regime,
            selection.regime_source,
            reading.as_of_bar.to_pydatetime() if reading else None,
            _finite(reading.volatility) if reading else None,
            _finite(reading.percentile) if reading else None,
            reading.run_bars if reading else None,
            selection.choice.preferred_model_type,
            selection.model_type,
            selection.version_id,
            selection.choice.fallback,
            conf.value,
            selection.learned_model_type,
            current,
            current_confidence,
            None if decision is None else decision.switch,
            reason,
            Jsonb(details),
        ),
    )
