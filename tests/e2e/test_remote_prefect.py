"""Prefect by URL alone: a worker started against a `prefect server` (not the temporary test
server) runs the `ingest_documents/ingest` deployment started from the CLI, no browser. The
run's state, artifact and result are read back from the server; bad parameters are refused by
the server's schema, or fail the run with the reason."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import prefect_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
DEPLOYMENT = "ingest_documents/ingest"

READ_RUN = """
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

with get_client(sync_client=True) as client:
    run = client.read_flow_run(sys.argv[1])
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
    )
    result = run.state.result(raise_on_failure=False) if run.state.is_completed() else None
print(json.dumps({
    "state": run.state_name,
    "message": run.state.message,
    "parameters": run.parameters,
    "artifacts": {a.key: a.data for a in artifacts if a.key},
    "result": result.model_dump(mode="json") if result is not None else None,
}))
"""


def cli(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server with the deployment registered and a process worker polling its pool."""
    root = tmp_path_factory.mktemp("remote-prefect")
    with prefect_server(root) as server:
        print(f"prefect server healthy after {server.start_s:.1f} s at {server.url}")
        env = {
            **server.env,
            "LLMOPS_HOME": str(root / "state"),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            # results are kept where any client of this server can read them back
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        }
        cli([PREFECT, "work-pool", "create", "local-process", "--type", "process"], env)
        cli([PREFECT, "--no-prompt", "deploy", "--name", DEPLOYMENT], env)
        log = root / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "local-process"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            yield env
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def run_deployment(env: dict[str, str], params: dict, check: bool = True) -> tuple[str, dict]:
    """`prefect deployment run ... --watch`: the run's id and what the server holds of it."""
    done = cli(
        [
            PREFECT,
            "deployment",
            "run",
            DEPLOYMENT,
            "--param",
            f"params={json.dumps(params)}",
            "--watch",
            "--watch-timeout",
            "240",
        ],
        env,
        check=check,
    )
    found = re.search(r"UUID:\s*([0-9a-f-]{36})", done.stdout)
    assert found, done.stdout + done.stderr
    read = cli([sys.executable, "-c", READ_RUN, found.group(1)], env)
    return found.group(1), json.loads(read.stdout.strip().splitlines()[-1])


def test_a_worker_runs_the_deployment_started_from_the_cli(
    platform: dict[str, str], tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("A document long enough to be accepted by the ingest stage.")
    (docs / "short.txt").write_text("tiny")
    _, run = run_deployment(platform, {"source_dir": str(docs), "min_chars": 20})

    assert run["state"] == "Completed"
    assert run["parameters"]["params"]["source_dir"] == str(docs)
    assert run["result"]["accepted"] == 1 and run["result"]["quarantined"] == 1
    report = run["artifacts"]["ingest-report"]
    assert "short.txt" in report and "good.txt" not in report  # the quarantined one, its reason


def test_a_bad_parameter_is_refused_or_fails_the_run_with_the_reason(
    platform: dict[str, str], tmp_path: Path
) -> None:
    # Outside the parameter model's bounds: the server refuses to create the run.
    refused = cli(
        [PREFECT, "deployment", "run", DEPLOYMENT, "--param", 'params={"min_chars": 0}'],
        platform,
        check=False,
    )
    assert refused.returncode != 0
    assert "min_chars" in refused.stdout + refused.stderr

    # Valid in form, wrong in fact: the run fails and says why.
    missing = tmp_path / "no-such-folder"
    _, run = run_deployment(platform, {"source_dir": str(missing)}, check=False)
    assert run["state"] == "Failed"
    assert f"source folder {missing} does not exist" in run["message"]
