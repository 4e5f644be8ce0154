"""The serving engine behind the real app (local Ray, Serve's proxy, two versions): a full
queue answers 429 with Retry-After and the service keeps answering, a deadline ends an answer
with 504, an oversized body is refused with 413 before it is parsed, and the request log says
where each answer's time went."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving.tracing import SPAN_NAMES
from tasks.clients.request_log import read_requests

from otlp_receiver import OtlpReceiver
from worlds import MODEL, QUEUE, Service, complete, post

pytestmark = pytest.mark.integration


def test_a_full_queue_answers_429_with_retry_after_and_the_service_keeps_answering(
    service: Service,
) -> None:
    body = {"prompt": "The for statement", "max_tokens": 24}
    crowd = 8 + QUEUE + 28  # a batch of 8, QUEUE waiting, the rest beyond

    def ask(c: httpx.Client) -> httpx.Response:
        return post(c, "/v1/completions", body, **{"x-llmops-version": "1"})

    with service.client() as c, ThreadPoolExecutor(crowd) as pool:
        answers = list(pool.map(lambda _: ask(c), range(crowd)))
        statuses = sorted({r.status_code for r in answers})
        assert statuses == [200, 429], statuses
        busy = next(r for r in answers if r.status_code == 429)
        assert busy.json()["error"]["code"] == "queue_full"
        assert 1 <= int(busy.headers["retry-after"]) <= 60
        assert busy.headers["x-llmops-version"] == "1"
        assert complete(c, "The while statement", max_tokens=4)["usage"]["completion_tokens"]


def test_a_deadline_ends_an_answer_with_504_streamed_or_not(service: Service) -> None:
    body = {"prompt": "The try statement", "max_tokens": 24, "deadline_s": 0.001}
    with service.client() as c:
        r = post(c, "/v1/completions", body)
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        with c.stream("POST", "/v1/completions", json={**body, "stream": True}) as s:
            text = s.read().decode()
        assert s.status_code == 200 and text.endswith("data: [DONE]\n\n")
        last = json.loads(text.split("\n\n")[-3].removeprefix("data: "))
        assert last["error"]["code"] == "deadline_exceeded"
        # A deadline longer than the server's own is capped, not refused.
        assert complete(c, "ok", max_tokens=3, deadline_s=1e6)["usage"]["completion_tokens"]


def test_an_oversized_body_is_refused_before_it_is_parsed(service: Service) -> None:
    limit = service.settings.serving_max_body_bytes
    huge = json.dumps({"model": MODEL, "prompt": "x " * 5_000_000}).encode()  # 10 MB
    with service.client() as c:
        started = time.perf_counter()
        r = c.post("/v1/completions", content=huge, headers={"content-type": "application/json"})
        took = time.perf_counter() - started
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert f"at most {limit:,}" in r.json()["error"]["message"]
        assert took < 5  # tokenising 5 million tokens first took far longer

        def chunks():  # no content-length: counted as it streams in
            for _ in range(40):
                yield b" " * 65_536

        r = c.post("/v1/chat/completions", content=chunks())
        assert r.status_code == 413 and "at least" in r.json()["error"]["message"]
        assert complete(c, "The with statement", max_tokens=2)  # still answering


def test_the_request_log_says_where_the_time_went(service: Service) -> None:
    with service.client() as c:
        ids = [complete(c, "timed", max_tokens=8, **{"user": "t"})["id"] for _ in range(2)]
    folder = service.settings.home / "requests"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the router moves the WAL into parquet every 0.5 s
        rows = read_requests(folder)
        if set(ids) <= set(rows["request_id"]):
            break
        time.sleep(0.25)
    rows = read_requests(folder).set_index("request_id").loc[ids]
    assert (rows["queue_ms"] >= 0).all() and (rows["ttft_ms"] >= rows["queue_ms"]).all()
    assert (rows["ttft_ms"] < rows["latency_ms"]).all()
    decoded = rows[rows["completion_tokens"] >= 2]
    assert (decoded["decode_tokens_per_s"] > 0).all()


def test_each_request_is_traced_from_the_router_to_the_decoding_steps(
    service: Service, traces: OtlpReceiver
) -> None:
    chat = {"messages": [{"role": "user", "content": "What does with do?"}], "max_tokens": 6}
    with service.client() as c:
        rid = post(c, "/v1/chat/completions", chat).json()["id"]
    deadline = time.monotonic() + 20  # each process exports its batch of spans every 5 s
    while time.monotonic() < deadline:
        roots = [s for s in traces.named("request") if s.attributes["request_id"] == rid]
        names = {s.name for s in traces.spans if roots and s.trace_id == roots[0].trace_id}
        if {"log", "decode", "retrieve"} <= names:
            break
        time.sleep(0.25)
    (root,) = roots
    spans = {s.name: s for s in traces.spans if s.trace_id == root.trace_id}
    assert set(spans) == {*SPAN_NAMES}
    assert root.attributes["status"] == 200 and root.parent_span_id is None
    for name in ("authenticate", "route", "model", "log"):  # the router's
        assert spans[name].parent_span_id == root.span_id
    for name in ("retrieve", "prompt", "queue", "prefill", "decode"):  # the replica's
        assert spans[name].parent_span_id == spans["model"].span_id, name
    decode = spans["decode"].attributes
    assert decode["tokens"] >= 1 and decode["first_token_ms"] > 0
    assert spans["retrieve"].service_name == root.service_name
