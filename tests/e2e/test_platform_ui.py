"""The local platform as a person uses it: `make ui`'s script starts the server, registers the
deployments and a worker; in headless Chromium we open a deployment's form, change its
parameters, run it, and read the run's state and artifact in the UI. Ctrl-C stops it all."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
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
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_line(log, proc, READY, timeout_s=300)
        line = next(x for x in log.read_text().splitlines() if x.startswith(READY))
        yield line.split()[3]
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = proc.wait(timeout=90)
    assert code == 0, log.read_text()
    assert "stopped" in log.read_text() and "still running" not in log.read_text()


def api_filter(url: str, collection: str, criteria: dict) -> list[dict]:
    """The objects of `collection` (deployments, flow_runs) that the filter finds."""
    body = json.dumps(criteria).encode()
    req = urllib.request.Request(
        f"{url}/api/{collection}/filter", body, {"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(req))


def only_id(url: str, collection: str, criteria: dict) -> str:
    """The id of the one object of `collection` the filter finds."""
    [found] = api_filter(url, collection, criteria)
    return found["id"]


def deployment_id(url: str, flow: str) -> str:
    return only_id(url, "deployments", {"flows": {"name": {"any_": [flow]}}})


def deployment_runs(url: str, deployment: str) -> list[dict]:
    """The deployment's flow runs, oldest first; [] while the server answers 503 (SQLite busy:
    Prefect's clients retry on it)."""
    criteria = {"deployments": {"id": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC"}
    try:
        return api_filter(url, "flow_runs", criteria)
    except urllib.error.HTTPError as e:
        if e.code != 503:
            raise
        return []


def flow_run(url: str, run_id: str) -> dict:
    return json.load(urllib.request.urlopen(f"{url}/api/flow_runs/{run_id}"))


def test_a_stage_runs_from_its_form_in_the_ui(platform: str, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: run `make chromium` (or set LLMOPS_CHROMIUM)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright is missing: it is in the dev extras (`make setup`)")
    expect = sync_api.Expect()  # this test's own: on a loaded machine a page can take over
    expect.set_options(timeout=30_000)  # Playwright's default 5 s to render (seen: 12 s)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)  # clicks and fills wait as long for their element
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
    deployment = deployment_id(url, "ingest_documents")
    page.goto(f"{url}/deployments/deployment/{deployment}")
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
        expect(field(label).locator("textarea")).to_have_value(value)
    run_id = submit_until_run(page, url, deployment, expect)
    # The run list hides runs still Scheduled (until the worker takes them): open the new
    # run's page by its id.
    page.goto(f"{url}/runs/flow-run/{run_id}")
    return run_id


def submit_until_run(
    page, url: str, deployment: str, expect, attempts: int = 5, timeout_s: float = 60
) -> str:
    """Submit the form, then wait for the new run in the API (the one with the changed topic),
    not for the UI's "<run> scheduled to start now" toast, which goes after 5 s. On a loaded
    machine the server can answer the form's create_flow_run with 503 (SQLite "database is
    locked", which Prefect's own clients retry): the UI does not retry, it shows an error toast
    and keeps the filled form, so we submit again, as a person would."""
    answers: list[tuple[str, int]] = []  # the server's answers to the form's requests

    def record(response) -> None:
        if response.request.method == "POST" and response.url.endswith(
            ("/create_flow_run", "/ui/schemas/validate")
        ):
            answers.append((response.url.rsplit("/", 1)[-1], response.status))

    before = {r["id"] for r in deployment_runs(url, deployment)}
    page.on("response", record)
    submit = page.get_by_role("button", name="Submit")
    for attempt in range(1, attempts + 1):
        expect(submit).to_be_enabled()  # not while the form is still submitting
        seen = len(answers)
        submit.click()
        deadline = time.monotonic() + timeout_s
        while True:
            new = [r for r in deployment_runs(url, deployment) if r["id"] not in before]
            ours = [r for r in new if r["parameters"]["params"].get("demo_topics") == [TOPIC]]
            if ours:
                page.remove_listener("response", record)
                return ours[-1]["id"]
            if any(status >= 500 for _, status in answers[seen:]):
                break  # refused, no run: the UI shows an error, the form is still filled
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no new run of ingest_documents with demo_topics={[TOPIC]} "
                    f"{timeout_s:.0f} s after Submit (attempt {attempt}); new runs: "
                    f"{[(r['name'], r['parameters']) for r in new] or 'none'}; the server's "
                    f"answers to the form: {answers or 'none (the form sent nothing)'}; "
                    f"the page is at {page.url}"
                )
            page.wait_for_timeout(500)  # (Playwright delivers `record` calls meanwhile)
    raise AssertionError(
        f"no run created: the server refused the custom run {attempts} times: {answers}"
    )


def check_run_page(page, expect) -> None:
    """The state badge turns Completed (the page polls), and the ingest report is listed and
    shows the counts of the changed parameters: one topic and one module page read."""
    badge = page.locator(".state-badge").first
    expect(badge).to_have_text("Completed", timeout=150_000)
    page.locator("li.p-tab", has_text="Artifacts").click()
    page.get_by_text("ingest-report").click()
    expect(page.get_by_text("read = accepted + quarantined")).to_be_visible()
    expect(page.locator("table td").first).to_have_text("2")  # read: 1 topic + 1 module
