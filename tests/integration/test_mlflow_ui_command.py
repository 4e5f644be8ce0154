"""`llmops mlflow` started for real on a small tracking store with one fine-tuning run: the
run and its artifact through the UI's REST API, the printed URL opening on the runs (rendered
by Chromium when there is one), and a clean stop."""

import html
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tasks.clients.tracking import EXPERIMENT, run_url, start_run
from tasks.shared.settings import Settings, get_settings

from services import wait_until_healthy
from worlds import free_port

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")


@dataclass
class Ui:
    url: str
    printed: str  # what the command printed before it became `mlflow ui`
    run_id: str
    proc: subprocess.Popen
    home: Path


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    home = tmp_path_factory.mktemp("mlflow-ui") / "state"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOPS_HOME", str(home))
        patch.delenv("LLMOPS_MLFLOW_TRACKING_URI", raising=False)
        settings = get_settings()
        with start_run(settings, "lora-tiny") as run:
            run.log_params({"method": "lora"})
            run.log_metrics({"train_loss": 2.5})
            run.log_text("a fine-tuning run's note", "notes/run.txt")
        port = free_port()
        log = home / "ui.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "llmops"), "mlflow", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
                start_new_session=True,  # its own group: the uvicorn and job workers with it
            )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", lambda: proc.poll() is None, log, timeout_s=120)
        yield Ui(url, log.read_text(), run.run_id, proc, home)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(proc.pid):  # the test fails below; nothing is left running
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
def test_the_printed_url_opens_on_the_runs_not_on_traces(ui: Ui, tmp_path: Path) -> None:
    url = re.search(r"fine-tuning runs: (\S+)", ui.printed).group(1)
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    shown = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", _no_code(dom))).split())
    assert shown.startswith("Runs - Experiment"), shown[:300]
    assert "lora-tiny" in shown
    assert "1 matching run" in shown


def test_the_ui_serves_the_platforms_runs_and_stops_cleanly(ui: Ui) -> None:
    with httpx.Client(base_url=f"{ui.url}/ajax-api/2.0/mlflow", timeout=30) as api:
        found = api.post("/experiments/search", json={"max_results": 100}).json()
        experiments = {e["name"]: e for e in found["experiments"]}
        assert EXPERIMENT in experiments
        experiment = experiments[EXPERIMENT]
        assert experiment["artifact_location"].startswith("file://")
        runs = api.post("/runs/search", json={"experiment_ids": [experiment["experiment_id"]]})
        (run,) = runs.json()["runs"]
        assert run["info"]["run_id"] == ui.run_id
        assert run["data"]["metrics"][0]["key"] == "train_loss"
        listed = api.get("/artifacts/list", params={"run_id": ui.run_id, "path": "notes"})
        assert [f["path"] for f in listed.json()["files"]] == ["notes/run.txt"]
        text = httpx.get(
            f"{ui.url}/get-artifact", params={"run_uuid": ui.run_id, "path": "notes/run.txt"}
        )
        assert text.text == "a fine-tuning run's note"
    runs_url = (
        f"{ui.url}/#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning"
    )
    assert runs_url in ui.printed
    # the links reports carry (promotion, evaluation) open the run on this UI
    linked = run_url(Settings(home=ui.home, mlflow_ui_url=ui.url), ui.run_id)
    assert linked == runs_url.replace("/runs?", f"/runs/{ui.run_id}?")

    ui.proc.terminate()
    assert ui.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _group_alive(ui.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(ui.proc.pid), "mlflow ui left processes behind"


def _no_code(dom: str) -> str:
    return re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
