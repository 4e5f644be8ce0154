"""The monitor_drift flow under Prefect: German traffic against a Python-docs reference is
drift, which emits `llmops.drift.detected` for the model and publishes the summary and a link
to the HTML report (with the window's feedback per version); the same drift found again does
not emit within the cooldown; an empty window gives no verdict and no event."""

import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from drift_world import DAY0, drift_world
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker

from flows.monitor import monitor_drift
from tasks.clients.request_log import FeedbackLog, read_requests
from tasks.monitor.params import DRIFT_EVENT, MonitorParams, model_resource

pytestmark = pytest.mark.e2e
MODEL = "drift-e2e"


def params(current: tuple, reference: tuple) -> MonitorParams:
    return MonitorParams.model_validate(
        {
            "model_name": MODEL,
            "min_rows": 100,
            "embedding_sample": 100,
            "embedding_map": False,
            "current": {"start": current[0], "end": current[1]},
            "reference": {"start": reference[0], "end": reference[1]},
        }
    )


def drift_events() -> list:
    EventsWorker.drain_all()  # the flow's events leave in the background
    wanted = EventFilter(
        event=EventNameFilter(name=[DRIFT_EVENT]),
        resource=EventResourceFilter(id=[model_resource(MODEL)]),
    )
    with get_client(sync_client=True) as client:
        for _ in range(30):  # the server takes them in asynchronously too
            events = client.read_events(wanted, limit=10).events  # the server allows <= 50
            if events:
                return events
            time.sleep(0.5)
    return []


def test_drift_emits_the_event_and_publishes_the_report(
    prefect_harness, tmp_path: Path, embedder
) -> None:
    with drift_world(tmp_path, embedder, size=100, names=("reference", "man-de")) as world:
        start, _ = world.day("man-de")
        rated = read_requests(world.settings.requests_dir, since=start).iloc[0]
        with FeedbackLog(world.settings.feedback_dir) as feedback:
            for i, request_id in enumerate((rated["request_id"], "cmpl-unknown")):
                at = rated["at"].to_pydatetime() + timedelta(minutes=1)
                record = {"feedback_id": f"fb-{i}", "request_id": request_id, "rating": -1}
                feedback.append({**record, "at": at, "correction": "Sie meinen man 7 epoll."})
        report = monitor_drift(params(world.day("man-de"), world.day("reference")))
        assert (report.status, report.retrain, report.event_emitted) == ("drift", True, True)
        assert {"language", "OOV rate", "prompt embeddings"} <= {c.name for c in report.drifted}
        assert Path(report.html).exists() and report.embedding_html is None  # no t-SNE map
        # The window's live answers were scored and written back beside the requests.
        scores = pd.read_parquet(report.scores_path)
        assert 0 < len(scores) <= report.current_rows and scores["empty"].notna().all()
        assert {"live groundedness", "live refused"} <= {c.name for c in report.checks}

        events = drift_events()
        assert len(events) == 1
        payload = events[0].payload
        assert payload["status"] == "drift" and payload["report"] == report.html
        assert "language" in {c["name"] for c in payload["drifted"]}
        with get_client(sync_client=True) as client:
            summary = client.read_latest_artifacts()
        by_key = {a.key: a for a in summary}
        assert "retraining asked for" in by_key["drift-summary"].data
        assert report.feedback is not None and report.feedback.reconciles
        assert [(v.version, v.ratings, v.corrections) for v in report.feedback.versions] == [
            (rated["version"], 1, 1)
        ]
        assert report.feedback.unknown_request_ids == ["cmpl-unknown"]
        assert f"| {rated['version']} | 1 | 0 | 0% | 1 |" in by_key["drift-summary"].data
        # the Evidently page opens from the run in MLflow's UI (a browser will not follow a
        # file:// link out of the Prefect UI); the description names the file too
        link = by_key["drift-report"]
        assert f"]({world.settings.mlflow_ui_url}/#/experiments/" in link.data  # [text](url)
        assert report.html in link.description
        run_id = link.data.split("/runs/")[1].split("?")[0]
        kept = MlflowClient(world.settings.tracking_uri).list_artifacts(run_id, "evidently")
        assert [Path(f.path).name for f in kept] == [Path(report.html).name]

        # drift that lasts: the next run finds it again, but within the cooldown (24 h) it
        # does not start another retraining
        again = monitor_drift(params(world.day("man-de"), world.day("reference")))
        assert (again.status, again.retrain, again.event_emitted) == ("drift", True, False)
        assert again.event_held_back == events[0].occurred.isoformat()
        with get_client(sync_client=True) as client:
            latest = {a.key: a for a in client.read_latest_artifacts()}
        assert "within the cooldown" in latest["drift-summary"].data

        empty = (DAY0 + timedelta(days=10), DAY0 + timedelta(days=11))
        nothing = monitor_drift(params(empty, world.day("reference")))
        assert (nothing.status, nothing.retrain, nothing.event_emitted) == (
            "insufficient data",
            False,
            False,
        )
        assert len(drift_events()) == 1  # still only the first run's
