"""The monitoring stage's Prefect tasks: thin wrappers over `drift`, and the report artifacts."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NONE

from tasks.clients.tracking import run_url, start_run
from tasks.monitor.answers import evaluate_live, with_answer_checks
from tasks.monitor.drift import (
    Windows,
    compare_windows,
    default_embed,
    load_windows,
    report_dir,
    window_feedback,
)
from tasks.monitor.feedback import FeedbackSummary
from tasks.monitor.log_checks import LogCheck, check_request_log
from tasks.monitor.params import (
    MonitorParams,
    MonitorReport,
    summary_markdown,
)
from tasks.shared.caching import RETRIES
from tasks.shared.settings import get_settings

MONITOR = "monitor"  # the MLflow experiment that keeps each run's Evidently pages


# Windows hold DataFrames: hashing them for a cache key would cost more than the task.
@task(cache_policy=NONE, **RETRIES)
def load_windows_task(params: MonitorParams) -> Windows:
    return load_windows(get_settings(), params, datetime.now(UTC))


@task(cache_policy=NONE)
def check_request_log_task(windows: Windows, max_latency_ms: float) -> list[LogCheck]:
    return check_request_log(windows.current, max_latency_ms)


@task(cache_policy=NONE, **RETRIES)
def summarize_feedback_task(windows: Windows) -> FeedbackSummary | None:
    return window_feedback(get_settings(), windows)


@task(cache_policy=NONE)
def compare_windows_task(
    windows: Windows,
    params: MonitorParams,
    log_checks: list[LogCheck],
    feedback: FeedbackSummary | None = None,
) -> MonitorReport:
    embed = default_embed(params.embedding_model)
    directory = report_dir(get_settings())
    return compare_windows(windows, params, embed, log_checks, directory, feedback=feedback)


@task(cache_policy=NONE)
def evaluate_live_answers_task(
    windows: Windows, params: MonitorParams, report: MonitorReport
) -> MonitorReport:
    """Score a sample of the window's live answers, write the scores beside the requests, and
    add a check per metric against the reference window's answers."""
    if not params.online.enabled:
        return report
    reference = windows.reference if windows.traffic_reference else None
    checks, path = evaluate_live(
        get_settings().requests_dir,
        windows.current,
        reference,
        params.online,
        params.miss_score,
        params.seed,
        datetime.now(UTC),
    )
    return with_answer_checks(report, checks, path, params.online.retrain)


@task
def publish_drift_report(report: MonitorReport) -> None:
    create_markdown_artifact(
        summary_markdown(report),
        key="drift-summary",
        description=f"{report.model_name}: {report.status}",
    )
    pages = [page for page in (report.html, report.embedding_html) if page]
    if pages:  # a browser will not open a file:// link from the UI: MLflow's UI shows them
        settings = get_settings()
        with start_run(settings, f"drift-{report.model_name}", experiment=MONITOR) as run:
            for page in pages:
                run.log_file(page, "evidently")
        create_link_artifact(
            run_url(settings, run.run_id),
            link_text="Evidently drift report (MLflow run, Artifacts → evidently)",
            key="drift-report",
            description=f"{report.status}; the files: {', '.join(pages)}",
        )
