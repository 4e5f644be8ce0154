"""The drift monitor's Prefect event: `llmops.drift.detected` for a model, which the nightly
deployment's trigger answers with a retraining. While drift lasts, every monitoring run would
find it again, so one event per model per cooldown period starts one retraining, not one an
hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)

from tasks.monitor.params import DRIFT_EVENT, MonitorReport, model_resource


def event_payload(report: MonitorReport) -> dict:
    """What the drift event carries: enough to see why retraining started."""
    return {
        "status": report.status,
        "current_window": report.current_window,
        "reference_window": report.reference_window,
        "current_rows": report.current_rows,
        "drifted": [c.model_dump() for c in report.drifted],
        "report": report.html,
    }


def last_drift_event(model_name: str, since: datetime) -> datetime | None:
    """When the latest drift event for the model occurred after `since`, if one did."""
    wanted = EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(minutes=1)),
        event=EventNameFilter(name=[DRIFT_EVENT]),
        resource=EventResourceFilter(id=[model_resource(model_name)]),
    )
    with get_client(sync_client=True) as client:
        events = client.read_events(wanted, limit=1).events  # newest first
    return events[0].occurred if events else None


@task
def emit_drift_event(report: MonitorReport, cooldown_hours: float) -> MonitorReport:
    """Emit `llmops.drift.detected` for the model when the verdict asks for retraining and no
    such event went out within the cooldown."""
    if not report.retrain:
        return report
    if cooldown_hours > 0:
        since = datetime.now(UTC) - timedelta(hours=cooldown_hours)
        earlier = last_drift_event(report.model_name, since)
        if earlier is not None:
            return report.model_copy(update={"event_held_back": earlier.isoformat()})
    resource = {
        "prefect.resource.id": model_resource(report.model_name),
        "prefect.resource.name": report.model_name,
    }
    event = emit_event(DRIFT_EVENT, resource=resource, payload=event_payload(report))
    return report.model_copy(update={"event_emitted": event is not None})
