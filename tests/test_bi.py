"""brain bi: the committed Superset dashboard, its bundle, and the dashboard rendered.

The fast tests check the committed definition against the dbt marts and the error line
when Superset is missing or cannot start. The ``browser`` test (outside the default run:
``.venv/bin/python -m pytest -m browser tests/test_bi.py``) trains champions, analyses
them, records selector decisions, builds the marts, starts Superset from ``.venv-bi``
(``make bi`` or ``brain bi --install`` creates it), screenshots the dashboard in headless
Chromium and compares every chart's data with the same query on the marts.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_env import clean_env, one_line_error

from brain_lib import bi

REPO = Path(__file__).resolve().parent.parent
BRAIN = str(Path(sys.executable).with_name("brain"))
CHROMIUM = "/usr/bin/chromium"
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


# ------------------------------------------------------------------ fast tests


def _bundle() -> dict[str, Any]:
    raw = bi.build_bundle(
        bi.load_spec(), bi.mart_columns(REPO / "dbt_brain"), "postgresql+psycopg2://u:p@h/db"
    )
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {n.split("/", 1)[1]: yaml.safe_load(z.read(n)) for n in z.namelist()}


def test_bundle_names_existing_marts_and_columns() -> None:
    files = _bundle()
    marts = bi.mart_columns(REPO / "dbt_brain")
    datasets = {f["uuid"]: f for n, f in files.items() if n.startswith("datasets/")}
    charts = {n: f for n, f in files.items() if n.startswith("charts/")}
    # every area the issue names has its chart
    assert set(bi.used_marts()) >= {
        "model_composite_scores",
        "model_champion_history",
        "feature_importance_trends",
        "feature_drift",
        "data_quality_daily",
        "model_selection_daily",
    }
    for chart in charts.values():
        dataset = datasets[chart["dataset_uuid"]]
        assert dataset["schema"] == "marts"
        columns = marts[dataset["table_name"]]
        assert [c["column_name"] for c in dataset["columns"]] == list(columns)
        params = chart["params"]
        used = params.get("all_columns", []) + params.get("groupby", [])
        used += [params["x_axis"]] if "x_axis" in params else []
        used += [m["column"]["column_name"] for m in params.get("metrics", [])]
        assert used and set(used) <= set(columns), chart["slice_name"]
    layout = files["dashboards/brain.yaml"]["position"]
    placed = {v["meta"]["uuid"] for v in layout.values() if isinstance(v, dict) and "meta" in v
              and "uuid" in v["meta"]}  # fmt: skip
    assert placed == {c["uuid"] for c in charts.values()}
    # the database is the one given at run time; nothing secret is committed
    assert files["databases/brain_marts.yaml"]["sqlalchemy_uri"] == "postgresql+psycopg2://u:p@h/db"
    assert "password" not in bi.SPEC.read_text().lower()


def test_bundle_refuses_a_column_the_mart_lacks() -> None:
    from brain_lib.errors import ConfigError

    spec = bi.load_spec()
    spec["rows"][0][0] = dict(spec["rows"][0][0], columns=["symbol", "no_such_column"])
    with pytest.raises(ConfigError, match="no_such_column"):
        bi.build_bundle(spec, bi.mart_columns(REPO / "dbt_brain"), "postgresql://u@h/db")


def test_superset_uri_for_a_socket_and_a_host() -> None:
    socket_uri = bi.superset_uri("postgresql://postgres:@/brain?host=/tmp/x/pg", "p@ss word")
    assert socket_uri == (
        "postgresql+psycopg2://brain_bi:p%40ss%20word@/brain?host=/tmp/x/pg&port=5432"
    )
    assert bi.superset_uri("postgresql://me:secret@db.example:6543/brain", "pw") == (
        "postgresql+psycopg2://brain_bi:pw@db.example:6543/brain"
    )


def test_exposures_name_the_dashboard_and_the_selector() -> None:
    exposures = yaml.safe_load((REPO / "dbt_brain/models/marts/_exposures.yml").read_text())
    by_name = {e["name"]: e for e in exposures["exposures"]}
    dashboard = by_name["brain_dashboard"]
    assert dashboard["type"] == "dashboard"
    assert {d.removeprefix("ref('").removesuffix("')") for d in dashboard["depends_on"]} == set(
        bi.used_marts()
    )
    assert by_name["model_selector"]["type"] == "application"


def test_brain_bi_without_superset_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [BRAIN, "bi", "--venv", str(tmp_path / "no-venv")],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    one_line_error(proc, "Superset is not installed in")
    assert "make bi" in proc.stderr


def test_brain_bi_when_superset_cannot_start_is_one_line(tmp_path: Path) -> None:
    venv = tmp_path / "broken-venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("superset", "gunicorn"):
        exe = venv / "bin" / name
        exe.write_text("#!/bin/sh\necho 'ImportError: something is missing' >&2\nexit 1\n")
        exe.chmod(0o755)
    proc = subprocess.run(
        [BRAIN, "bi", "--venv", str(venv)],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    one_line_error(proc, "Superset could not create its metadata database (exit 1)")


# --------------------------------------------------------------- browser test


def _venv() -> Path:
    venv = bi.default_venv()
    if not (venv / "bin" / "superset").is_file():
        pytest.skip(f"no Superset in {venv}: create it with `make bi` or `brain bi --install`")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium")
    return venv


@pytest.fixture
def dashboard_env(
    prefect_harness: None,
    fresh_warehouse: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Path]]:
    """Champions trained on all but the last 10 days, analysed at night, one selector
    decision per symbol, data-quality results, and the marts built (dbt also makes the
    role brain_bi)."""
    from markets import seed_planted

    from brain_lib.dbt import run_dbt
    from brain_lib.selection import ModelSelector
    from brain_lib.warehouse import connect
    from flows.daily_retrain import daily_retrain
    from flows.nightly_feature_analysis import nightly_feature_analysis
    from flows.runner import run_flow

    home = tmp_path / "home"
    monkeypatch.setenv("BRAIN_DATABASE_URL", fresh_warehouse)
    monkeypatch.setenv("BRAIN_HOME", str(home))
    seed_planted(fresh_warehouse, SYMBOLS, seed=5)
    with connect(fresh_warehouse) as conn:
        row = conn.execute("select max(ts) from raw.ohlcv").fetchone()
    assert row is not None
    end = row[0] - timedelta(days=10)
    state = run_flow(daily_retrain, symbols=SYMBOLS, lookback_days=180, end=end)
    assert state.is_completed(), state.message
    state = run_flow(nightly_feature_analysis, window_days=9)
    assert state.is_completed(), state.message
    selector = ModelSelector(fresh_warehouse, exchange="synthetic", timeframe="1h")
    for symbol in SYMBOLS:
        selector.select_model_for_symbol(symbol)
    result = run_dbt(
        ["build"],
        dsn=fresh_warehouse,
        project_dir=REPO / "dbt_brain",
        state_dir=home / "dbt",
    )
    assert result.ok, result.output[-2000:]
    # what an admin does on a warehouse of its own (README, "The compose stack")
    from brain_lib.roles import enable_login

    enable_login(fresh_warehouse, "brain_bi", BI_PASSWORD)
    yield fresh_warehouse, home


BI_PASSWORD = "bi-test-" + "x" * 12


def _plain(value: Any) -> Any:
    """A warehouse value as Superset's JSON gives it (times as epoch milliseconds)."""
    if isinstance(value, datetime):
        return value.timestamp() * 1000
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "is_finite"):  # Decimal
        return float(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def _warehouse_rows(dsn: str, chart: dict[str, Any]) -> list[dict[str, Any]]:
    from brain_lib.warehouse import connect

    where = f"where {chart['where']}" if chart.get("where") else ""
    if chart["viz"] == "table":
        column, direction = chart["order_by"]
        sql = (
            f"select {', '.join(chart['columns'])} from marts.{chart['mart']} {where} "
            f"order by {column} {direction} limit {chart.get('row_limit', 1000)}"
        )
    else:
        m = chart["metric"]
        label = f"{m['aggregate']}({m['column']})"
        sql = (
            f"select {chart['x']}, {chart['groupby']}, "
            f'{m["aggregate"]}({m["column"]}) as "{label}" '
            f"from marts.{chart['mart']} {where} group by 1, 2 order by 1, 2"
        )
    with connect(dsn) as conn:
        cur = conn.execute(sql)
        names = [d.name for d in cur.description or []]
        return [{n: _plain(v) for n, v in zip(names, r, strict=True)} for r in cur.fetchall()]


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_renders_the_warehouse_numbers(
    dashboard_env: tuple[str, Path], tmp_path: Path
) -> None:
    venv = _venv()
    dsn, home = dashboard_env
    out = Path(os.environ.get("BRAIN_BI_SCREENSHOT", tmp_path / "dashboard.png"))
    port = bi.free_port()
    env = clean_env(tmp_path, BRAIN_DATABASE_URL=dsn, BRAIN_HOME=str(home))
    env.pop("BRAIN_BI_PASSWORD", None)
    refused = subprocess.run(
        [BRAIN, "bi", "--venv", str(venv), "--no-serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines() == [
        "error: BRAIN_BI_PASSWORD is not set: the dashboard logs in as brain_bi with the "
        "password `brain db login brain_bi` gave it"
    ]
    env["BRAIN_BI_PASSWORD"] = BI_PASSWORD
    proc = subprocess.run(
        [BRAIN, "bi", "--venv", str(venv), "--port", str(port), "--screenshot", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "7 charts" in proc.stdout, proc.stdout
    # a real picture: a PNG, large, and not one flat colour
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    from PIL import Image

    with Image.open(out) as image:
        assert image.width >= 1600 and image.height >= 1200
        colours = image.convert("RGB").resize((200, 200)).getcolors(maxcolors=200 * 200)
        assert colours is not None and len(colours) > 50

    # every chart's data, as Superset serves it to draw, equals the marts' numbers
    server = bi.BiServer(venv=venv, state=home / "bi", port=bi.free_port())
    with bi.serving(server):
        session = server.api_session()
        found = session.get(
            f"{server.url}/api/v1/chart/", params={"q": "(page_size:100)"}, timeout=30
        ).json()["result"]
        by_title = {c["slice_name"]: int(c["id"]) for c in found}
        specs = list(bi.charts(bi.load_spec()))
        assert set(by_title) == {c["title"] for c in specs}
        for chart in specs:
            served = bi.chart_data(server, session, by_title[chart["title"]])
            expected = _warehouse_rows(dsn, chart)
            assert expected, f"{chart['mart']} is empty: the fixture should fill it"
            key = sorted(expected[0])

            def order(row: dict[str, Any], key: list[str] = key) -> tuple[str, ...]:
                return tuple(str(row[k]) for k in key)

            # ties in a table's order may come back in any order: compare sorted rows
            got, want = sorted(served, key=order), sorted(expected, key=order)
            assert len(got) == len(want), chart["title"]
            for g, w in zip(got, want, strict=True):
                assert set(g) == set(w), chart["title"]
                bad = {k: (g[k], w[k]) for k in w if not _same(g[k], w[k])}
                assert not bad, f"{chart['title']}: {bad}"
    print(f"dashboard screenshot: {out}")
