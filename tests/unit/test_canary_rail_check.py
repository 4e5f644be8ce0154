"""A canary step judged on the rails over the real request log: the step's replayed requests are
written through RequestLog (its WAL, as the router writes them) with the rails' decisions, and
`run_step` reads them back as it does on the live app. Only the serving app is stood in for:
it answers each replayed request by logging it, the challenger's prompts tripping the input
rail at the rate given."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from tasks.canary.params import CanaryOutcome, CanaryParams, report_markdown
from tasks.canary.rollout import run_step
from tasks.clients.request_log import RequestLog
from tasks.core.routing import VERSION_HEADER
from tasks.shared.settings import Settings

pytestmark = pytest.mark.unit
VERSIONS = {"champion": "1", "challenger": "2"}
BLOCKED = json.dumps(
    [{"rail": "input", "action": "block", "reason": "injection:ignore_instructions"}]
)


class LoggingApp:
    """The canary's view of the serving app (`clients.serve`): weights are noted, and each
    request sent through `http()` is answered by writing its record to the request log, with
    an input-rail block on every `every`-th request of a version (0: never)."""

    def __init__(self, log: RequestLog, every: dict[str, int]) -> None:
        self.log, self.every, self.sent = log, every, dict.fromkeys(every, 0)
        self.weights: list[dict[str, float]] = []

    def set_weights(self, split: dict[str, float], app_name: str) -> None:
        self.weights.append(split)

    @contextmanager
    def http(self, url: str) -> Iterator["LoggingApp"]:
        yield self

    def post(self, route: str, json: dict, headers: dict[str, str]) -> None:
        version = headers[VERSION_HEADER]
        self.sent[version] += 1
        every = self.every[version]
        blocked = bool(every) and self.sent[version] % every == 0
        self.log.append(
            {
                "request_id": uuid.uuid4().hex,
                "at": datetime.now(UTC),
                "version": version,
                "route": route,
                "status": 200,
                "latency_ms": 12.0,
                "prompt_tokens": 3,
                "completion_tokens": 0 if blocked else 4,
                "prompt": json["prompt"],
                "response": "I can't help with that request." if blocked else "an answer",
                "rails": BLOCKED if blocked else "[]",
            }
        )


def step(settings: Settings, every: dict[str, int]):
    params = CanaryParams(answer_check=False, max_wait_s=30, thresholds={"min_requests": 30})
    with RequestLog(settings.requests_dir, flush_every=1000) as log:
        app = LoggingApp(log, every)
        clients = SimpleNamespace(settings=settings, serve=app)
        result = run_step(clients, params, VERSIONS, 25.0, False, None, ["What is a closure?"])
    assert app.weights == [{"2": 25.0, "1": 75.0}]
    return result


def test_a_challenger_tripping_the_input_rail_far_more_is_rolled_back(settings) -> None:
    result = step(settings, {"1": 0, "2": 2})  # half of the challenger's requests blocked
    assert result.action == "rollback", result.reasons
    rail = [r for r in result.reasons if r.startswith("rail trips")]
    assert rail and rail[0].startswith("rail trips worse: challenger 15/30 (50.0%) vs champion")
    assert rail[0].endswith("per rail input 15 vs 0, retrieval 0 vs 0, output 0 vs 0")
    assert all(r.startswith(("error rate within", "p95", "quality")) for r in result.reasons[:3])
    challenger = result.stats["challenger"]
    assert [challenger[f"rail_{k}"] for k in ("trips", "input", "block", "output")] == [
        15,
        15,
        15,
        0,
    ]
    assert result.stats["champion"]["rail_trips"] == 0
    outcome = CanaryOutcome(
        model_name="m",
        champion="1",
        challenger="2",
        verdict="rolled back",
        steps=[result],
        champion_now="1",
        challenger_now=None,
        served_now=["1", "2"],
    )
    page = report_markdown(outcome)
    assert "## Rail trips" in page and "| 25% | challenger | 30 | 15 (50.0%) | 15 | 0 |" in page
    assert "rail trips worse" in page  # the reason, in the artifact


def test_the_same_rail_rate_on_both_sides_lets_the_step_advance(settings) -> None:
    result = step(settings, {"1": 10, "2": 10})
    assert result.action == "advance", result.reasons
    assert any(r.startswith("rail trips inconclusive: challenger 3/30") for r in result.reasons)
