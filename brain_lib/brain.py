"""``BrainLibrary``: the facade a trading service or notebook uses.

    >>> brain = BrainLibrary(dsn="postgresql://…")               # doctest: +SKIP
    >>> active = brain.get_active_model("BTC/USDT")              # doctest: +SKIP
    >>> active.model.predict(features[active.manifest["features"]])  # doctest: +SKIP

Loaded models are cached by version id (an immutable version never needs reloading);
every load verifies the artifact's sha256 first.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from brain_lib.errors import MartNotBuiltError, NoModelError, RegistryError
from brain_lib.registry import load_model
from brain_lib.warehouse import SharedConnection, resolve_dsn

if TYPE_CHECKING:
    from brain_lib.config import Settings
    from brain_lib.models import Model
    from brain_lib.selection import ModelSelector, SelectionSettings

__all__ = ["ActiveModel", "BrainLibrary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveModel:
    """The champion in service: the loaded model, its manifest and where it came from."""

    version_id: str
    symbol: str
    exchange: str
    timeframe: str
    model_type: str
    model: Model
    manifest: dict[str, Any]
    champion_since: datetime

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])


class BrainLibrary:
    """Read access to Brain's models.

    Parameters
    ----------
    dsn : str, optional
        Warehouse URL. Default: ``BRAIN_DATABASE_URL`` or the embedded warehouse of
        ``settings`` (started if needed).
    settings : Settings, optional
        Used only when ``dsn`` is not given.
    cache_size : int
        How many loaded models to keep (least recently used are dropped).
    """

    def __init__(
        self, dsn: str | None = None, *, settings: Settings | None = None, cache_size: int = 32
    ) -> None:
        if dsn is None:
            from brain_lib.config import Settings

            dsn = resolve_dsn(settings or Settings())
        self._db = SharedConnection(dsn)
        self._cache: OrderedDict[str, Model] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        log.info("brain_library_integration_enabled", extra={"cache_size": cache_size})

    # ------------------------------------------------------------- connection

    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a read on the library's own connection (kept open; reopened once if the
        server dropped it)."""

        def read(conn: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
            cur = conn.execute(sql, params)
            return [d.name for d in cur.description or []], cur.fetchall()

        return self._db.run(read)

    def selector(
        self,
        *,
        settings: SelectionSettings | None = None,
        exchange: str | None = None,
        timeframe: str | None = None,
        learn: bool = True,
        record: bool = True,
    ) -> ModelSelector:
        """A :class:`~brain_lib.selection.ModelSelector` on the library's connection: the
        champion that suits the volatility regime, its confidence, whether to switch."""
        from brain_lib.selection import ModelSelector

        return ModelSelector(
            self._db,
            settings=settings,
            exchange=exchange,
            timeframe=timeframe,
            learn=learn,
            record=record,
        )

    def close(self) -> None:
        """Close the library's connection (it reopens on the next call)."""
        self._db.close()

    def __enter__(self) -> BrainLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- models

    def _champions(
        self, symbol: str, model_type: str | None, exchange: str | None, timeframe: str | None
    ) -> list[tuple[Any, ...]]:
        """Champions of a symbol matching the filters, with their artifact."""
        _, rows = self._query(
            """
                select c.version_id, c.exchange, c.timeframe, c.model_type, c.since,
                       v.artifact_uri, v.artifact_sha256, v.manifest
                from raw.model_champions c
                join raw.model_versions v on v.version_id = c.version_id
                where c.symbol = %s and (%s::text is null or c.model_type = %s)
                  and (%s::text is null or c.exchange = %s)
                  and (%s::text is null or c.timeframe = %s)
                order by c.exchange, c.timeframe, c.model_type
                """,
            (symbol, model_type, model_type, exchange, exchange, timeframe, timeframe),
        )
        return rows

    def _active_row(
        self, symbol: str, model_type: str | None, exchange: str | None, timeframe: str | None
    ) -> tuple[Any, ...]:
        """The champion in service: the one of ``model_type``, or — across model types —
        the one ``marts.best_model_per_symbol`` ranks first on their common window."""
        what = " ".join(x for x in (exchange, symbol, timeframe, model_type) if x)
        rows = self._champions(symbol, model_type, exchange, timeframe)
        if not rows:
            raise NoModelError(f"no champion model for {what}")
        markets = sorted({(r[1], r[2]) for r in rows})
        if len(markets) > 1:
            listed = ", ".join(f"{ex} {tf}" for ex, tf in markets)
            raise RegistryError(
                f"{symbol} has champions on several markets ({listed}); pass exchange= and "
                "timeframe="
            )
        if len(rows) == 1:
            return rows[0]
        best = self.get_best_model(symbol, exchange=markets[0][0], timeframe=markets[0][1])
        chosen = [r for r in rows if r[0] == best["version_id"]]
        if not chosen:
            raise NoModelError(
                f"marts.best_model_per_symbol is out of date for {what}: rebuild it "
                "(brain dbt build)"
            )
        return chosen[0]

    def get_active_model(
        self,
        symbol: str,
        model_type: str | None = None,
        *,
        exchange: str | None = None,
        timeframe: str | None = None,
    ) -> ActiveModel:
        """The champion of ``symbol``, loaded and hash-verified.

        With ``model_type``: that type's champion. Without: the best champion across
        model types, compared on their common out-of-sample window
        (``marts.best_model_per_symbol``). A symbol traded on several exchanges or
        timeframes needs ``exchange`` and ``timeframe``."""
        version_id, ex, tf, mtype, since, uri, sha, manifest = self._active_row(
            symbol, model_type, exchange, timeframe
        )
        model = self._load(version_id, uri, sha, manifest)
        return ActiveModel(
            version_id=version_id,
            symbol=symbol,
            exchange=ex,
            timeframe=tf,
            model_type=mtype,
            model=model,
            manifest=manifest,
            champion_since=since,
        )

    def _load(self, version_id: str, uri: str, sha: str, manifest: dict[str, Any]) -> Model:
        with self._lock:
            if version_id in self._cache:
                self._cache.move_to_end(version_id)
                return self._cache[version_id]
        model = load_model(uri, sha, manifest, version_id)
        with self._lock:
            self._cache[version_id] = model
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return model

    def get_top_features(
        self,
        symbol: str,
        n: int = 10,
        method: str = "shap",
        model_type: str | None = None,
        *,
        exchange: str | None = None,
        timeframe: str | None = None,
    ) -> list[dict[str, Any]]:
        """The ``n`` most important features of the active model of ``symbol`` (as
        :meth:`get_active_model` picks it) by ``method`` (``shap``, ``permutation`` or
        ``correlation``), from its most recent importance computation: feature,
        importance, normalised, rank, computed_at."""
        version_id = self._active_row(symbol, model_type, exchange, timeframe)[0]
        names, found = self._query(
            """
            select feature, importance, normalised, rank, kind, computed_at
            from raw.feature_importance
            where version_id = %s and method = %s and rank is not null
              and computed_at = (
                  select max(computed_at) from raw.feature_importance
                  where version_id = %s and method = %s)
            order by rank
            limit %s
            """,
            (version_id, method, version_id, method, n),
        )
        if not found:
            raise NoModelError(f"no {method} importance stored for {version_id}")
        return [dict(zip(names, row, strict=True)) for row in found]

    def get_model_history(self, symbol: str) -> list[dict[str, Any]]:
        """Every promotion and rollback of ``symbol``, oldest first."""
        names, found = self._query(
            """
            select event_id, created_at, event_type, exchange, timeframe, model_type,
                   version_id, previous_version_id, champion_score, challenger_score,
                   degradation, threshold, reason
            from raw.model_events where symbol = %s order by created_at, event_id
            """,
            (symbol,),
        )
        rows = [dict(zip(names, row, strict=True)) for row in found]
        if not rows:
            raise NoModelError(f"no model history for {symbol}")
        return rows

    def get_best_model(
        self, symbol: str, *, exchange: str | None = None, timeframe: str | None = None
    ) -> dict[str, Any]:
        """The row of ``marts.best_model_per_symbol`` for ``symbol`` (on ``exchange`` and
        ``timeframe``, needed when the symbol is traded on several): the best champion
        across model types on their common window, which the row names."""
        from psycopg import errors as pg_errors

        try:
            names, found = self._query(
                """
                select * from marts.best_model_per_symbol
                where symbol = %s and (%s::text is null or exchange = %s)
                  and (%s::text is null or timeframe = %s)
                order by exchange, timeframe
                """,
                (symbol, exchange, exchange, timeframe, timeframe),
            )
        except pg_errors.UndefinedTable:
            raise MartNotBuiltError(
                "marts.best_model_per_symbol does not exist: build it with brain dbt build"
            ) from None
        if not found:
            raise NoModelError(
                f"no best model for {symbol}: no champion has a score on a common window "
                "(or the mart is stale: brain dbt build)"
            )
        if len(found) > 1:
            listed = ", ".join(
                f"{r[names.index('exchange')]} {r[names.index('timeframe')]}" for r in found
            )
            raise RegistryError(
                f"{symbol} has a best model on several markets ({listed}); pass exchange= "
                "and timeframe="
            )
        return dict(zip(names, found[0], strict=True))
