"""The chat page as a person uses it, on the package's running Serve app (`worlds.serving_app`:
an API key, two versions of a tiny model, a RAG index): served without auth and holding no
secret; in headless Chromium a question is answered by streaming, with its version, sources,
time and the notice that the tiny model's answer is unusable; a thumbs down with a correction
lands in the feedback log under the answer's request id. The API says the same in
`answer_quality`.

Named to run last in the package: test_feedback_over_http expects the feedback log to hold
only its own ratings, and this test adds one."""

import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from tasks.clients.request_log import read_feedback, read_requests

from worlds import KEY, WEIGHTS, Service, post

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")  # `make chromium` installs it
QUESTION = "How do I handle exceptions with try and except?"
CORRECTION = "Put the code in a try block and handle errors in except clauses."


def test_the_api_says_when_an_answer_is_unusable(service: Service) -> None:
    with service.client(None) as anonymous:  # the page needs no key, and holds none
        for path in ("/", "/chat"):
            page = anonymous.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "v1/chat/completions" in page.text and KEY not in page.text
        asked = {"messages": [{"role": "user", "content": QUESTION}]}
        r = post(anonymous, "/v1/chat/completions", asked)
        assert r.status_code == 401  # the API still asks for it
    chat = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8}
    with service.client() as c:
        body = post(c, "/v1/chat/completions", chat).json()
        quality = body["answer_quality"]
        # The test world's models are barely trained: they answer with blanks or a loop.
        assert quality["degenerate"] is True and quality["reason"] in ("empty", "repetition")
        assert quality["detail"], body["choices"][0]["message"]["content"]
        with c.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as r:
            events = [line.removeprefix("data: ") for line in r.iter_lines() if line]
        assert events[-1] == "[DONE]"
        last = json.loads(events[-2])
        assert last["choices"][0]["finish_reason"] and last["answer_quality"]["degenerate"]
        assert all("answer_quality" not in json.loads(e) for e in events[:-2])


def logged(service: Service, request_id: str) -> tuple[pd.Series, pd.DataFrame]:
    """The request's log row and its feedback, once flushed (every 0.5 s here)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        requests = read_requests(service.settings.requests_dir, request_ids=[request_id])
        feedback = read_feedback(service.settings.feedback_dir)
        feedback = feedback[feedback["request_id"] == request_id]
        if len(requests) and len(feedback):
            return requests.iloc[0], feedback
        time.sleep(0.25)
    raise AssertionError(f"request {request_id} or its feedback not flushed within 15 s")


def test_a_person_asks_sees_the_evidence_and_rates(service: Service, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: run `make chromium` (or set LLMOPS_CHROMIUM)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright is missing: it is in the dev extras (`make setup`)")
    expect = sync_api.Expect()
    expect.set_options(timeout=30_000)  # a loaded 2-core machine
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(f"{service.url}/chat")
            page.get_by_label("API key").fill(KEY)
            page.get_by_label("Question").fill(QUESTION)
            page.get_by_role("button", name="Ask").click()
            turn = page.locator("article.turn").last
            expect(turn).to_have_class(re.compile(r"\bdone\b"))  # the stream's [DONE] came
            shown = {
                name: turn.locator(f".{name}").inner_text()
                for name in ("question", "version", "elapsed", "request-id", "notice")
            }
            assert shown["question"] == QUESTION
            version = shown["version"].removeprefix("version ")
            assert version in WEIGHTS, shown
            took = r"took \d+\.\d\d s( \(first words after \d+\.\d\d s\))?"
            assert re.fullmatch(took, shown["elapsed"]), shown
            assert shown["notice"].startswith("The model gave no usable answer")
            assert "Here are the passages it was given." in shown["notice"]
            passages = turn.locator(".source .passage").all_inner_texts()
            doc_ids = turn.locator(".source .doc-id").all_inner_texts()
            assert passages and all(text.strip() for text in passages)
            request_id = shown["request-id"].removeprefix("request ")

            turn.get_by_label("Correction").fill(CORRECTION)
            turn.get_by_role("button", name="Bad answer").click()
            expect(turn.locator(".feedback .status")).to_have_text(re.compile(r"Rating stored"))
            page.screenshot(path=tmp_path / "chat.png", full_page=True)
        except Exception:
            page.screenshot(path=tmp_path / "failure.png", full_page=True)  # kept by tmp_path
            raise
        finally:
            browser.close()
    assert not errors, errors

    # What the page showed is what was served and logged; the rating is stored under its id.
    row, feedback = logged(service, request_id)
    assert (row["version"], row["prompt"]) == (version, QUESTION)
    sources = json.loads(row["sources"])
    assert [s["text"] for s in sources] == passages and [s["doc_id"] for s in sources] == doc_ids
    assert feedback[["rating", "correction"]].values.tolist() == [[-1, CORRECTION]]
