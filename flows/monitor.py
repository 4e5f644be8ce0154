from prefect import flow

from tasks.monitor.events import emit_drift_event
from tasks.monitor.params import MonitorParams, MonitorReport
from tasks.monitor.tasks import (
    check_request_log_task,
    compare_windows_task,
    evaluate_live_answers_task,
    load_windows_task,
    publish_drift_report,
    summarize_feedback_task,
)


@flow(name="monitor_drift", flow_run_name="monitor-{params.model_name}", log_prints=True)
def monitor_drift(params: MonitorParams = MonitorParams()) -> MonitorReport:  # noqa: B008
    """Compare the current window of the request log with a reference (past traffic or the
    training data): Great Expectations checks on the log, an Evidently report over prompt and
    response lengths, vocabulary, language, tokens, latency and errors per version, prompt
    embeddings and retrieval misses. Drift of the prompts emits `llmops.drift.detected`, which
    starts retraining; too little data gives no verdict. A sample of the live answers is scored
    (groundedness, refusals, empty answers, retrieval misses), written back beside the
    requests, and a significant drop against the reference window emits the same event. The
    report also sums the window's feedback (ratings, corrections) per served version."""
    windows = load_windows_task(params)
    log_checks = check_request_log_task(windows, params.max_latency_ms)
    feedback = summarize_feedback_task(windows)
    report = compare_windows_task(windows, params, log_checks, feedback)
    report = evaluate_live_answers_task(windows, params, report)
    report = emit_drift_event(report, params.retrain_cooldown_hours)
    publish_drift_report(report)
    print(f"drift monitor: {report.status}; " + "; ".join(report.reasons))
    return report
