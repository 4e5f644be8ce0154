"""The local platform as a person uses it: `make ui`'s script starts the server, registers the
deployments and a worker; in headless Chromium we open a deployment's form, change its
parameters, run it, and read the run's state and artifact in the UI. Ctrl-C stops it all."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from worlds import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "local" / "run_platform.py"
READY = "Prefect UI ready:"
CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")  # `make chromium` installs it
TOPIC, MODULE = "try", "json"  # the changed parameters: one pydoc topic, one module page


def wait_for_line(log: Path, proc: subprocess.Popen, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} from the platform script:\n{log.read_text()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The UI's URL while the platform script runs; afterwards, it must stop on Ctrl-C."""
    tmp = tmp_path_factory.mktemp("platform")
    env = {**os.environ, "LLMOPS_HOME": str(tmp / "state"), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    log = tmp / "platform.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--port", str(free_port())],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_line(log, proc, READY, timeout_s=300)
        line = next(x for x in log.read_text().splitlines() if x.startswith(READY))
        yield line.split()[3]
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = proc.wait(timeout=90)
    assert code == 0, log.read_text()
    assert "stopped" in log.read_text() and "still running" not in log.read_text()


def only_id(url: str, collection: str, criteria: dict) -> str:
    """The id of the one object of `collection` (deployments, flow_runs) the filter finds."""
    body = json.dumps(criteria).encode()
    req = urllib.request.Request(
        f"{url}/api/{collection}/filter", body, {"Content-Type": "application/json"}
    )
    [found] = json.load(urllib.request.urlopen(req))
    return found["id"]


def deployment_id(url: str, flow: str) -> str:
    return only_id(url, "deployments", {"flows": {"name": {"any_": [flow]}}})


def flow_run_id(url: str, name: str) -> str:
    return only_id(url, "flow_runs", {"flow_runs": {"name": {"any_": [name]}}})


def flow_run(url: str, run_id: str) -> dict:
    return json.load(urllib.request.urlopen(f"{url}/api/flow_runs/{run_id}"))


def test_a_stage_runs_from_its_form_in_the_ui(platform: str, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: run `make chromium` (or set LLMOPS_CHROMIUM)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright is missing: it is in the dev extras (`make setup`)")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            run_id = start_custom_run(page, platform, expect)
            check_run_page(page, expect)
            page.screenshot(path=tmp_path / "artifact.png")
        except Exception:
            page.screenshot(path=tmp_path / "failure.png")  # kept by pytest's tmp_path
            raise
        finally:
            browser.close()
    run = flow_run(platform, run_id)
    assert run["state_type"] == "COMPLETED"
    assert run["parameters"]["params"]["demo_topics"] == [TOPIC]


def start_custom_run(page, url: str, expect) -> str:
    """Deployment page → Run → Custom run → change the form → Submit → the new run's page."""
    page.goto(f"{url}/deployments/deployment/{deployment_id(url, 'ingest_documents')}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    expect(page.get_by_text("What to ingest and the rules a document must pass.")).to_be_visible()

    def field(label: str):
        labelled = page.locator(".schema-form-property__label", has_text=label)
        return page.locator(".schema-form-property").filter(has=labelled).last

    expect(field("Min Chars").locator("input")).to_have_value("20")  # defaults fill the form
    for label, value in (("Demo Topics", TOPIC), ("Demo Modules", MODULE)):
        field(label).get_by_role("button", name="list", exact=True).click()  # was None
        field(label).get_by_role("button", name="Add item").click()
        field(label).locator("textarea").fill(value)
    page.get_by_role("button", name="Submit").click()
    # "<run name> scheduled to start now" (its toast shows twice, moving: click the list instead)
    name = page.locator(".toast-flow-run-create__message--emphasized").first.inner_text()
    # The run list hides runs still Scheduled (until the worker takes them): open the new
    # run's page by the id of the run that has the toast's name.
    run_id = flow_run_id(url, name)
    page.goto(f"{url}/runs/flow-run/{run_id}")
    return run_id


def check_run_page(page, expect) -> None:
    """The state badge turns Completed (the page polls), and the ingest report is listed and
    shows the counts of the changed parameters: one topic and one module page read."""
    badge = page.locator(".state-badge").first
    expect(badge).to_have_text("Completed", timeout=150_000)
    page.locator("li.p-tab", has_text="Artifacts").click()
    page.get_by_text("ingest-report").click()
    expect(page.get_by_text("read = accepted + quarantined")).to_be_visible()
    expect(page.locator("table td").first).to_have_text("2")  # read: 1 topic + 1 module
