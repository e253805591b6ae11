"""The one report format of the benchmarks: what ``bench/all.py`` reads and tabulates.

Use from a benchmark script (``bench/`` is on ``sys.path`` when a script there runs)::

    from _report import add_report_args, measure, ratio, write_report

    add_report_args(parser)        # adds --json PATH and --quick to an argparse parser
    ...
    if args.json:
        write_report(
            args.json,                              # path (str or Path); folders are made
            "copy",                                 # the benchmark's short name
            [measure("copy_ohlcv fresh", seconds=7.75),
             measure("rows/s", value=129_000, unit="rows/s")],
            [ratio("to_sql / copy_ohlcv", brain=7.75, other=19.0,
                   other_name="DataFrame.to_sql", target=">= 10")],
        )

Signatures:

* ``add_report_args(parser) -> None``: ``--json PATH`` (``args.json``, default None) and
  ``--quick`` (``args.quick``: small sizes, one repeat; each script decides what it means).
* ``measure(name, seconds=None, value=None, unit="s") -> dict``: one timing (``seconds``)
  or another figure (``value`` with its ``unit``).
* ``ratio(name, brain, other, other_name, *, ratio=None, target=None, ok=None) -> dict``:
  Brain's figure next to the comparison's. ``ratio`` defaults to ``other / brain`` (for
  seconds: how many times faster Brain is); pass it when the row reads the other way and
  say which way in ``name`` (e.g. ``"flow / bare fits"``). ``target`` is text; when it is
  ``">= X"``, ``"> X"``, ``"<= X"`` or ``"< X"`` (also with ``≥ ≤``) and ``ok`` is not
  given, ``ok`` is ``ratio`` checked against it. No target: ``ok`` stays None.
* ``write_report(path, bench, measures, ratios) -> None``: writes the JSON below.
* ``read_report(path) -> dict``: reads and checks one (what ``bench/all.py`` uses).

The file::

    {"bench": "<name>",
     "measures": [{"name": str, "seconds": float|null, "value": float|null, "unit": str}],
     "ratios": [{"name": str, "brain": float, "other": float, "ratio": float,
                 "other_name": str, "target": str|null, "ok": bool|null}]}

Non-finite numbers (NaN, inf) are written as null, so the file is strict JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_TARGET_RE = re.compile(r"^\s*(>=|<=|>|<|≥|≤)\s*([-+0-9.eE]+)\s*[x×%]?\s*$")


def add_report_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--json PATH`` and ``--quick`` to a benchmark's parser."""
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="also write the measures and ratios as JSON to PATH (read by bench/all.py)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and one repeat (a smoke run)"
    )


def _num(x: Any) -> float | None:
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def measure(
    name: str, seconds: float | None = None, value: float | None = None, unit: str = "s"
) -> dict[str, Any]:
    """One measure: a timing in seconds, or another figure with its unit."""
    return {"name": str(name), "seconds": _num(seconds), "value": _num(value), "unit": unit}


def check_target(value: float | None, target: str | None) -> bool | None:
    """``value`` against a target like ``">= 10"``; None when either is unknown."""
    if value is None or target is None or not math.isfinite(value):
        return None
    match = _TARGET_RE.match(target)
    if not match:
        return None
    op, bound = match.group(1), float(match.group(2))
    if op in (">=", "≥"):
        return value >= bound
    if op in ("<=", "≤"):
        return value <= bound
    if op == ">":
        return value > bound
    return value < bound


def ratio(
    name: str,
    brain: float,
    other: float,
    other_name: str,
    *,
    ratio: float | None = None,
    target: str | None = None,
    ok: bool | None = None,
) -> dict[str, Any]:
    """Brain's figure next to the comparison's (see the module docstring)."""
    b, o = _num(brain), _num(other)
    if ratio is None and b is not None and o is not None and b != 0:
        ratio = o / b
    r = _num(ratio)
    if ok is None:
        ok = check_target(r, target)
    return {
        "name": str(name),
        "brain": b,
        "other": o,
        "ratio": r,
        "other_name": str(other_name),
        "target": target,
        "ok": None if ok is None else bool(ok),
    }


def write_report(
    path: str | os.PathLike[str],
    bench: str,
    measures: Iterable[dict[str, Any]],
    ratios: Iterable[dict[str, Any]],
) -> None:
    """Write one benchmark's report as strict JSON (atomically: a temp file, then rename)."""
    report = {"bench": bench, "measures": list(measures), "ratios": list(ratios)}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, allow_nan=False, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one report; ValueError when it is not in the format above."""
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    if not isinstance(report, dict) or not isinstance(report.get("bench"), str):
        raise ValueError(f"{path}: not a benchmark report (no 'bench' name)")
    for key in ("measures", "ratios"):
        if not isinstance(report.get(key), list):
            raise ValueError(f"{path}: '{key}' is not a list")
    for row in report["ratios"]:
        missing = {"name", "brain", "other", "ratio", "other_name"} - set(row)
        if missing:
            raise ValueError(f"{path}: a ratio lacks {sorted(missing)}")
        row.setdefault("target", None)
        row.setdefault("ok", None)
    return report
