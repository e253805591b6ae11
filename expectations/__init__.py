"""Great Expectations suites of Brain, defined in code: one per raw table.

Importing this package is cheap: Great Expectations (~5 s to import) is only loaded by
``build_suites`` / ``build_suite`` and by ``expectations.rules``.

- ``QualitySettings``: bounds and severities (env prefix ``BRAIN_QUALITY_``).
- ``build_suites(settings)``: every suite, ready for ``context.suites.add_or_update``.
- ``build_suite(table, settings)``: the suite of one raw table.
- ``SUITES``: raw table → suite name.

See README.md in this folder for the rules, their defaults and how to add one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from expectations.settings import QualitySettings, Severity, default_docs_dir

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

__all__ = [
    "SUITES",
    "QualitySettings",
    "Severity",
    "build_suite",
    "build_suites",
    "default_docs_dir",
]

# raw table -> (suite name, module that builds it)
_MODULES: dict[str, str] = {
    "ohlcv": "expectations.ohlcv",
    "funding_rates": "expectations.funding",
    "open_interest": "expectations.open_interest",
    "liquidations": "expectations.liquidations",
    "model_metrics": "expectations.model_metrics",
}
SUITES: dict[str, str] = {table: f"raw.{table}" for table in _MODULES}


def build_suite(table: str, settings: QualitySettings | None = None) -> ExpectationSuite:
    """The suite of ``raw.<table>``; ``KeyError`` names the known tables."""
    if table not in _MODULES:
        raise KeyError(f"no suite for table {table!r} (known: {', '.join(_MODULES)})")
    module = importlib.import_module(_MODULES[table])
    suite: ExpectationSuite = module.build_suite(settings)
    return suite


def build_suites(settings: QualitySettings | None = None) -> list[ExpectationSuite]:
    """Every suite, in table order (ohlcv, funding_rates, open_interest, liquidations,
    model_metrics), built with ``settings`` (default ``QualitySettings()``)."""
    resolved = settings if settings is not None else QualitySettings()
    return [build_suite(table, resolved) for table in _MODULES]
