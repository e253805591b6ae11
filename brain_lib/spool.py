"""A durable local spool for records the warehouse could not take.

When the warehouse is unreachable at the end of a training run, each trained
version's record set (version, metrics, what is needed to judge it against the
champion) is written to ``<BRAIN_HOME>/spool/<version_id>.json`` — atomically: a
temporary file in the same folder, fsync, then rename. The next run, or
``brain spool replay``, lands them through the same :func:`judge_and_record` as a
live run. Landing is keyed by the version id, so a file landed twice adds nothing;
a file is deleted only after its transaction committed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from brain_lib.errors import DataError
from brain_lib.registry import ChallengerRecord, JudgementRules, judge_and_record
from brain_lib.training import TrainingConfig, dataset_fingerprint, load_training_candles
from brain_lib.warehouse import connect

__all__ = ["ReplayReport", "pending", "replay", "spool_record"]

log = logging.getLogger(__name__)
SPOOL_FORMAT = 1


def spool_record(
    folder: Path,
    record: ChallengerRecord,
    *,
    config: TrainingConfig,
    rules: JudgementRules,
    candles_start: pd.Timestamp,
    candles_end: pd.Timestamp,
    fingerprint: str,
) -> Path:
    """Write one record set atomically; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "spool_format": SPOOL_FORMAT,
        "record": record.to_json(),
        "config": config.to_dict(),
        "rules": rules.to_dict(),
        "candles": {
            "start": pd.Timestamp(candles_start).isoformat(),
            "end": pd.Timestamp(candles_end).isoformat(),
            "fingerprint_sha256": fingerprint,
        },
    }
    target = folder / f"{record.version_id}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.error(
        "brain_integration_failed",
        extra={"version_id": record.version_id, "symbol": record.symbol, "spool_file": str(target)},
    )
    return target


def pending(folder: Path) -> list[Path]:
    """Spooled record sets, oldest version first."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith(".tmp-"))


@dataclass
class ReplayReport:
    """What a replay did."""

    landed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _load(path: Path) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable spool file: {exc}") from None
    if payload.get("spool_format") != SPOOL_FORMAT:
        raise DataError(f"{path}: unknown spool format {payload.get('spool_format')!r}")
    return payload


def replay(dsn: str, folder: Path) -> ReplayReport:
    """Land every spooled record set; keep the files of those that fail."""
    report = ReplayReport()
    for path in pending(folder):
        try:
            payload = _load(path)
            record = ChallengerRecord.from_json(payload["record"])
            config = TrainingConfig.from_dict(payload["config"])
            rules = (
                JudgementRules(**payload["rules"])
                if "rules" in payload
                else JudgementRules(threshold=float(payload["threshold"]))
            )
            window = payload["candles"]
            with connect(dsn) as conn:
                # the loader of the live run: derivatives features, funding charges, and
                # the quarantined candles left out, so the replay sees the same data
                candles = load_training_candles(
                    conn,
                    exchange=record.exchange,
                    symbol=record.symbol,
                    timeframe=record.timeframe,
                    start=pd.Timestamp(window["start"]),
                    end=pd.Timestamp(window["end"]) + pd.Timedelta(microseconds=1),
                )
                if dataset_fingerprint(candles) != window["fingerprint_sha256"]:
                    raise DataError(
                        f"{path.name}: the stored candles of {record.symbol} changed since "
                        "training; the version cannot be judged on the same data"
                    )
                decision = judge_and_record(
                    conn, record, candles=candles, config=config, rules=rules
                )
        except Exception as exc:  # keep the file, report, go on with the others
            report.failed[path.name] = f"{type(exc).__name__}: {exc}"
            continue
        if decision.action == "exists":
            report.already.append(record.version_id)
        else:
            report.landed.append(record.version_id)
        path.unlink()
    if report.landed or report.already:
        log.info(
            "brain_integration_complete",
            extra={"landed": report.landed, "already": report.already},
        )
    return report
