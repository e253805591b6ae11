"""Model versions: artifacts on disk (or any fsspec URL) and rows in the warehouse.

A version is written once and never changed. ``register_version`` saves the artifact
in the model's native format (never pickle) with its manifest beside it, then writes
the ``raw.model_versions`` row and its ``raw.model_metrics`` rows in ONE transaction:
both land or neither does.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brain_lib.errors import BrainError

if TYPE_CHECKING:
    import psycopg

    from brain_lib.training import TrainingResult

__all__ = [
    "RegisteredVersion",
    "new_version_id",
    "register_version",
    "save_artifact",
    "sha256_file",
]


@dataclass(frozen=True)
class RegisteredVersion:
    """A stored version: its id, where its artifact lies and the artifact's hash."""

    version_id: str
    artifact_uri: str
    artifact_sha256: str
    manifest: dict[str, Any]


def _slug(symbol: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", symbol.lower()).strip("-")


def new_version_id(symbol: str, model_type: str, now: datetime | None = None) -> str:
    """``<symbol-slug>.<model_type>.<UTC yyyymmddTHHMMSS>.<6 hex>``: sortable, unique."""
    now = now or datetime.now(UTC)
    return f"{_slug(symbol)}.{model_type}.{now:%Y%m%dT%H%M%S}.{secrets.token_hex(3)}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_artifact(result: TrainingResult, artifact_root: str, version_id: str) -> RegisteredVersion:
    """Write ``<root>/<version_id>/{artifact, manifest.json}``; return uri and sha256."""
    import fsspec

    model = result.model
    manifest = dict(result.manifest)
    with tempfile.TemporaryDirectory(prefix="brain-artifact-") as tmp:
        local = Path(tmp) / model.artifact_name
        model.save(local)
        sha = sha256_file(local)
        manifest["version_id"] = version_id
        manifest["artifact"] = {"file": model.artifact_name, "sha256": sha}
        base = f"{artifact_root.rstrip('/')}/{version_id}"
        fs, _, (root_path,) = fsspec.get_fs_token_paths(base)
        if fs.exists(root_path):
            raise BrainError(f"artifact folder {base} already exists; versions are immutable")
        fs.makedirs(root_path, exist_ok=False)
        fs.put_file(str(local), f"{root_path}/{model.artifact_name}")
        with fs.open(f"{root_path}/manifest.json", "w") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
    return RegisteredVersion(version_id, f"{base}/{model.artifact_name}", sha, manifest)


def _metric_value(value: float) -> float | None:
    """NaN is stored as NULL (undefined); ±inf stays (PostgreSQL has Infinity)."""
    value = float(value)
    return None if math.isnan(value) else value


def _insert_version(
    cur: psycopg.Cursor[Any], result: TrainingResult, stored: RegisteredVersion, run_id: str | None
) -> None:
    from psycopg.types.json import Jsonb

    cur.execute(
        """
        insert into raw.model_versions (
            version_id, exchange, symbol, timeframe, model_type, run_id, manifest,
            artifact_uri, artifact_sha256, feature_set_hash, train_start, train_end, n_rows
        ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            stored.version_id,
            result.exchange,
            result.symbol,
            result.timeframe,
            result.manifest["model_type"],
            run_id,
            Jsonb(stored.manifest),
            stored.artifact_uri,
            stored.artifact_sha256,
            result.manifest["feature_set_hash"],
            result.train_start.to_pydatetime(),
            result.train_end.to_pydatetime(),
            result.n_rows,
        ),
    )


def _insert_metrics(cur: psycopg.Cursor[Any], result: TrainingResult, version_id: str) -> None:
    start, end = result.oos_window
    cur.executemany(
        """
        insert into raw.model_metrics (version_id, scope, metric, value, window_start, window_end)
        values (%s, 'oos', %s, %s, %s, %s)
        """,
        [
            (version_id, name, _metric_value(value), start.to_pydatetime(), end.to_pydatetime())
            for name, value in sorted(result.metrics.items())
        ],
    )


def register_version(
    conn: psycopg.Connection,
    result: TrainingResult,
    *,
    artifact_root: str,
    run_id: str | None = None,
) -> RegisteredVersion:
    """Save the artifact, then write the version and its metrics in one transaction."""
    version_id = new_version_id(result.symbol, result.manifest["model_type"])
    stored = save_artifact(result, artifact_root, version_id)
    with conn.transaction(), conn.cursor() as cur:
        _insert_version(cur, result, stored, run_id)
        _insert_metrics(cur, result, version_id)
    return stored
