"""The monitoring stage's Prefect tasks: thin wrappers over `drift`, and the report artifacts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NONE

from tasks.monitor.drift import Windows, compare_windows, default_embed, load_windows, report_dir
from tasks.monitor.log_checks import LogCheck, check_request_log
from tasks.monitor.params import (
    MonitorParams,
    MonitorReport,
    summary_markdown,
)
from tasks.shared.caching import RETRIES
from tasks.shared.settings import get_settings


# Windows hold DataFrames: hashing them for a cache key would cost more than the task.
@task(cache_policy=NONE, **RETRIES)
def load_windows_task(params: MonitorParams) -> Windows:
    return load_windows(get_settings(), params, datetime.now(UTC))


@task(cache_policy=NONE)
def check_request_log_task(windows: Windows, max_latency_ms: float) -> list[LogCheck]:
    return check_request_log(windows.current, max_latency_ms)


@task(cache_policy=NONE)
def compare_windows_task(
    windows: Windows, params: MonitorParams, log_checks: list[LogCheck]
) -> MonitorReport:
    embed = default_embed(params.embedding_model)
    return compare_windows(windows, params, embed, log_checks, report_dir(get_settings()))


@task
def publish_drift_report(report: MonitorReport) -> None:
    create_markdown_artifact(
        summary_markdown(report),
        key="drift-summary",
        description=f"{report.model_name}: {report.status}",
    )
    if report.html:
        create_link_artifact(
            Path(report.html).as_uri(),
            link_text="Evidently drift report",
            key="drift-report",
            description=report.status,
        )
