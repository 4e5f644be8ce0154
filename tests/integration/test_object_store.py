"""Shared state beyond one machine, against a real S3-compatible server started here (moto's,
`services.s3_server`): the request log with its parts on an object store
(`LLMOPS_REQUEST_LOG_URL=s3://...`): two router replicas write, one is killed mid-stream, and
nothing acknowledged is lost or doubled; the monitor and the canary read it back from the
store. And Feast's registry as a file there (`LLMOPS_FEAST_REGISTRY=s3://...`)."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.clients.request_log import FeedbackLog, RequestLog, read_acknowledged, read_feedback
from tasks.core.drift import TimeRange
from tasks.monitor.windows import requests_in
from tasks.shared.settings import Settings

from services import Server, s3_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from tasks.clients.request_log import RequestLog
folder, parts, name, stop = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
log = RequestLog(folder, flush_every=5, parts=parts)
for i in range(stop):
    log.append(dict(request_id=f"{name}-{i}", at=datetime.now(UTC), version="1", route="/",
                    status=200, latency_ms=1.0, prompt_tokens=1, completion_tokens=1,
                    prompt="p" * 500, response="r"))
    print(f"acked {i}", flush=True)
log.close()
print("closed", flush=True)
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def settings(s3: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return Settings(home=tmp_path / "home", request_log_url=f"{s3.url}/{tmp_path.name}/requests")


def writer(s3: Server, folder: Path, parts: str, name: str, stop: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), parts, name, str(stop)],
        cwd=REPO,
        env={**os.environ, **s3.env},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_replicas_and_a_crash_lose_nothing_acknowledged(
    s3: Server, settings: Settings, tmp_path: Path
) -> None:
    parts = settings.requests_location
    # Each replica's write-ahead log is on its own node; the parts go to the one bucket.
    node_a, node_b = tmp_path / "node-a", tmp_path / "node-b"
    a = writer(s3, node_a, parts, "a", stop=10_000)
    b = writer(s3, node_b, parts, "b", stop=60)
    assert a.stdout is not None and b.stdout is not None
    acked_a = []
    for line in a.stdout:
        acked_a.append(int(line.split()[1]))
        if len(acked_a) == 23:
            os.kill(a.pid, signal.SIGKILL)  # mid-stream: maybe mid-write or mid-upload
            break
    acked_a += [int(line.split()[1]) for line in a.stdout if line.startswith("acked")]
    assert a.wait() == -signal.SIGKILL
    assert b.stdout.read().endswith("closed\n") and b.wait() == 0

    RequestLog(node_a, parts=parts).close()  # the replica's restart on that node recovers it
    frame = requests_in(parts, TimeRange(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC)))
    got = list(frame["request_id"])
    assert len(got) == len(set(got)), "a record was written twice"
    a_ids = {int(i.removeprefix("a-")) for i in got if i.startswith("a-")}
    assert set(acked_a) <= a_ids <= set(acked_a) | {max(acked_a) + 1}
    assert {i for i in got if i.startswith("b-")} == {f"b-{i}" for i in range(60)}
    assert not any(node_a.glob("date=*")), "the parts went to the bucket, not the node"


def test_the_canary_reads_acknowledged_records_and_feedback_goes_beside(
    settings: Settings,
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    record = dict(
        request_id="r-1", at=datetime.now(UTC), version="1", route="/", status=200,
        latency_ms=1.0, prompt_tokens=1, completion_tokens=1, prompt="p", response="r",
    )  # fmt: skip
    with RequestLog(settings.requests_dir, parts=settings.requests_location) as log:
        log.append(record)  # still in the WAL: the canary sees it all the same
        frame = read_acknowledged(settings.requests_dir, since, settings.requests_location)
        assert list(frame["request_id"]) == ["r-1"]
        log.flush()  # now in the bucket only
        frame = read_acknowledged(settings.requests_dir, since, settings.requests_location)
        assert list(frame["request_id"]) == ["r-1"]
    rating = {"feedback_id": "f-1", "request_id": "r-1", "at": datetime.now(UTC), "rating": 1}
    with FeedbackLog(settings.feedback_dir, parts=settings.feedback_location) as feedback:
        feedback.append(rating)
    assert list(read_feedback(settings.feedback_location)["request_id"]) == ["r-1"]
    assert settings.feedback_location.startswith(settings.requests_location + "/")
    assert requests_in(
        settings.requests_location, TimeRange(since, datetime.now(UTC))
    ).request_id.tolist() == ["r-1"]  # the feedback's parts are not taken for requests


def test_feasts_registry_on_the_object_store_is_what_another_process_reads(
    s3: Server, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from tasks.clients.feature_store import ChunkIndex

    monkeypatch.setenv("FEAST_S3_ENDPOINT_URL", s3.env["AWS_ENDPOINT_URL"])
    bucket, prefix = s3.url.removeprefix("s3://"), Path(settings.home).parent.name
    shared = settings.model_copy(update={"feast_registry": f"{s3.url}/{prefix}/registry.pb"})
    ChunkIndex(shared).apply()
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"{prefix}/registry.pb"]
    views = subprocess.run(
        [sys.executable, "-c", READ_VIEWS],
        cwd=REPO,
        env={**os.environ, **s3.env, "LLMOPS_HOME": str(settings.home.parent / "elsewhere"),
             "LLMOPS_FEAST_REGISTRY": shared.feast_registry,
             "FEAST_S3_ENDPOINT_URL": s3.env["AWS_ENDPOINT_URL"]},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert views.returncode == 0, views.stderr[-3000:]
    assert {"documents", "document_chunks"} <= set(views.stdout.split())


READ_VIEWS = """
from feast import FeatureStore
from tasks.clients.feature_store import repo_config
from tasks.shared.settings import get_settings
store = FeatureStore(config=repo_config(get_settings()))
print(" ".join(v.name for v in store.list_feature_views()))
"""
