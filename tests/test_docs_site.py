"""``brain docs``: the dbt docs site built against a real warehouse, every column documented."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# the console script's own code, run by this interpreter (so a stale `brain` script of
# another environment cannot stand in for this checkout)
BRAIN = [sys.executable, "-c", "from brain_lib.cli import main; main()"]


def brain(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BRAIN, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _env(home: Path, dsn: str | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BRAIN_", "PREFECT_"))}
    base.update(BRAIN_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if dsn is not None:
        base["BRAIN_DATABASE_URL"] = dsn
    return base


@pytest.fixture(scope="module")
def site(warehouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``brain dbt build`` (the marts, on empty raw tables), then ``brain docs --no-serve``;
    returns dbt's target folder."""
    home = tmp_path_factory.mktemp("docs-home")
    env = _env(home, warehouse_dsn)
    built = brain("dbt", "build", env=env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
    proc = brain("docs", "--no-serve", env=env)
    assert proc.returncode == 0, proc.stderr
    index = Path(proc.stdout.strip().splitlines()[-1])
    assert index == home / "dbt" / "target" / "index.html"
    assert index.is_file()
    return index.parent


def _catalog_columns(node: dict) -> list[str]:
    return sorted(node["columns"], key=lambda c: node["columns"][c]["index"])


def _undocumented(manifest_nodes: dict, catalog_nodes: dict) -> list[str]:
    missing = []
    for unique_id, entry in catalog_nodes.items():
        documented = {
            name.lower(): (col.get("description") or "").strip()
            for name, col in manifest_nodes[unique_id].get("columns", {}).items()
        }
        for column in _catalog_columns(entry):
            if not documented.get(column.lower()):
                missing.append(f"{unique_id}.{column}")
    return missing


def test_every_mart_and_source_column_is_documented(site: Path) -> None:
    manifest = json.loads((site / "manifest.json").read_text())
    catalog = json.loads((site / "catalog.json").read_text())
    marts = {
        uid: entry
        for uid, entry in catalog["nodes"].items()
        if uid.startswith("model.") and entry["metadata"]["schema"] == "marts"
    }
    # every model of the project that lands in marts exists after the build
    expected = {
        uid
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model"
        and node["schema"] == "marts"
        and node["config"].get("materialized") != "ephemeral"
    }
    assert expected and set(marts) == expected
    sources = catalog["sources"]
    assert "source.brain.raw.ohlcv" in sources
    missing = _undocumented(manifest["nodes"], marts) + _undocumented(manifest["sources"], sources)
    assert not missing, f"{len(missing)} columns have no description:\n" + "\n".join(missing)


def test_the_site_is_served(site: Path, warehouse_dsn: str, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(tmp_path / "home", warehouse_dsn)
    proc = subprocess.Popen(
        [*BRAIN, "docs", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        body = b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html") as r:
                    body = r.read()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/manifest.json") as r:
                    assert json.loads(r.read())["metadata"]["project_name"] == "brain"
                break
            except OSError:
                time.sleep(0.5)
        assert b"dbt" in body, proc.stderr.read() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_unreachable_warehouse_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(tmp_path / "home", f"postgresql://brain@127.0.0.1:{port}/brain")
    proc = brain("docs", "--no-serve", env=env, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_failing_dbt_is_one_line(warehouse_dsn: str, tmp_path: Path) -> None:
    # a model that does not compile: dbt docs generate fails, and says which
    project = tmp_path / "dbt_brain"
    repo = Path(__file__).resolve().parent.parent
    subprocess.run(
        ["cp", "-r", str(repo / "dbt_brain"), str(project)], check=True, capture_output=True
    )
    for folder in ("target", "logs"):
        subprocess.run(["rm", "-rf", str(project / folder)], check=True)
    (project / "models" / "marts" / "broken_docs_model.sql").write_text(
        "select * from {{ ref('no_such_model') }}\n"
    )
    env = _env(tmp_path / "home", warehouse_dsn)
    env["BRAIN_DBT_PROJECT_DIR"] = str(project)
    proc = brain("docs", "--no-serve", env=env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: dbt docs generate failed"), proc.stderr


def test_no_column_description_is_cut_at_a_comma() -> None:
    """``- {name: x, description: a, b}`` is YAML for a description "a" and a key "b":
    the column entries of the model files hold only the keys dbt knows."""
    import yaml

    known = {"name", "description", "data_type", "data_tests", "constraints", "meta", "config"}
    found = []
    for path in sorted(
        (Path(__file__).resolve().parent.parent / "dbt_brain/models").rglob("*.yml")
    ):
        spec = yaml.safe_load(path.read_text()) or {}
        tables = list(spec.get("models") or [])
        for source in spec.get("sources") or []:
            tables.extend(source.get("tables") or [])
        for table in tables:
            for column in table.get("columns") or []:
                extra = set(column) - known
                if extra:
                    found.append(f"{path.name}: {table['name']}.{column['name']} {sorted(extra)}")
    assert not found, "\n".join(found)
