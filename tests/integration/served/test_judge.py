"""The optional LLM judge (faithfulness, relevance) through an OpenAI-compatible endpoint, with
its prompt versioned in MLflow's prompt registry.

The platform's own served endpoint (a tiny randomly initialised model, a few training steps)
is the only real chat model here, so the judge code path is run against it: its grades MEAN
NOTHING, they are random text read strictly (and mostly found unreadable, so missing with the
reason). That test only shows the path works end to end: the prompt from the registry, the
call, the reading of the reply, the record in MLflow. A small local HTTP server stands in for a
judge that answers in the expected format, for one that is slow, and for one that is down;
whatever the judge does, the code scorers give the same values.
"""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pydoc_data.topics import topics

import mlflow
import pytest
from pydantic import SecretStr

from tasks.clients import Clients
from tasks.core.judging import JUDGE_METRICS, JUDGE_PROMPT
from tasks.core.scorers import REFUSAL, Answer
from tasks.evaluate.evaluation import record_evaluation
from tasks.evaluate.judge import judge_for
from tasks.evaluate.params import EvaluateParams, EvaluateReport
from tasks.evaluate.record import score_answers
from tasks.evaluate.sets import EvalSet, store_set
from tasks.evaluate.tasks import answer_task, record_task
from tasks.shared.settings import Settings

from worlds import KEY, MODEL, Service, World, free_port

pytestmark = pytest.mark.integration

CODE_METRICS = ("token_f1", "groundedness", "refusal_correct", "recall_at_k", "latency_ms")


@dataclass
class Stub:
    url: str
    seen: list[dict] = field(default_factory=list)


@contextmanager
def stub_endpoint(reply: str, delay_s: float = 0.0) -> Iterator[Stub]:
    """A chat-completions endpoint that waits `delay_s`, then says `reply` to every request."""
    stub = Stub("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            stub.seen.append(
                {"path": self.path, "body": body, "auth": self.headers.get("authorization")}
            )
            time.sleep(delay_s)
            message = {"role": "assistant", "content": reply}
            out = json.dumps({"choices": [{"index": 0, "message": message}]}).encode()
            try:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except OSError:  # the client gave up waiting
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads, server.block_on_close = True, False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stub.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


def small_set(settings: Settings) -> tuple[EvalSet, list[Answer]]:
    """Four questions (one unanswerable) and hand-written answers from pydoc passages; the
    last answer failed (an endpoint error), so it has nothing to judge."""
    passages = {d: " ".join(topics[d].split())[:300] for d in ("try", "with", "for", "while")}
    rows = [
        ("q-try", "What does the try statement specify?", "exception handlers", ["try"], True),
        ("q-with", "What does the with statement wrap?", "a block", ["with"], True),
        ("q-none", "Who wrote the Zen of Go?", REFUSAL, [], False),
        ("q-for", "What does a for loop iterate over?", "a sequence", ["for"], True),
    ]
    eval_set = store_set(
        settings,
        "snapshot-judge",
        "golden",
        [
            {
                "question_id": qid,
                "question": question,
                "reference": reference,
                "source_doc_ids": sources,
                "source_chunk_id": None,
                "kind": "golden",
                "answerable": answerable,
                "origin": "golden",
            }
            for qid, question, reference, sources, answerable in rows
        ],
        {},
    )
    given = (("try", "while"), ("with", "for"), ("while", "for"))
    texts = (
        "The try statement specifies exception handlers [1].",
        "It wraps the execution of a block [1].",
        REFUSAL,
    )
    answers = [
        Answer(text, docs, tuple(passages[d] for d in docs), 12.5, 40, 9)
        for text, docs in zip(texts, given, strict=True)
    ]
    answers.append(Answer("", (), (), 3.0, 0, 0, error="HTTPStatusError: 503 Service Unavailable"))
    return eval_set, answers


def judged(settings: Settings, **judge: object) -> Settings:
    return settings.model_copy(update={f"judge_{k}": v for k, v in judge.items()})


def record(
    settings: Settings, eval_set: EvalSet, answers: list[Answer], judge: bool = True
) -> EvaluateReport:
    clients = Clients(settings)
    examples, k = eval_set.examples(), 2
    scores = score_answers(examples, answers, k)
    chosen = judge_for(clients, judge)
    return record_evaluation(clients, "hand", eval_set, examples, answers, scores, k, judge=chosen)


def assessments(settings: Settings, run_id: str) -> dict[str, list]:
    """The judge's assessments on the run's traces, by metric."""
    client = Clients(settings).tracking
    experiment = client.get_run(run_id).info.experiment_id
    traces = client.search_traces(locations=[experiment], run_id=run_id)
    found: dict[str, list] = {m: [] for m in JUDGE_METRICS}
    for trace in traces:
        for a in trace.info.assessments:
            if a.name in found:
                found[a.name].append(a)
    return found


def code_metrics(report: EvaluateReport) -> dict[str, tuple]:
    return {m: (report.metrics[m].mean, report.metrics[m].n) for m in CODE_METRICS}


def test_a_judge_in_the_expected_format_is_recorded_beside_the_code_scorers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the stage's own task: judge settings from the environment, the prompt
    registered on first use, a second version used once registered, and neither changing what
    the code scorers say."""
    eval_set, answers = small_set(settings)
    plain = record(settings, eval_set, answers, judge=False)
    assert plain.judge is None and not set(JUDGE_METRICS) & set(plain.metrics)

    with stub_endpoint("Sure.\nfaithfulness: 4\nrelevance: 3") as stub:
        monkeypatch.setenv("LLMOPS_JUDGE_URL", f"{stub.url}/v1/")  # base URL with /v1 or not
        monkeypatch.setenv("LLMOPS_JUDGE_MODEL", "stub-judge")
        monkeypatch.setenv("LLMOPS_JUDGE_API_KEY", "judge-key")
        params = EvaluateParams(judge=True)
        report = record_task.fn(params, eval_set.set_id, answers)

        assert report.judge is not None and report.judge.prompt == f"prompts:/{JUDGE_PROMPT}/1"
        assert report.judge.judge == f"stub-judge at {stub.url}/v1"
        three = {"mean": pytest.approx(0.8), "n": 3, "missing": 1}
        assert report.metrics["judge_faithfulness"].model_dump() == three
        assert report.metrics["judge_relevance"].mean == pytest.approx(0.6)
        assert report.judge.missing == {
            "no answer to judge: HTTPStatusError: 503 Service Unavailable": 2
        }
        assert code_metrics(report) == code_metrics(plain)
        assert "| judge_faithfulness | 0.800 (n=3) |" in report.table
        assert "never used by a gate" in report.table

        assert len(stub.seen) == 3  # the failed answer is not sent
        first = stub.seen[0]
        assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer judge-key"
        body = first["body"]
        assert body["model"] == "stub-judge" and body["temperature"] == 0
        assert body["max_tokens"] <= 32
        (message,) = body["messages"]
        assert "What does the try statement specify?" in message["content"]
        assert "[1] " + answers[0].passages[0][:40] in message["content"]
        assert "faithfulness: <0-5>" in message["content"]

        run = Clients(settings).tracking.get_run(report.mlflow_run_id)
        assert run.data.tags["judge_prompt"] == f"prompts:/{JUDGE_PROMPT}/1"
        assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == [
            {"name": JUDGE_PROMPT, "version": "1"}
        ]
        assert run.data.metrics["eval_judge_faithfulness"] == pytest.approx(0.8)
        assert run.data.metrics["eval_token_f1"] == pytest.approx(plain.metrics["token_f1"].mean)
        found = assessments(settings, report.mlflow_run_id)
        values = sorted(a.value for a in found["judge_faithfulness"] if a.value is not None)
        assert values == pytest.approx([0.8] * 3)
        errors = [a.error.error_message for a in found["judge_relevance"] if a.error]
        assert errors == ["no answer to judge: HTTPStatusError: 503 Service Unavailable"]
        rationale = next(a.rationale for a in found["judge_relevance"] if a.value is not None)
        assert "relevance: 3" in rationale

        # A person registers a better prompt: the next judged evaluation uses and records it.
        mlflow.genai.register_prompt(
            JUDGE_PROMPT,
            "Q {{ question }}\nA {{ answer }}\nP {{ passages }}\nfaithfulness: <0-5>\n"
            "relevance: <0-5>",
        )
        again = record_task.fn(params, eval_set.set_id, answers)
        assert again.judge.prompt == f"prompts:/{JUDGE_PROMPT}/2"
        assert stub.seen[-1]["body"]["messages"][0]["content"].startswith(
            "Q Who wrote the Zen of Go?\nA The passages"
        )
        run = Clients(settings).tracking.get_run(again.mlflow_run_id)
        assert run.data.tags["judge_prompt_version"] == "2"


def test_asked_for_without_a_judge_the_evaluation_is_refused_before_answering(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    eval_set, _ = small_set(settings)
    monkeypatch.delenv("LLMOPS_JUDGE_URL", raising=False)
    with stub_endpoint("unused") as target:
        params = EvaluateParams(judge=True, endpoint=target.url)
        with pytest.raises(ValueError, match="LLMOPS_JUDGE_URL"):
            answer_task.fn(params, eval_set.set_id)
        assert target.seen == []  # not one question was asked
    assert Clients(settings).judge is None


def test_a_prompt_version_the_judge_cannot_fill_is_refused(settings: Settings) -> None:
    import mlflow.genai

    Clients(settings).tracking  # noqa: B018  (points MLflow at this test's store)
    mlflow.genai.register_prompt(JUDGE_PROMPT, "{{question}} {{context}}")
    clients = Clients(judged(settings, url="http://127.0.0.1:1"))
    with pytest.raises(ValueError, match=r"prompts:/llmops-judge/1: .*\['context'\]"):
        judge_for(clients, True)


def test_a_judge_that_is_down_or_slow_leaves_its_metrics_missing_with_the_reason(
    settings: Settings,
) -> None:
    """The code scorers still give their values; a dead judge is given up on after three
    failed calls in a row, so it costs three timeouts, not one per question."""
    eval_set, answers = small_set(settings)
    answers = [*answers[:3], answers[0], answers[3]]  # four answers to judge
    eval_set_rows = eval_set.frame.iloc[[0, 1, 2, 0, 3]].copy()
    eval_set_rows["question_id"] = ["q1", "q2", "q3", "q4", "q5"]
    eval_set = store_set(settings, "snapshot-judge", "golden", eval_set_rows.to_dict("records"), {})
    plain = record(settings, eval_set, answers, judge=False)

    port = free_port()  # nothing listens there
    down = record(judged(settings, url=f"http://127.0.0.1:{port}"), eval_set, answers)
    assert code_metrics(down) == code_metrics(plain)
    for metric in JUDGE_METRICS:
        assert down.metrics[metric].model_dump() == {"mean": None, "n": 0, "missing": 5}
    reasons = down.judge.missing
    unreachable = [
        r for r in reasons if r.startswith(f"judge unreachable (http://127.0.0.1:{port}")
    ]
    assert len(unreachable) == 1 and reasons[unreachable[0]] == 6  # 3 calls x 2 metrics
    given_up = [r for r in reasons if r.startswith("judge not asked: its last 3 calls failed")]
    assert len(given_up) == 1 and reasons[given_up[0]] == 2
    found = assessments(settings, down.mlflow_run_id)
    assert all(a.value is None and a.error for a in found["judge_faithfulness"])
    assert len(found["judge_faithfulness"]) == 5

    with stub_endpoint("faithfulness: 5\nrelevance: 5", delay_s=3) as slow:
        started = time.perf_counter()
        late = record(judged(settings, url=slow.url, timeout_s=0.5), eval_set, answers)
        took = time.perf_counter() - started
    assert len(slow.seen) == 3 and took < 30
    assert code_metrics(late) == code_metrics(plain)
    assert late.metrics["judge_relevance"].n == 0
    assert late.judge.missing[f"judge timed out after 0.5 s ({slow.url}/v1)"] == 6
    found = assessments(settings, late.mlflow_run_id)
    messages = {a.error.error_message for a in found["judge_relevance"]}
    assert f"judge timed out after 0.5 s ({slow.url}/v1)" in messages


def test_the_judge_path_against_the_platforms_own_served_endpoint(
    service: Service, served_world: World
) -> None:
    """THE GRADES HERE MEAN NOTHING: the judge is the platform's tiny randomly initialised
    model, whose replies are near-random text. This only shows the code path works against a
    real OpenAI-compatible server: each judged value is a number in [0, 1] or missing with a
    reason, and the prompt version asked with is recorded in MLflow. The registry's first
    version (the template in code) may not fit the tiny model's 200-token prompt limit (then
    HTTP 400, missing with that reason); a short second version does."""
    settings = judged(
        served_world.settings,
        url=service.url,
        model=MODEL,
        api_key=SecretStr(KEY),
        timeout_s=60,
    )
    eval_set, answers = small_set(settings)
    plain = record(settings, eval_set, answers, judge=False)
    for version, template in (
        (1, None),
        (2, "Grade.\nQ: {{question}}\nA: {{answer}}\nfaithfulness: <0-5>\nrelevance: <0-5>"),
    ):
        if template is not None:
            mlflow.genai.register_prompt(JUDGE_PROMPT, template)
        report = record(settings, eval_set, answers)
        print(f"\nprompt v{version}: {report.judge.model_dump()}")
        assert report.judge.prompt == f"prompts:/{JUDGE_PROMPT}/{version}"
        assert report.judge.judge == f"{MODEL} at {service.url}/v1"
        assert code_metrics(report) == code_metrics(plain)
        found = assessments(settings, report.mlflow_run_id)
        for metric in JUDGE_METRICS:
            assert len(found[metric]) == 4
            for a in found[metric]:
                assert (a.value is not None and 0 <= a.value <= 1) or a.error.error_message
            summary = report.metrics[metric]
            assert summary.n + summary.missing == 4 and summary.missing >= 1
        assert sum(report.judge.missing.values()) == sum(
            report.metrics[m].missing for m in JUDGE_METRICS
        )
        run = Clients(settings).tracking.get_run(report.mlflow_run_id)
        assert run.data.tags["judge_prompt_version"] == str(version)
        assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == [
            {"name": JUDGE_PROMPT, "version": str(version)}
        ]
