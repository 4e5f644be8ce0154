import pytest

from llmops.mlflow_ui import experiment_url, is_remote, ui_command
from llmops.status_view import (
    describe_flow_run,
    describe_release,
    describe_serving,
    render,
    unavailable,
    version_scores,
)
from tasks.shared.settings import Settings

pytestmark = pytest.mark.unit


def test_a_versions_own_scores_are_its_candidate_tags() -> None:
    tags = {
        "candidate_bpb": "1.250000",
        "candidate_token_f1": "0.400000",
        "base_bpb": "2.0",
        "champion_bpb": "1.5",
        "candidate_note": "not a number",
        "decision": "promoted",
    }
    assert version_scores(tags) == {"bpb": 1.25, "token_f1": 0.4}


def test_releases_say_version_scores_and_decision_or_none() -> None:
    release = {"version": "3", "scores": {"bpb": 1.23456}, "decision": "promoted"}
    assert describe_release("champion", release) == "champion: v3 (bpb 1.235); promoted"
    bare = {"version": "4", "scores": {}, "decision": None}
    assert describe_release("challenger", bare) == "challenger: v4 (no scores recorded)"
    assert describe_release("challenger", None) == "challenger: none"


def test_serving_shows_each_versions_share_and_alias() -> None:
    part = {
        "url": "http://x:8000",
        "serving": True,
        "model": "m",
        "versions": [{"version": "2", "weight": 30.0}, {"version": "1", "weight": 90.0}],
    }
    aliases = {"champion": "1", "challenger": "2"}
    assert describe_serving(part, aliases) == [
        "m at http://x:8000: v2 25% (challenger), v1 75% (champion)"
    ]
    assert describe_serving({"url": "http://x:8000", "serving": False}, aliases) == [
        "not serving (nothing answers at http://x:8000)"
    ]


def test_flow_runs_show_state_and_when() -> None:
    run = {
        "name": "nightly-1",
        "state": "Completed",
        "start_time": "2026-01-02T03:04:05+00:00",
        "duration_s": 612.4,
    }
    assert describe_flow_run("nightly_pipeline", run) == (
        "nightly_pipeline: Completed (nightly-1, started 2026-01-02T03:04:05+00:00, 612 s)"
    )
    assert describe_flow_run("monitor_drift", None) == "monitor_drift: no run yet"


def test_a_part_that_cannot_be_read_is_one_line_and_the_rest_still_shows() -> None:
    status = {
        "registry": unavailable("cannot read: MlflowException: no such\n table"),
        "serving": {"url": "http://x", "serving": False},
        "index": {"store": "/s/online_store.db", "rows": 12},
        "quarantine": {"folder": "/q", "rows": 0},
    }
    assert render(status).splitlines() == [
        "registry    cannot read: MlflowException: no such table",
        "serving     not serving (nothing answers at http://x)",
        "index       12 chunk(s) in /s/online_store.db",
        "quarantine  0 quarantined row(s) in /q",
    ]


def test_the_mlflow_ui_opens_the_experiments_runs_in_the_model_training_view() -> None:
    assert experiment_url("http://h:5000/", "7") == (
        "http://h:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    assert experiment_url("http://h:5000", None) == "http://h:5000/#/?workflowType=machine_learning"
    assert is_remote("https://mlflow.example") and not is_remote("sqlite:////x/mlflow.db")


def test_the_mlflow_ui_command_uses_the_platforms_store_and_artifact_folder(tmp_path) -> None:
    settings = Settings(home=tmp_path)
    command = ui_command(settings, "0.0.0.0", 5001)
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert command[1] == "ui"
    assert flags["--backend-store-uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert flags["--default-artifact-root"] == (tmp_path / "mlartifacts").as_uri()
    assert flags["--artifacts-destination"] == (tmp_path / "mlartifacts").as_uri()
    assert (flags["--host"], flags["--port"]) == ("0.0.0.0", "5001")
    remote = Settings(home=tmp_path, mlflow_tracking_uri="postgresql://db/mlflow")
    assert "--default-artifact-root" not in ui_command(remote, "127.0.0.1", 5000)
