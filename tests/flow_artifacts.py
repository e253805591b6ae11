"""Reading what a flow run published: one helper for every flow test."""

from __future__ import annotations

from typing import Any


def flow_run_artifact(key: str, flow_run_id: Any) -> Any:
    """The artifact ``key`` of one flow run (None when it published none): flows publish
    under one key per flow, so the run id tells the runs of a module apart."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> Any:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                )
            )
            return found[0] if found else None

    return run_coro_as_sync(read())
