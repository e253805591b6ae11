"""Saving a version: native artifact + manifest, and what lands in the warehouse."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from markets import STRONG_TREND, planted

from brain_lib import registry
from brain_lib.models import LightGBMModel
from brain_lib.registry import register_version, sha256_file
from brain_lib.training import TrainingConfig, TrainingResult, build_dataset, train_symbol
from brain_lib.warehouse import connect

CONFIG = TrainingConfig(
    params={"num_boost_round": 40, "num_leaves": 7, "min_data_in_leaf": 50},
    n_splits=4,
    embargo=12,
    min_rows=300,
)


def _candles() -> pd.DataFrame:
    return planted(5, 5000, symbol="SOL/USDT", trend=STRONG_TREND)


@pytest.fixture(scope="module")
def result() -> TrainingResult:
    return train_symbol(_candles(), exchange="synthetic", symbol="SOL/USDT", config=CONFIG)


def _rows(dsn: str, table: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute(f"select count(*) from raw.{table}").fetchone()  # fixed names only
    assert row is not None
    return int(row[0])


def _register(dsn: str, result: TrainingResult, root: Path, **kw):  # type: ignore[no-untyped-def]
    with connect(dsn) as conn:
        return register_version(
            conn, result, artifact_root=str(root), candles=_candles(), config=CONFIG, **kw
        )


def test_register_writes_artifact_manifest_version_and_metrics(
    fresh_warehouse: str, result: TrainingResult, tmp_path: Path
) -> None:
    stored, decision = _register(fresh_warehouse, result, tmp_path, run_id="run-1")
    assert decision.action == "promotion"
    folder = tmp_path / stored.version_id
    artifact = folder / "model.txt"
    assert artifact.read_text().startswith("tree")  # LightGBM's text format, not a pickle
    assert sha256_file(artifact) == stored.artifact_sha256
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["artifact"]["sha256"] == stored.artifact_sha256
    assert manifest["version_id"] == stored.version_id
    assert manifest["code_version"].startswith("0.")
    # the stored model predicts exactly as the trained one
    loaded = LightGBMModel.load(artifact)
    features, _ = build_dataset(_candles(), CONFIG.label_horizon)
    assert (loaded.predict(features.tail(50)) == result.model.predict(features.tail(50))).all()

    with connect(fresh_warehouse) as conn:
        version = conn.execute(
            "select symbol, model_type, run_id, artifact_sha256, n_rows, "
            "manifest->'dataset'->>'fingerprint_sha256' "
            "from raw.model_versions where version_id = %s",
            (stored.version_id,),
        ).fetchone()
        metrics = dict(
            conn.execute(
                "select metric, value from raw.model_metrics "
                "where version_id = %s and scope = 'oos'",
                (stored.version_id,),
            ).fetchall()
        )
    assert version == (
        "SOL/USDT",
        "lightgbm",
        "run-1",
        stored.artifact_sha256,
        result.n_rows,
        result.fingerprint,
    )
    for name in (
        "sharpe",
        "sortino",
        "hit_ratio",
        "profit_factor",
        "max_drawdown",
        "calmar",
        "psr",
        "buy_hold_sharpe",
        "exposure",
        "turnover_per_bar",
        "round_trips",
        "avg_holding_bars",
    ):
        expected = result.metrics[name]
        if math.isnan(expected):
            assert metrics[name] is None
        else:
            assert metrics[name] == pytest.approx(expected)
    # judged at landing: the deflated Sharpe over the trials in the registry (one here)
    assert metrics["dsr_trials"] == 1.0 and metrics["dsr"] == pytest.approx(metrics["psr"])


def test_failure_between_version_and_metrics_leaves_nothing(
    fresh_warehouse: str, result: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {
        t: _rows(fresh_warehouse, t) for t in ("model_versions", "model_metrics", "model_events")
    }

    def broken(cur, record, **kw):  # type: ignore[no-untyped-def]
        # the version row is written by now; fail the way a lost connection would
        cur.execute("select 1/0")

    monkeypatch.setattr(registry, "_insert_metrics", broken)
    with pytest.raises(Exception, match="division by zero"):
        _register(fresh_warehouse, result, tmp_path)
    assert {t: _rows(fresh_warehouse, t) for t in counts} == counts


def test_nan_metric_is_stored_as_null_and_infinity_kept(
    fresh_warehouse: str, result: TrainingResult, tmp_path: Path
) -> None:
    result = dataclasses.replace(
        result, metrics={**result.metrics, "sharpe": float("nan"), "profit_factor": float("inf")}
    )
    stored, _ = _register(fresh_warehouse, result, tmp_path)
    with connect(fresh_warehouse) as conn:
        values = dict(
            conn.execute(
                "select metric, value from raw.model_metrics where version_id = %s",
                (stored.version_id,),
            ).fetchall()
        )
    assert values["sharpe"] is None
    assert values["profit_factor"] == math.inf


def test_versions_are_immutable_folders(result: TrainingResult, tmp_path: Path) -> None:
    registry.save_artifact(result, str(tmp_path), "v1")
    with pytest.raises(Exception, match="already exists; versions are immutable"):
        registry.save_artifact(result, str(tmp_path), "v1")


def test_a_hand_edited_manifest_is_refused_at_loading(
    fresh_warehouse: str, result: TrainingResult, tmp_path: Path
) -> None:
    """The manifest.json beside the artifact and the manifest in raw.model_versions must
    agree (bar what landing fills in): an edit of either one is refused in one line."""
    from brain_lib.errors import ManifestError

    stored, _ = _register(fresh_warehouse, result, tmp_path)
    with connect(fresh_warehouse) as conn:
        info = registry.get_version(conn, stored.version_id)
    load = lambda manifest: registry.load_model(  # noqa: E731
        info.artifact_uri, info.artifact_sha256, manifest, info.version_id
    )
    assert load(info.manifest).model_type == "lightgbm"  # challenged_version_id may differ

    path = tmp_path / stored.version_id / "manifest.json"
    original = path.read_text()
    edited = json.loads(original)
    edited["hyperparameters"]["num_leaves"] = 255
    path.write_text(json.dumps(edited))
    with pytest.raises(ManifestError) as caught:
        load(info.manifest)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"version {stored.version_id}: manifest at {path} differs from the one the "
        "warehouse recorded in hyperparameters; refusing to load an edited manifest"
    )
    path.unlink()
    with pytest.raises(ManifestError, match="manifest is missing at"):
        load(info.manifest)
    path.write_text(original)

    # the warehouse's copy edited behind the append-only trigger's back
    with connect(fresh_warehouse) as conn:
        conn.execute("alter table raw.model_versions disable trigger model_versions_append_only")
        conn.execute(
            "update raw.model_versions set manifest = jsonb_set(manifest, '{features}', "
            "'[\"ret_1\"]') where version_id = %s",
            (stored.version_id,),
        )
        conn.execute("alter table raw.model_versions enable trigger model_versions_append_only")
        info = registry.get_version(conn, stored.version_id)
        with pytest.raises(ManifestError, match=r"recorded in features; refusing to load"):
            registry.verify_servable(info, "promote")
