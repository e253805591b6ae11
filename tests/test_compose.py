"""docker-compose.yml, checked without Docker: the Compose Specification's JSON schema
(check-jsonschema's vendored copy) and the structure a production run relies on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
CHECK_JSONSCHEMA = str(Path(sys.executable).with_name("check-jsonschema"))

REQUIRED = {"warehouse", "prefect-db", "prefect-server", "worker", "listener", "docs", "superset"}
ONE_SHOT = {"init"}

# ${VAR}, ${VAR:-default}, ${VAR:?message}, ${VAR-x}, ${VAR?x}; $$ is a literal dollar
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-?+][^}]*)?\}")
BARE = re.compile(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    spec = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(spec, dict)
    return spec


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def test_the_compose_spec_schema_accepts_it() -> None:
    proc = _validate(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda s: s["services"]["docs"].update(healthcheck="yes"), id="healthcheck"),
        pytest.param(lambda s: s.update(servises={"x": {"image": "busybox"}}), id="top-level key"),
        pytest.param(lambda s: s["services"]["worker"].update(restart=["always"]), id="restart"),
    ],
)
def test_the_schema_check_catches_a_broken_file(
    compose: dict[str, Any], tmp_path: Path, breakage: Any
) -> None:
    import copy

    broken = copy.deepcopy(compose)
    breakage(broken)
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    proc = _validate(path)
    assert proc.returncode != 0, proc.stdout
    # and the same file unbroken passes: the failure is the breakage, not the round trip
    path.write_text(yaml.safe_dump(compose, sort_keys=False))
    assert _validate(path).returncode == 0


def test_every_required_service_is_there(compose: dict[str, Any]) -> None:
    missing = REQUIRED - set(compose["services"])
    assert not missing, f"missing services: {sorted(missing)}"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        check = service.get("healthcheck")
        assert isinstance(check, dict) and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name its conditions"
        for dep, rule in depends.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            wanted = (
                "service_completed_successfully"
                if dep in ONE_SHOT
                else "service_healthy"
                if "healthcheck" in services[dep]
                else "service_started"
            )
            assert rule.get("condition") == wanted, f"{name} -> {dep}: {rule}"


def test_the_services_and_their_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    docs = services["docs"]
    assert docs["command"].split() == ["brain", "docs", "--host", "0.0.0.0", "--port", "8080"]
    assert docs["image"] == services["worker"]["image"] == services["init"]["image"]
    init = " ".join(_strings(services["init"]["command"]))
    assert "brain db login brain_writer" in init and "brain db login brain_bi" in init
    assert services["init"]["environment"]["BRAIN_DATABASE_URL"].startswith("postgresql://brain:")
    for name in ("worker", "listener", "docs"):  # the flows' side runs as brain_writer
        url = services[name]["environment"]["BRAIN_DATABASE_URL"]
        assert url.startswith("postgresql://brain_writer:"), name
    superset = services["superset"]
    image, _, tag = superset["image"].partition(":")
    assert image == "apache/superset" and re.fullmatch(r"\d+\.\d+\.\d+", tag), superset["image"]
    assert "brain_bi:" in " ".join(_strings(superset["command"]))
    for name, service in services.items():
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name


def test_the_brain_commands_it_runs_exist(compose: dict[str, Any]) -> None:
    """Every `brain ...` the services run is a command of the CLI (its --help answers)."""
    from typer.testing import CliRunner

    from brain_lib.cli import app

    text = " ".join(_strings([s.get("command", "") for s in compose["services"].values()]))
    commands = {tuple(m.split()[1:3]) for m in re.findall(r"brain [a-z]+(?: [a-z]+)?", text)}
    assert {("db", "login"), ("docs",), ("listen", "liquidations")} <= commands
    for words in commands:
        args = [w for w in words if not w.startswith("-")]
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (words, result.output)


def test_volumes_are_named_and_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            assert source and not source.startswith((".", "/", "~")), (
                f"{name}: {volume} is a bind mount, not a named volume"
            )
            used.add(source)
    assert used, "no service keeps any state"
    assert used <= declared, f"undeclared volumes: {sorted(used - declared)}"
    assert declared <= used, f"declared but unused: {sorted(declared - used)}"


def _example_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=.*", line.strip())
        if match:
            names.add(match.group(1))
    return names


def test_every_variable_is_in_env_example() -> None:
    text = COMPOSE.read_text()
    used = set(INTERPOLATION.findall(text))
    assert {"BRAIN_DB_PASSWORD", "PREFECT_DB_PASSWORD", "BRAIN_BI_PASSWORD"} <= used
    missing = used - _example_names()
    assert not missing, f"not in .env.example: {sorted(missing)}"
    # and no ${VAR} of the example is unused, so the example stays the file's list
    assert _example_names() <= used, sorted(_example_names() - used)
    # no bare $VAR that compose would interpolate by surprise (a shell's is $$VAR)
    assert not BARE.findall(INTERPOLATION.sub("", text))


def test_required_secrets_fail_loudly() -> None:
    text = COMPOSE.read_text()
    for var in ("BRAIN_DB_PASSWORD", "PREFECT_DB_PASSWORD", "BRAIN_BI_PASSWORD"):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (var, uses)


def test_env_is_ignored_and_the_example_is_not() -> None:
    def ignored(name: str) -> bool:
        proc = subprocess.run(
            ["git", "check-ignore", "-q", name], cwd=REPO, capture_output=True, check=False
        )
        return proc.returncode == 0

    assert ignored(".env")
    assert not ignored(".env.example")


SECRET_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE)", re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")


def _is_interpolated(value: str) -> bool:
    return bool(re.fullmatch(r"\$\$?\{?[A-Za-z_][A-Za-z0-9_]*(:?[?][^}]*)?\}?", value))


def test_no_literal_secret(compose: dict[str, Any]) -> None:
    found = []

    def visit(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                secret = isinstance(value, (str, int, float)) and SECRET_KEY.search(str(key))
                if secret and not _is_interpolated(str(value)):
                    found.append(f"{where}.{key}")
                visit(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                visit(item, f"{where}[{i}]")
        elif isinstance(node, str):
            plain = INTERPOLATION.sub(lambda m: "${" + m.group(1) + "}", node)
            for password in URL_PASSWORD.findall(plain):
                if not _is_interpolated(password):
                    found.append(f"{where}: a password in a URL")
            for flag in re.findall(r"--password[ =](\S+)", node):
                if not _is_interpolated(flag.strip("\"'")):
                    found.append(f"{where}: --password {flag}")

    visit(compose, "compose")
    assert not found, found


def test_the_secret_check_finds_a_literal_one(compose: dict[str, Any]) -> None:
    import copy

    leaky = copy.deepcopy(compose)
    leaky["services"]["warehouse"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    with pytest.raises(AssertionError):
        test_no_literal_secret(leaky)
    leaky = copy.deepcopy(compose)
    leaky["services"]["docs"]["environment"] = {"X": "postgresql://brain:hunter2@warehouse/b"}
    with pytest.raises(AssertionError):
        test_no_literal_secret(leaky)
