"""Shared by the suite modules: one suite from a list of rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

    from expectations.rules import SqlRule


def make_suite(name: str, table: str, rules: Sequence[SqlRule], notes: str) -> ExpectationSuite:
    """An ExpectationSuite named ``name`` for ``raw.<table>`` holding ``rules``."""
    import great_expectations as gx

    return gx.ExpectationSuite(
        name=name,
        expectations=list(rules),
        meta={"table": f"raw.{table}", "owner": "brain (expectations/)"},
        notes=notes,
    )
