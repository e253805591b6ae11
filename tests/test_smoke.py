"""Every prefect.yaml entrypoint imports and is the flow its deployment names."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect import Flow

REPO = Path(__file__).resolve().parent.parent


def test_every_deployment_entrypoint_imports() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = spec["deployments"]
    assert {d["name"] for d in deployments} >= {"daily-retrain"}
    for deployment in deployments:
        path, _, name = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert isinstance(flow, Flow)
        assert flow.name == deployment["name"]
        assert deployment["schedules"][0]["timezone"]
        # every parameter the deployment sets is a parameter of the flow
        assert set(deployment.get("parameters", {})) <= set(flow.parameters.properties)
