"""The local platform as a person uses it: `make ui`'s script starts the server, registers the
deployments and a worker; in headless Chromium we open a deployment's form, change its
parameters, run it, and read the run's state and artifact in the UI. Ctrl-C stops it all."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from worlds import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "local" / "run_platform.py"
NIGHTLY = REPO / "infra" / "local" / "run_nightly.py"
READY = "Prefect UI ready:"
CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")  # `make chromium` installs it
TOPIC, MODULE = "try", "json"  # the changed parameters: one pydoc topic, one module page


def wait_for_line(log: Path, proc: subprocess.Popen, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} from the platform script:\n{log.read_text()}")
        time.sleep(0.5)


EARLIER = """
from flows.ingest import ingest_documents
from tasks.ingest.params import IngestParams
state = ingest_documents(IngestParams(demo_topics=["with"], demo_modules=[]), return_state=True)
print(state.state_details.flow_run_id)
"""


def run_before_the_ui(state: Path) -> str:
    """A flow run made as `make nightly` makes its runs while no UI is up (the environment its
    runner gives the flow's process: a temporary server on the platform's database)."""
    spec = importlib.util.spec_from_file_location("run_nightly", NIGHTLY)
    runner = importlib.util.module_from_spec(spec)
    sys.modules["run_nightly"] = runner  # its dataclasses look their module up
    sys.path.insert(0, str(NIGHTLY.parent))  # it imports run_platform beside it
    try:
        spec.loader.exec_module(runner)
    finally:
        sys.path.remove(str(NIGHTLY.parent))
    platform_state = state / "platform"
    (platform_state / "prefect").mkdir(parents=True)
    env = runner.child_env("http://127.0.0.1:9", platform_state, up=False)
    env["LLMOPS_HOME"] = str(state)
    done = subprocess.run(
        [sys.executable, "-c", EARLIER], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout.split()[-1]


@dataclass
class Platform:
    url: str
    earlier_run: str  # a run made before the UI started, as `make nightly` makes one


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The UI's URL while the platform script runs; afterwards, it must stop on Ctrl-C."""
    tmp = tmp_path_factory.mktemp("platform")
    earlier = run_before_the_ui(tmp / "state")
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
        yield Platform(line.split()[3], earlier)
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


@contextmanager
def browser_page(tmp_path: Path) -> Iterator[tuple[object, object]]:
    """A Chromium page at 1400 x 1000 and this test's `expect`; a screenshot if it fails."""
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
            yield page, expect
        except Exception:
            page.screenshot(path=tmp_path / "failure.png")  # kept by pytest's tmp_path
            raise
        finally:
            browser.close()


def test_a_stage_runs_from_its_form_in_the_ui(platform: Platform, tmp_path: Path) -> None:
    with browser_page(tmp_path) as (page, expect):
        run_id = start_custom_run(page, platform.url, expect)
        check_run_page(page, expect)
        page.screenshot(path=tmp_path / "artifact.png")
    run = flow_run(platform.url, run_id)
    assert run["state_type"] == "COMPLETED"
    assert run["parameters"]["params"]["demo_topics"] == [TOPIC]


def test_runs_made_before_the_ui_are_shown_with_their_reports(
    platform: Platform, tmp_path: Path
) -> None:
    """`make nightly` without `make ui` records into the platform's database: the UI started
    later shows the run and its report."""
    with browser_page(tmp_path) as (page, expect):
        page.goto(f"{platform.url}/runs/flow-run/{platform.earlier_run}")
        expect(page.locator(".state-badge").first).to_have_text("Completed")
        page.locator("li.p-tab", has_text="Artifacts").click()
        page.get_by_text("ingest-report").click()
        expect(page.get_by_text("read = accepted + quarantined")).to_be_visible()


# The nightly's form: its decisions and one JSON field for the stages' parameters. Bounds with
# room: 7 fields today; and it must fit in two screens at 1000 px (it was about eleven).
MAX_FIELDS, MAX_SCREENS = 10, 2


def test_the_nightly_form_fits_a_screen_or_two(platform: Platform, tmp_path: Path) -> None:
    with browser_page(tmp_path) as (page, expect):
        deployment = deployment_id(platform.url, "nightly_pipeline")
        page.goto(f"{platform.url}/deployments/deployment/{deployment}")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run").click()
        expect(page.get_by_text("Documents folder")).to_be_visible()
        expect(page.get_by_text("Advanced: stage parameters (JSON)")).to_be_visible()
        properties = page.locator(".schema-form-property")
        fields = properties.count()
        # the form scrolls inside the page: measure it from its first field to its last
        first, last = properties.first.bounding_box(), properties.last.bounding_box()
        height = last["y"] + last["height"] - first["y"]
        page.screenshot(path=tmp_path / "nightly-form.png")
    assert 0 < fields <= MAX_FIELDS, fields
    assert height <= MAX_SCREENS * 1000, height


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
