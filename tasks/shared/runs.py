"""What a stage knows of the orchestrator's run it is part of."""

from __future__ import annotations

from prefect.runtime import flow_run


def current_actor() -> str:
    """Who acts when no person does: the flow run, by name (its id is in Prefect)."""
    run = flow_run.get_name()
    return f"{flow_run.get_flow_name()} flow run {run}" if run else "plain call"
