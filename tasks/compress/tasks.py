"""The compression stage's Prefect tasks: thin wrappers over `candidates`, the report."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.compress.candidates import compress
from tasks.compress.params import (
    CompressParams,
    CompressReport,
    comparison_markdown,
)
from tasks.shared.caching import source_run_key, stage_task
from tasks.shared.settings import get_settings


@stage_task(source_run_key)
def compress_task(params: CompressParams) -> CompressReport:
    return compress(params, get_settings())


@task
def publish_compress_report(report: CompressReport) -> None:
    create_markdown_artifact(
        comparison_markdown(report),
        key="compress-report",
        description=f"Compression candidates; chosen: {report.chosen}",
    )
