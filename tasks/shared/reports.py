"""A run's reports as files: every artifact a flow run and its sub-flow runs published (the
summary, the loss curve, the compression and promotion tables, …), written as markdown under
`<home>/reports/<run name>-<start time>/`, so a person finds them without opening a UI."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

_UNSAFE = re.compile(r"[^\w.-]+")


def table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A list of rows (what a table artifact holds) as a markdown table; the columns in the
    order they first appear. Pipes and newlines in cells are escaped so a row stays one line."""
    if not rows:
        return "(empty table)\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"


def artifact_markdown(kind: str, data: Any, description: str | None) -> str:
    """One artifact as a markdown page: its description, then its content."""
    head = f"{description}\n\n" if description else ""
    if kind == "table":
        rows = json.loads(data) if isinstance(data, str) else data
        if isinstance(rows, Mapping):  # a table given as columns
            names, columns = list(rows), zip(*rows.values(), strict=True)
            rows = [dict(zip(names, values, strict=True)) for values in columns]
        return head + table_markdown(rows)
    if kind == "link":
        return head + f"<{data}>\n"
    return head + (data if isinstance(data, str) else json.dumps(data, indent=2)) + "\n"


def file_name(key: str | None, kind: str, index: int) -> str:
    """`<key>.md`, or the artifact's kind and position when it has no key."""
    stem = _UNSAFE.sub("-", key).strip("-") if key else f"{kind}-{index}"
    return f"{stem or kind}.md"


def export_run_reports(flow_run_id: UUID | str, root: Path) -> Path:
    """Write the artifacts of the flow run `flow_run_id` and of its sub-flow runs (one level:
    the nightly's stages) to `root/<run name>-<start time>/`, one markdown file each (the
    latest of a key wins); that folder."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    run_id = UUID(str(flow_run_id))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
            )
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id, *(c.id for c in children)])
            ),
            sort=ArtifactSort.UPDATED_DESC,
        )
    started = run.start_time or run.expected_start_time
    stamp = f"-{started:%Y%m%d-%H%M%S}" if started else ""
    dest = root / f"{_UNSAFE.sub('-', run.name)}{stamp}"
    dest.mkdir(parents=True, exist_ok=True)
    for index, artifact in enumerate(reversed(artifacts)):  # oldest first: the latest wins
        kind = artifact.type or "markdown"
        page = artifact_markdown(kind, artifact.data, artifact.description)
        (dest / file_name(artifact.key, kind, index)).write_text(page)
    return dest
