"""The Serve application on a real local Ray: two registered versions of a tiny model (one of
them int8), a real Milvus Lite index behind Feast for RAG, HTTP through Serve's proxy."""

import json
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from pydoc_data.topics import topics

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from tasks.clients.feature_store import ChunkIndex
from tasks.clients.request_log import read_requests
from tasks.clients.serve import ServeControl
from tasks.shared.generation import generate, stream
from tasks.shared.models import load_model_folder

from decoding import same_up_to_a_tie
from worlds import (
    ADMIN_KEY,
    APP,
    DOCS,
    MAX_PROMPT,
    MAX_TOKENS,
    MODEL,
    WEIGHTS,
    WINDOW,
    Service,
    World,
    complete,
    compressed,
    post,
)

pytestmark = pytest.mark.integration


def test_cached_batched_decoding_matches_transformers_generate(served_world: World) -> None:
    """No Ray: the decoding loop on both kinds of model, the int8 one included."""
    for name, steps, quantized in (("plain", 10, False), ("int8", 3, True)):
        report = compressed(served_world, f"decode-{name}", steps, quantized=quantized)
        model, tokenizer = load_model_folder(Path(report.candidates[0].folder))
        prompts = [tokenizer.encode(t) for t in ("The try statement", "x", "for i in range")]
        tie = 2e-2 if quantized else 1e-4  # int8: about 1/127 of an activation's range
        batch = generate(model, tokenizer, prompts, max_tokens=12)
        for prompt, got in zip(prompts, batch, strict=True):
            ids = torch.tensor([prompt])
            expected = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.eos_token_id,
            )[0, len(prompt) :].tolist()
            if tokenizer.eos_token_id in expected:  # ours stops before EOS, HF keeps it
                expected = expected[: expected.index(tokenizer.eos_token_id, tie)]
            assert same_up_to_a_tie(model, prompt, got, expected, tokenizer.eos_token_id, tie)
            streamed = list(stream(model, tokenizer, prompt, 12))
            assert same_up_to_a_tie(model, prompt, streamed, got, tokenizer.eos_token_id, tie)
        sampled = generate(model, tokenizer, prompts, [3, 0, 5], [1.0, 1.0, 0.0], seed=7)
        assert [len(s) <= n for s, n in zip(sampled, (3, 0, 5), strict=True)] == [True] * 3
        assert sampled == generate(model, tokenizer, prompts, [3, 0, 5], [1.0, 1.0, 0.0], seed=7)
        # A greedy row is not disturbed by sampled ones (nor by their leaving the batch).
        eos = tokenizer.eos_token_id
        assert same_up_to_a_tie(model, prompts[2], sampled[2], batch[2][:5], eos, tie)


def test_both_apis_answer_with_the_version_that_served(service: Service) -> None:
    with service.client() as c:
        assert c.get("/readyz").json()["ready"] is True
        r = post(
            c, "/v1/completions", {"model": MODEL, "prompt": "The try statement", "max_tokens": 8}
        )
        body = r.json()
        assert r.status_code == 200 and body["object"] == "text_completion"
        assert body["version"] in WEIGHTS and r.headers["x-llmops-version"] == body["version"]
        assert body["id"].startswith("cmpl-") and body["model"] == MODEL
        assert isinstance(body["choices"][0]["text"], str) and body["sources"] == []
        usage = body["usage"]
        assert 1 <= usage["completion_tokens"] <= 8 and usage["prompt_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

        chat = post(
            c,
            "/v1/chat/completions",
            {
                "model": MODEL,
                "rag": False,
                "max_tokens": 8,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What does a with statement do?"},
                ],
            },
        )
        body = chat.json()
        assert chat.status_code == 200 and body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["version"] == chat.headers["x-llmops-version"] and body["sources"] == []

        models = c.get("/v1/models").json()["data"][0]
        assert models["id"] == MODEL
        assert {v["version"]: v["weight"] for v in models["versions"]} == WEIGHTS
        assert c.get("/healthz").json() == {"status": "ok"}


def test_split_follows_the_weights_users_stick_and_headers_pin(service: Service) -> None:
    with service.client() as c:
        latencies, versions = [], Counter()
        for i in range(200):
            started = time.perf_counter()
            body = complete(c, "for x in", max_tokens=1, user=f"user-{i}")
            latencies.append(time.perf_counter() - started)
            versions[body["version"]] += 1
        p50, mean = statistics.median(latencies) * 1000, statistics.mean(latencies) * 1000
        print(f"\n200 sequential requests: p50 {p50:.0f} ms, mean {mean:.0f} ms, {dict(versions)}")
        assert abs(versions["2"] / 200 - 0.3) < 0.1

        for user in ("alice", "bob", "carol"):  # sticky by user field and by session header
            seen = {complete(c, "while", max_tokens=1, user=user)["version"] for _ in range(5)}
            r = post(
                c,
                "/v1/completions",
                {"prompt": "while", "max_tokens": 1},
                **{"x-llmops-session": user},
            )
            assert len(seen) == 1 and r.json()["version"] in seen

        for pinned in ("1", "2"):
            got = {
                post(
                    c,
                    "/v1/completions",
                    {"prompt": "if", "max_tokens": 1, "user": f"u{i}"},
                    **{"x-llmops-version": pinned},
                ).json()["version"]
                for i in range(6)
            }
            assert got == {pinned}
        r = post(c, "/v1/completions", {"prompt": "if"}, **{"x-llmops-version": "9"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "version_not_found"


def sse_events(response: httpx.Response) -> list[str]:
    text = response.read().decode()
    assert text.endswith("data: [DONE]\n\n")
    blocks = text.split("\n\n")[:-1]
    assert all(b.startswith("data: ") for b in blocks)
    return [b.removeprefix("data: ") for b in blocks]


def test_streaming_is_well_formed_and_matches_the_plain_answer(service: Service) -> None:
    request = {"prompt": "The with statement is used", "max_tokens": 16}
    with service.client() as c:
        plain = post(c, "/v1/completions", request, **{"x-llmops-version": "2"}).json()
        with c.stream(
            "POST",
            "/v1/completions",
            json={**request, "stream": True},
            headers={"x-llmops-version": "2"},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse_events(r)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(ch["object"] == "text_completion" and ch["version"] == "2" for ch in chunks)
        assert "".join(ch["choices"][0]["text"] for ch in chunks) == plain["choices"][0]["text"]
        last = chunks[-1]
        assert last["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
        assert last["usage"] == plain["usage"]

        chat = {
            "messages": [{"role": "user", "content": "Explain for loops"}],
            "rag": False,
            "stream": True,
            "max_tokens": 6,
        }
        with c.stream("POST", "/v1/chat/completions", json=chat) as r:
            chunks = [json.loads(e) for e in sse_events(r)[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_concurrent_requests_are_batched_without_changing_greedy_answers(
    service: Service,
) -> None:
    prompts = ["The try statement", "for", "A while loop runs", "with open", "x", "def f():"]

    def answer(c: httpx.Client, i: int, version: str) -> str:
        body = {"prompt": prompts[i], "max_tokens": 10 + i}  # rows of unequal lengths
        r = post(c, "/v1/completions", body, **{"x-llmops-version": version})
        return r.json()["choices"][0]["text"]

    with service.client() as c, ThreadPoolExecutor(len(prompts)) as pool:
        for version in WEIGHTS:
            alone = [answer(c, i, version) for i in range(len(prompts))]
            together = list(pool.map(lambda i, v=version: answer(c, i, v), range(len(prompts))))
            if version == "1":  # fp32: rows are independent
                assert together == alone
            else:  # dynamic int8 scales activations over the whole batch: near ties may flip
                assert all(together) and len(together) == len(alone)


def test_prompt_and_generation_limits(service: Service) -> None:
    long_prompt = " ".join(topics["try"].split()[:400])
    count = len(service.tokenizer.encode(long_prompt))
    assert count > MAX_PROMPT
    with service.client() as c:
        r = post(c, "/v1/completions", {"prompt": long_prompt})
        error = r.json()["error"]
        assert r.status_code == 400 and error["code"] == "context_length_exceeded"
        assert f"limit {MAX_PROMPT}, got {count}" in error["message"]
        body = complete(c, "The for statement", max_tokens=10_000)
        assert body["usage"]["completion_tokens"] <= MAX_TOKENS
        assert (body["choices"][0]["finish_reason"] == "length") == (
            body["usage"]["completion_tokens"] == MAX_TOKENS
        )
        assert complete(c, "ok", max_tokens=3)["usage"]["completion_tokens"] <= 3


def test_an_api_key_is_required_when_configured(service: Service) -> None:
    for key in (None, "wrong-key"):
        with service.client(key) as c:
            r = post(c, "/v1/completions", {"prompt": "hello"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"
            assert c.get("/v1/models").status_code == 401
            assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("path", "raw", "status", "code"),
    [
        ("/v1/completions", b'{"prompt": "unterminated', 400, "invalid_json"),
        ("/v1/completions", b"", 400, "invalid_json"),
        ("/v1/completions", b'["a list"]', 422, "invalid_request"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "many"}', 422, "invalid_request"),
        ("/v1/completions", b'{"prompt": "x", "temperature": -1}', 422, "invalid_request"),
        ("/v1/completions", b'{"prompt": 42}', 422, "invalid_request"),
        ("/v1/completions", b'{"prompt": ""}', 422, "invalid_request"),
        ("/v1/completions", b'{"prompt": "   "}', 422, "invalid_request"),
        ("/v1/completions", b'{"max_tokens": 3}', 422, "invalid_request"),
        ("/v1/completions", b'{"prompt": "x", "model": "gpt-4"}', 404, "model_not_found"),
        ("/v1/chat/completions", b'{"messages": []}', 422, "invalid_request"),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "assistant", "content": "hi"}]}',
            422,
            "invalid_request",
        ),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "robot", "content": "hi"}]}',
            422,
            "invalid_request",
        ),
        ("/v1/nothing-here", b"{}", 404, "not_found"),
    ],
)
def test_bad_input_gets_a_json_error_and_the_service_keeps_serving(
    service: Service, path: str, raw: bytes, status: int, code: str
) -> None:
    with service.client() as c:
        r = c.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["code"] == code and error["message"] and error["type"]
        assert complete(c, "still there?", max_tokens=1)["version"] in WEIGHTS


def test_wrong_method_is_a_json_405(service: Service) -> None:
    with service.client() as c:
        r = c.get("/v1/completions")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_rag_returns_its_sources_and_stays_within_the_window(service: Service) -> None:
    ask = {"max_tokens": MAX_TOKENS, "top_k": 8}
    with service.client() as c:
        body = complete(c, "How do I handle exceptions with try and except?", rag=True, **ask)
        sources = body["sources"]
        assert 1 <= len(sources) < 8  # the window, not top_k, decided how many fit
        assert {s["source"] for s in sources} <= {f"{d}.txt" for d in DOCS}
        assert [s["score"] for s in sources] == sorted((s["score"] for s in sources), reverse=True)
        assert all(s["doc_id"] for s in sources)
        assert all(s["text"] and s["text"] == s["text"].strip() for s in sources)  # as prompted
        assert body["usage"]["prompt_tokens"] + MAX_TOKENS <= WINDOW
        assert body["usage"]["prompt_tokens"] > MAX_PROMPT  # passages were really added

        chat = post(
            c,
            "/v1/chat/completions",
            {  # RAG is chat's default
                "messages": [{"role": "user", "content": "What does the while loop do?"}],
                **ask,
            },
        )
        assert chat.status_code == 200 and chat.json()["sources"]
        assert chat.json()["usage"]["prompt_tokens"] + MAX_TOKENS <= WINDOW


def test_the_retriever_lets_a_pipeline_stage_take_the_index_and_takes_it_back(
    service: Service,
) -> None:
    """Milvus Lite locks its file to one process: the retriever closes it after 3 idle seconds
    so that the embed stage can write while the service runs; meanwhile RAG says why it cannot
    answer with passages, chat answers without them, and passages come back afterwards."""
    question = {
        "prompt": "How do I handle exceptions with try and except?",
        "rag": True,
        "max_tokens": 4,
    }
    chat = {"messages": [{"role": "user", "content": "What does try do?"}], "max_tokens": 4}
    with service.client() as c:
        assert complete(c, **question)["sources"]
        started = time.monotonic()
        with ChunkIndex(service.settings, wait_s=15) as stage:  # what the embed stage does
            waited = time.monotonic() - started
            assert stage.count() > 8
            busy = post(c, "/v1/completions", {"model": MODEL, **question})
            assert busy.status_code == 503, busy.text
            assert "being rewritten" in busy.json()["error"]["message"]
            answered = post(c, "/v1/chat/completions", chat)
            assert answered.status_code == 200 and answered.json()["sources"] == []
        assert complete(c, **question)["sources"]
    assert waited < 10, f"the stage waited {waited:.1f} s for the retriever to let go"


def test_weights_change_in_place_without_restarts_or_failed_requests(service: Service) -> None:
    with service.client() as c:
        before = c.get("/readyz").json()["versions"]
        failures: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            with service.client() as tc:
                while not stop.is_set():
                    r = post(tc, "/v1/completions", {"prompt": "for", "max_tokens": 1})
                    if r.status_code != 200:
                        failures.append(r.status_code)

        worker = threading.Thread(target=traffic)
        worker.start()
        started = time.perf_counter()
        control = ServeControl(service.settings)
        assert control.set_weights({"2": 100.0, "1": 0.0}, APP) == {"2": 100.0, "1": 0.0}
        took = time.perf_counter() - started
        got = {complete(c, "x", max_tokens=1, user=f"late-{i}")["version"] for i in range(20)}
        assert got == {"2"}
        pinned = post(
            c, "/v1/completions", {"prompt": "x", "max_tokens": 1}, **{"x-llmops-version": "1"}
        )
        assert pinned.json()["version"] == "1"  # weight 0: still served when pinned

        with service.client(None) as anonymous:
            assert post(anonymous, "/admin/weights", {"weights": {"1": 1}}).status_code == 401
        # a caller's key answers questions but cannot change the split
        refused = post(c, "/admin/weights", {"weights": {"1": 1}})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_admin"
        with service.client(ADMIN_KEY) as admin:
            for bad in ({"7": 1.0}, {"1": -1.0}, {"1": 0.0}, {}):
                r = post(admin, "/admin/weights", {"weights": bad})
                assert r.status_code == 422 and r.json()["error"]["message"], bad
            r = post(admin, "/admin/weights", {"weights": WEIGHTS})
            assert r.status_code == 200 and r.json() == {"weights": WEIGHTS}
        stop.set()
        worker.join()
        print(f"\nweights changed in {took * 1000:.0f} ms")
        assert failures == []
        models = c.get("/v1/models").json()["data"][0]["versions"]
        assert {v["version"]: v["weight"] for v in models} == WEIGHTS
        after = c.get("/readyz").json()["versions"]
        assert {v: s["replica"] for v, s in after.items()} == {
            v: s["replica"] for v, s in before.items()
        }


def test_every_request_is_logged_and_counted_per_version(service: Service) -> None:
    with service.client() as c:
        ok = post(c, "/v1/completions", {"prompt": "logged", "max_tokens": 2, "user": "zoe"})
        refused = post(c, "/v1/completions", {"prompt": " ".join(["word"] * 600)})
        bad = c.post("/v1/completions", content=b"{", headers={"content-type": "application/json"})
    with service.client(None) as c:
        denied = post(c, "/v1/completions", {"prompt": "no key"})
    ids = [r.headers["x-llmops-request-id"] for r in (ok, refused, bad, denied)]
    folder = service.settings.home / "requests"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the router moves the WAL into parquet every 0.5 s
        rows = read_requests(folder)
        if set(ids) <= set(rows["request_id"]):
            break
        time.sleep(0.25)
    rows = read_requests(folder).set_index("request_id")
    assert set(ids) <= set(rows.index)
    row, body = rows.loc[ids[0]], ok.json()
    assert (row["status"], row["version"], row["route"]) == (
        200,
        body["version"],
        "/v1/completions",
    )
    assert (row["prompt"], row["response"], row["session"]) == (
        "logged",
        body["choices"][0]["text"],
        "zoe",
    )
    assert row["completion_tokens"] == body["usage"]["completion_tokens"] and row["latency_ms"] > 0
    assert rows.loc[ids[1], "status"] == 400 and "limit" in rows.loc[ids[1], "error"]
    assert rows.loc[ids[2], "status"] == 400
    assert (rows.loc[ids[3], "status"], rows.loc[ids[3], "version"]) == (401, "none")
    assert len(rows) > 250  # everything this module sent went to the log
    rag_rows = rows[rows["sources"] != "[]"]
    assert len(rag_rows) >= 2 and "doc_id" in rag_rows["sources"].iloc[0]

    with service.client() as c:
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(c.get("/metrics").text)
            for s in family.samples
        }
    route = ("route", "/v1/completions")
    for version in WEIGHTS:
        served = samples[
            ("llmops_requests_total", (route, ("status", "200"), ("version", version)))
        ]
        logged = rows[
            (rows["version"] == version) & (rows["route"] == route[1]) & (rows["status"] == 200)
        ]
        assert served == len(logged) > 10
        assert samples[("llmops_request_latency_seconds_count", (("version", version),))] > 10
    assert samples[("llmops_errors_total", (route, ("version", "none")))] >= 2
