"""The dashboard: Apache Superset on the marts, through the read-only role ``brain_bi``.

Superset lives in its own virtual environment (``.venv-bi`` beside the project; it pins
SQLAlchemy < 2 and an older pandas, so it cannot share Brain's ``.venv``); ``brain bi``
runs it as a subprocess. Its metadata (users, the imported dashboard) is a SQLite file
under ``<home>/bi``, with the secret key and the admin password generated beside it
(mode 0600, never printed): Superset's state stays out of the warehouse, works against a
production warehouse where Brain may not create databases, and ``rm -r <home>/bi`` resets
it.

The dashboard is committed as :file:`dashboard.yaml` (charts, marts, columns, layout);
:func:`build_bundle` turns it into a Superset import bundle at start-up, with the datasets'
columns taken from the dbt marts' YAML and the database URI filled from the settings.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from brain_lib.errors import BrainError, ConfigError

__all__ = [
    "BI_ROLE",
    "REQUIREMENTS",
    "SPEC",
    "BiServer",
    "build_bundle",
    "chart_data",
    "chart_queries",
    "chart_rows",
    "default_venv",
    "install",
    "load_spec",
    "mart_columns",
    "screenshot",
    "secret",
    "superset_uri",
    "used_marts",
]

HERE = Path(__file__).resolve().parent
SPEC = HERE / "dashboard.yaml"
REQUIREMENTS = HERE / "requirements.txt"
CONFIG = HERE / "superset_config.py"
BI_ROLE = "brain_bi"
ADMIN = "admin"
DATABASE_NAME = "Brain marts"
#: the namespace of the bundle's uuids: the same names give the same uuids, so a second
#: import updates the dashboard instead of adding another one
NAMESPACE = uuid.UUID("9b0f6f2e-3f55-4d7e-9a53-2f1d5f0b8a11")
VERSION = "1.0.0"
VIZ = {"table": "table", "bar": "echarts_timeseries_bar", "line": "echarts_timeseries_line"}


def default_venv() -> Path:
    """``.venv-bi`` beside the project (the folder above brain_lib/)."""
    return HERE.parent.parent / ".venv-bi"


def _uuid(*names: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(names)))


# --------------------------------------------------------------------- the spec


def load_spec(path: Path = SPEC) -> dict[str, Any]:
    """The committed dashboard definition."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or not spec.get("rows"):
        raise ConfigError(f"{path}: no rows of charts")
    return spec


def charts(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for row in spec["rows"]:
        yield from row


def used_marts(spec: Mapping[str, Any] | None = None) -> list[str]:
    """The marts the dashboard reads."""
    return sorted({c["mart"] for c in charts(spec or load_spec())})


def mart_columns(dbt_dir: Path) -> dict[str, dict[str, str]]:
    """Every mart's columns and their data types, from dbt_brain/models/marts/*.yml."""
    marts: dict[str, dict[str, str]] = {}
    for path in sorted((dbt_dir / "models" / "marts").glob("*.yml")):
        for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models", []):
            marts[model["name"]] = {
                c["name"]: str(c.get("data_type", "")) for c in model.get("columns", [])
            }
    return marts


def _metric(chart: Mapping[str, Any]) -> dict[str, Any]:
    m = chart["metric"]
    return {
        "expressionType": "SIMPLE",
        "column": {"column_name": m["column"]},
        "aggregate": m["aggregate"],
        "label": f"{m['aggregate']}({m['column']})",
        "optionName": f"metric_{chart['key']}",
    }


def chart_queries(chart: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's query as Superset's chart-data API takes it (``queries[0]``)."""
    where = chart.get("where")
    extras: dict[str, Any] = {"where": f"({where})" if where else "", "having": ""}
    if chart["viz"] == "table":
        column, direction = chart["order_by"]
        return {
            "columns": list(chart["columns"]),
            "metrics": [],
            "orderby": [[column, direction == "asc"]],
            "row_limit": chart.get("row_limit", 1000),
            "filters": [],
            "extras": extras,
        }
    metric = _metric(chart)
    return {
        "columns": [chart["x"], chart["groupby"]],
        "metrics": [metric],
        "orderby": [[chart["x"], True], [chart["groupby"], True]],
        "row_limit": 10000,
        "filters": [],
        "extras": extras,
    }


def _params(chart: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """The chart's form data (what the Superset front end draws from)."""
    where = chart.get("where")
    filters = (
        [
            {
                "expressionType": "SQL",
                "sqlExpression": where,
                "clause": "WHERE",
                "filterOptionName": f"filter_{chart['key']}",
            }
        ]
        if where
        else []
    )
    common: dict[str, Any] = {"viz_type": VIZ[chart["viz"]], "adhoc_filters": filters}
    if chart["viz"] == "table":
        column, direction = chart["order_by"]
        return common | {
            "query_mode": "raw",
            "all_columns": list(chart["columns"]),
            "order_by_cols": [json.dumps([column, direction == "asc"])],
            "row_limit": chart.get("row_limit", 1000),
            "server_pagination": False,
            "include_search": False,
            "table_timestamp_format": "%Y-%m-%d %H:%M",
            "show_cell_bars": False,
            "color_pn": True,
            # three decimals, not seventeen
            "column_config": {
                c: {"d3NumberFormat": ",.3f"}
                for c in chart["columns"]
                if types.get(c) in ("double precision", "numeric", "real")
            },
        }
    metric = _metric(chart)
    params = common | {
        "x_axis": chart["x"],
        "metrics": [metric],
        "groupby": [chart["groupby"]],
        "row_limit": 10000,
        "show_legend": True,
        "legendType": "scroll",
        "legendOrientation": "top",
        "rich_tooltip": True,
        "y_axis_format": ",.3f",
        "truncateXAxis": True,
        "color_scheme": "supersetColors",
        "x_axis_title_margin": 15,
        "y_axis_title_margin": 15,
    }
    if chart["viz"] == "line":
        params |= {"time_grain_sqla": "P1D", "markerEnabled": True, "markerSize": 6}
    else:
        params |= {"orientation": "vertical", "xAxisLabelRotation": 45, "show_value": False}
    return params


def build_bundle(
    spec: Mapping[str, Any], marts: Mapping[str, Mapping[str, str]], uri: str
) -> bytes:
    """A Superset import bundle (zip) of the dashboard, its charts, datasets and database.

    ``uri`` is the SQLAlchemy URI Superset connects with (its password, if any, stays in
    this zip in memory and in Superset's encrypted metadata, never in the repository).
    Raises ConfigError for a mart or a column the marts do not have.
    """
    db_uuid = _uuid("database")
    files: dict[str, Any] = {
        "metadata.yaml": {
            "version": VERSION,
            "type": "Dashboard",
            "timestamp": "2026-12-04T00:00:00+00:00",
        },
        "databases/brain_marts.yaml": {
            "database_name": DATABASE_NAME,
            "sqlalchemy_uri": uri,
            "cache_timeout": None,
            "expose_in_sqllab": True,
            "allow_run_async": False,
            "allow_ctas": False,
            "allow_cvas": False,
            "allow_dml": False,
            "allow_csv_upload": False,
            "extra": {"allows_virtual_table_explore": True},
            "uuid": db_uuid,
            "version": VERSION,
        },
    }
    used = {c["mart"] for c in charts(spec)}
    for mart in sorted(used):
        if mart not in marts:
            raise ConfigError(f"dashboard.yaml names mart {mart!r}, which dbt_brain does not have")
        files[f"datasets/brain_marts/{mart}.yaml"] = {
            "table_name": mart,
            "schema": "marts",
            "main_dttm_col": None,
            "sql": None,
            "params": None,
            "template_params": None,
            "filter_select_enabled": True,
            "fetch_values_predicate": None,
            "extra": None,
            "uuid": _uuid("dataset", mart),
            "metrics": [
                {
                    "metric_name": "count",
                    "verbose_name": "COUNT(*)",
                    "metric_type": "count",
                    "expression": "COUNT(*)",
                    "description": None,
                    "d3format": None,
                    "extra": None,
                    "warning_text": None,
                }
            ],
            "columns": [
                {
                    "column_name": name,
                    "verbose_name": None,
                    "is_dttm": data_type.startswith(("timestamp", "date")),
                    "is_active": True,
                    "type": data_type.upper() or None,
                    "groupby": True,
                    "filterable": True,
                    "expression": None,
                    "description": None,
                    "python_date_format": None,
                    "extra": None,
                }
                for name, data_type in marts[mart].items()
            ],
            "version": VERSION,
            "database_uuid": db_uuid,
        }
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": spec["title"]}},
    }
    for i, row in enumerate(spec["rows"]):
        row_id = f"ROW-{i}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for chart in row:
            _check_columns(chart, marts[chart["mart"]])
            chart_uuid = _uuid("chart", chart["key"])
            chart_id = f"CHART-{chart['key']}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "width": chart.get("width", 6),
                    "height": chart.get("height", 50),
                    "chartId": len(position),  # any number: the import maps it by uuid
                    "uuid": chart_uuid,
                    "sliceName": chart["title"],
                },
            }
            params = _params(chart, marts[chart["mart"]])
            query_context = {
                "datasource": {"id": 0, "type": "table"},
                "force": False,
                "queries": [chart_queries(chart)],
                "form_data": params,
                "result_format": "json",
                "result_type": "full",
            }
            files[f"charts/{chart['key']}.yaml"] = {
                "slice_name": chart["title"],
                "description": None,
                "viz_type": params["viz_type"],
                "params": params,
                "query_context": json.dumps(query_context),
                "cache_timeout": None,
                "uuid": chart_uuid,
                "version": VERSION,
                "dataset_uuid": _uuid("dataset", chart["mart"]),
            }
    files["dashboards/brain.yaml"] = {
        "dashboard_title": spec["title"],
        "description": None,
        "css": "",
        "slug": spec.get("slug", "brain"),
        "uuid": _uuid("dashboard", spec.get("slug", "brain")),
        "position": position,
        "metadata": {
            "color_scheme": "supersetColors",
            "refresh_frequency": 0,
            "expanded_slices": {},
            "label_colors": {},
            "timed_refresh_immune_slices": [],
            "cross_filters_enabled": False,
            "native_filter_configuration": [],
        },
        "version": VERSION,
        "published": True,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, content in files.items():
            bundle.writestr(f"brain_dashboard/{name}", yaml.safe_dump(content, sort_keys=False))
    return buffer.getvalue()


def _check_columns(chart: Mapping[str, Any], columns: Mapping[str, str]) -> None:
    names = list(chart.get("columns", []))
    names += [chart[k] for k in ("x", "groupby") if k in chart]
    if "metric" in chart:
        names.append(chart["metric"]["column"])
    if "order_by" in chart:
        names.append(chart["order_by"][0])
    missing = [n for n in names if n not in columns]
    if missing:
        raise ConfigError(
            f"dashboard.yaml chart {chart['key']!r}: mart {chart['mart']} has no column "
            + ", ".join(missing)
        )


def superset_uri(dsn: str, password: str, role: str = BI_ROLE) -> str:
    """The warehouse URL as Superset's SQLAlchemy URI, logged in as ``role``."""
    from brain_lib.warehouse import parse_dsn

    p = parse_dsn(dsn)
    auth = f"{quote(role, safe='')}:{quote(password, safe='')}"
    if p.host.startswith("/"):  # a unix socket folder (the embedded warehouse)
        return f"postgresql+psycopg2://{auth}@/{quote(p.dbname)}?host={quote(p.host)}&port={p.port}"
    return f"postgresql+psycopg2://{auth}@{p.host}:{p.port}/{quote(p.dbname)}"


# -------------------------------------------------------------------- the venv


def _superset(venv: Path) -> Path:
    exe = venv / "bin" / "superset"
    if not exe.is_file():
        raise ConfigError(
            f"Superset is not installed in {venv}: run `make bi` or `brain bi --install` "
            "(apache-superset in its own virtual environment)"
        )
    return exe


def install(venv: Path, python: str | None = None) -> None:
    """Create ``venv`` and install :data:`REQUIREMENTS` into it (minutes, ~800 MB)."""
    python = python or shutil.which("python3.11") or sys.executable
    if not (venv / "bin" / "python").is_file():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    result = subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=False)
    if result.returncode != 0:
        raise BrainError(f"installing Superset into {venv} failed (pip exit {result.returncode})")


# ------------------------------------------------------------------ the server


def secret(path: Path, nbytes: int = 32) -> str:
    """A secret kept in ``path`` (mode 0600), made on first use."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BiServer:
    """Superset for one Brain home: set up, dashboard imported, served on host:port."""

    venv: Path
    state: Path
    host: str = "127.0.0.1"
    port: int = 8088
    secret_key: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.venv = Path(self.venv).absolute()
        self.state = Path(self.state).absolute()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}/superset/dashboard/brain/"

    @property
    def admin_password_file(self) -> Path:
        return self.state / "admin_password"

    def admin_password(self) -> str:
        return secret(self.admin_password_file, 18)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRAIN_")}
        env.update(
            SUPERSET_CONFIG_PATH=str(CONFIG),
            BRAIN_BI_STATE=str(self.state),
            SUPERSET_SECRET_KEY=self.secret_key or secret(self.state / "secret_key", 42),
            FLASK_APP="superset.app:create_app()",
            SUPERSET_LOAD_EXAMPLES="no",
            PYTHONWARNINGS="ignore",
        )
        return env

    def _cli(self, *args: str, what: str) -> None:
        self._run([str(_superset(self.venv)), *args], what=what)

    def _run(self, command: list[str], *, what: str) -> None:
        log = self.state / "superset.log"
        with log.open("ab") as out:
            result = subprocess.run(
                command,
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.state,
                check=False,
            )
        if result.returncode != 0:
            raise BrainError(f"Superset could not {what} (exit {result.returncode}); see {log}")

    def setup(self) -> None:
        """Superset's metadata database, roles and admin user (once per home)."""
        _superset(self.venv)
        self.state.mkdir(parents=True, exist_ok=True)
        stamp = self.state / ".setup-done"
        if stamp.is_file():
            return
        self._cli("db", "upgrade", what="create its metadata database")
        self._cli(
            "fab", "create-admin", "--username", ADMIN, "--firstname", "Brain",
            "--lastname", "Admin", "--email", "admin@localhost",
            "--password", self.admin_password(),
            what="create its admin user",
        )  # fmt: skip
        self._cli("init", what="set up its roles")
        stamp.touch()

    def import_dashboard(self, bundle: bytes) -> None:
        path = self.state / "brain_dashboard.zip"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(bundle)  # holds the BI role's password: private, removed after import
        try:
            self._run(
                [
                    str(self.venv / "bin" / "python"),
                    str(HERE / "import_bundle.py"),
                    str(path),
                    ADMIN,
                ],
                what="import the dashboard",
            )
        finally:
            path.unlink(missing_ok=True)

    def start(self, timeout_s: float = 120.0) -> None:
        """Serve Superset (gunicorn) and wait until it answers /health."""
        gunicorn = self.venv / "bin" / "gunicorn"
        _superset(self.venv)
        log = self.state / "superset.log"
        out = log.open("ab")
        self.process = subprocess.Popen(
            [
                str(gunicorn), "--workers", "1", "--threads", "8", "--worker-class", "gthread",
                "--timeout", "120", "--bind", f"{self.host}:{self.port}",
                "superset.app:create_app()",
            ],
            env=self._env(), stdout=out, stderr=subprocess.STDOUT, cwd=self.state,
            start_new_session=True,
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + timeout_s
        import urllib.request

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrainError(
                    f"Superset stopped at start-up (exit {self.process.returncode}); see {log}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise BrainError(
            f"Superset did not answer on {self.url} within {timeout_s:.0f} s; see {log}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    # ---------------------------------------------------------------- the API

    def api_session(self) -> Any:
        """A requests session logged in as the admin: JWT for the API, and the web
        session cookie (for a browser) from the login form."""
        import requests

        s = requests.Session()
        r = s.post(
            f"{self.url}/api/v1/security/login",
            json={"username": ADMIN, "password": self.admin_password(), "provider": "db"},
            timeout=30,
        )
        r.raise_for_status()
        s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        token = s.get(f"{self.url}/api/v1/security/csrf_token/", timeout=30).json()["result"]
        s.headers["X-CSRFToken"] = token
        s.headers["Referer"] = self.url
        s.post(
            f"{self.url}/login/",
            data={"username": ADMIN, "password": self.admin_password(), "csrf_token": token},
            timeout=30,
            allow_redirects=False,
        )
        return s


def chart_rows(server: BiServer) -> dict[str, int]:
    """Every chart of the dashboard and the number of rows Superset's chart-data API
    gives it (raises BrainError for a chart whose query fails)."""
    session = server.api_session()
    found = session.get(
        f"{server.url}/api/v1/chart/", params={"q": "(page_size:100)"}, timeout=30
    ).json()["result"]
    rows: dict[str, int] = {}
    for chart in sorted(found, key=lambda c: int(c["id"])):
        data = chart_data(server, session, int(chart["id"]))
        rows[str(chart["slice_name"])] = len(data)
    return rows


def chart_data(server: BiServer, session: Any, chart_id: int) -> list[dict[str, Any]]:
    """The rows of one chart's saved query, as Superset returns them to draw it."""
    r = session.get(f"{server.url}/api/v1/chart/{chart_id}/data/", timeout=60)
    if r.status_code != 200:
        raise BrainError(f"chart {chart_id}: Superset answered {r.status_code}: {r.text[:200]}")
    result = r.json()["result"][0]
    if result.get("error"):
        raise BrainError(f"chart {chart_id}: {result['error']}")
    return list(result["data"])


@contextmanager
def serving(server: BiServer) -> Iterator[BiServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ screenshot


def screenshot(
    server: BiServer,
    out: Path,
    *,
    chromium: str = "/usr/bin/chromium",
    width: int = 1600,
    height: int = 2200,
    timeout_s: float = 90.0,
) -> dict[str, Any]:
    """Open the dashboard in headless Chromium, logged in, wait until every chart has
    drawn, and save a PNG. Returns what the page showed (charts, canvases, tables, errors)."""
    import tempfile

    from websockets.sync.client import connect

    session = server.api_session()
    cookie = session.cookies.get("session")
    if not cookie:
        raise BrainError("Superset's login gave no session cookie")
    profile = Path(tempfile.mkdtemp(prefix="brain-chromium-"))
    browser = subprocess.Popen(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--remote-debugging-port=0", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or browser.poll() is not None:
                raise BrainError(f"{chromium} did not start its DevTools endpoint")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [p for p in json.load(r) if p.get("type") == "page"]
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            counter = 0

            def call(method: str, **params: Any) -> dict[str, Any]:
                nonlocal counter
                counter += 1
                ws.send(json.dumps({"id": counter, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    if message.get("id") == counter:
                        if "error" in message:
                            raise BrainError(f"Chromium: {method}: {message['error']}")
                        return dict(message.get("result", {}))

            call("Network.enable")
            call(
                "Network.setCookie",
                name="session",
                value=cookie,
                domain=server.host,
                path="/",
            )
            call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            call("Page.navigate", url=f"{server.dashboard_url}?standalone=1")
            probe = """(() => {
                const holders = document.querySelectorAll('.dashboard-component-chart-holder');
                const q = s => document.querySelectorAll(s).length;
                return JSON.stringify({
                  charts: holders.length,
                  canvases: q('.dashboard-component-chart-holder canvas'),
                  tables: q('.dashboard-component-chart-holder table'),
                  loading: q('.dashboard-component-chart-holder .loading'),
                  errors: Array.from(document.querySelectorAll(
                    '.dashboard-component-chart-holder .ant-alert-error, '
                    + '.dashboard-component-chart-holder [role=alert]'))
                    .map(e => e.innerText.slice(0, 200)),
                  title: document.title,
                  height: document.documentElement.scrollHeight,
                });
            })()"""
            state: dict[str, Any] = {}
            deadline = time.monotonic() + timeout_s
            settled = 0
            while time.monotonic() < deadline:
                time.sleep(1.0)
                value = call("Runtime.evaluate", expression=probe, returnByValue=True)
                state = json.loads(value["result"].get("value") or "{}")
                drawn = state.get("canvases", 0) + state.get("tables", 0)
                done = state.get("charts") and not state.get("loading")
                if done and (drawn >= state["charts"] or state.get("errors")):
                    settled += 1
                    if settled >= 3:  # the animations end
                        break
                else:
                    settled = 0
            full = max(height, int(state.get("height") or height))
            if full > height:
                call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=full,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                time.sleep(2.0)
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        import base64

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return state
    finally:
        os.killpg(browser.pid, signal.SIGTERM)
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)
        shutil.rmtree(profile, ignore_errors=True)
