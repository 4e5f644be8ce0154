"""The canary_rollout flow end to end on a real local Ray Serve app that follows the registry: a
better challenger is promoted (the old champion stays loaded at weight 0 while it bakes), a worse
one is rolled back at a shadow step without ever answering a user (and is released), then
`rollback_model` puts the old champion back by a weight change alone, and a client sending
requests through the router the whole time sees no failed request."""

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, field, replace

import httpx
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from flows.canary import canary_rollout
from tasks.canary.params import CanaryParams, ThresholdParams
from tasks.clients import Clients
from tasks.clients.registry import model_registry
from tasks.clients.request_log import read_acknowledged
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.core.routing import SHADOW
from tasks.promote.params import Candidate
from tasks.promote.registration import register_candidate

from worlds import World, compressed, free_port, tiny_world

pytestmark = pytest.mark.e2e

MODEL, KEY, APP = "assistant", "canary-key", "canary-test"


@dataclass
class Service:
    url: str
    world: World


@dataclass
class Load:
    """Unpinned requests through the router, one after another, until stopped."""

    url: str
    statuses: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    answered: list[tuple[float, str]] = field(default_factory=list)  # (sent at, version)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                body = {
                    "model": MODEL,
                    "prompt": "The for statement",
                    "max_tokens": 2,
                    "user": f"load-{i}",
                }
                try:
                    sent = time.monotonic()
                    r = client.post("/v1/completions", json=body)
                    self.statuses[r.status_code] += 1
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code}: {r.text[:200]}")
                    else:
                        self.versions[r.json()["version"]] += 1
                        self.answered.append((sent, r.json()["version"]))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.02)


def register(world: World, name: str, steps: int) -> str:
    report = compressed(world, name, steps)
    return register_candidate(
        Candidate.from_report(report), MODEL, Clients(world.settings), "test"
    ).version


@pytest.fixture(scope="module")
def service(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from ray import serve

    from serving.app import deploy

    with tiny_world(tmp_path_factory.mktemp("canary")) as built, pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMOPS_SERVING_API_KEY", KEY)
        config = deepcopy(built.config)
        config.max_position_embeddings = 256
        settings = built.settings.model_copy(update={"serving_api_key": SecretStr(KEY)})
        world = replace(built, config=config, settings=settings)  # the flow's get_settings too
        registry = model_registry(settings)
        first = register(world, "v1", 3)  # the champion: few training steps
        registry.set_alias(MODEL, CHAMPION, first, action="promote", reason="test", actor="test")
        registry.set_alias(MODEL, CHALLENGER, None, action="clear", reason="test", actor="test")
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deploy(
            settings,
            MODEL,
            {first: 100.0},
            name=APP,
            model_cpus=0.5,
            log_flush_s=1.0,
            follow_s=0.5,
            bake_s=600,
        )
        try:
            yield Service(f"http://127.0.0.1:{port}", world)
        finally:
            serve.shutdown()


@pytest.fixture(scope="module")
def load(service: Service) -> Iterator[Load]:
    """One load generator across both rollouts (the promote, then the rollback)."""
    generator = Load(service.url)
    thread = threading.Thread(target=generator.run, daemon=True)
    thread.start()
    yield generator
    generator.stop.set()
    thread.join(timeout=60)


def params(service: Service, **thresholds) -> CanaryParams:
    return CanaryParams(
        model_name=MODEL,
        steps=[5, 25, 50, 100],
        app_name=APP,
        router_url=service.url,
        thresholds=ThresholdParams(min_requests=8, **thresholds),
        max_wait_s=60,
        model_cpus=0.5,
        replay_max_tokens=4,
        # The rollout's mechanics, judged on errors, latency and bits per byte: these tiny
        # models answer nothing, so paired answers would only ever be inconclusive (that path
        # is tests/integration/served/test_evaluate.py's).
        answer_check=False,
    )


def models(service: Service) -> dict:
    headers = {"authorization": f"Bearer {KEY}"}
    return httpx.get(f"{service.url}/v1/models", headers=headers, timeout=30).json()["data"][0]


def served(service: Service) -> dict[str, float]:
    return {v["version"]: v["weight"] for v in models(service)["versions"]}


def served_soon(service: Service, expected: dict[str, float], within_s: float = 15) -> float:
    """Seconds until the app serves `expected` (the follower reads the aliases every 0.5 s)."""
    started = time.monotonic()
    while (now := served(service)) != expected:
        assert time.monotonic() - started < within_s, now
        time.sleep(0.1)
    return time.monotonic() - started


def replicas(service: Service) -> dict[str, tuple[str, int]]:
    """Each loaded version's replica and process: a load would change them."""
    body = httpx.get(f"{service.url}/readyz", timeout=30).json()
    return {v: (r["replica"], r["pid"]) for v, r in body["versions"].items()}


async def canary_artifact() -> str:
    async with get_client() as client:
        artifacts = await client.read_latest_artifacts()
    return next(a.data for a in artifacts if a.key == "canary-report")


def test_a_better_challenger_is_promoted_and_served_alone(
    prefect_harness, service: Service, load: Load
) -> None:
    registry = model_registry(service.world.settings)
    old = registry.aliases(MODEL)[CHAMPION]
    new = register(service.world, "v2", 12)  # more training: fewer bits per byte
    assert registry.aliases(MODEL)[CHALLENGER] == new
    started = time.perf_counter()
    # p95 is noisy on a shared 2-core machine: this path is about quality and the moves.
    outcome = canary_rollout(params(service, max_p95_ratio=20.0))
    print(
        f"\npromote rollout: {time.perf_counter() - started:.1f} s, "
        f"{[(s.percent, s.action, s.replayed) for s in outcome.steps]}"
    )

    assert outcome.verdict == "promoted", outcome.steps[-1].reasons
    assert [s.action for s in outcome.steps] == ["advance", "advance", "promote"]
    last = outcome.steps[-1].stats
    assert last["challenger"]["quality_bpb"] < last["champion"]["quality_bpb"]
    assert all(s.stats[r]["requests"] >= 8 for s in outcome.steps for r in last)
    assert registry.aliases(MODEL) == {CHAMPION: new}
    history = [(c.alias, c.action, c.version) for c in registry.history(MODEL)]
    assert history[-2:] == [(CHAMPION, "promote", new), (CHALLENGER, "clear", "none")]
    promoted = registry.history(MODEL)[-2]
    assert "canary passed at 50%" in promoted.reason
    assert promoted.metrics["challenger_quality_bpb"] < promoted.metrics["champion_quality_bpb"]
    # the old champion stays warm at weight 0 while it bakes: a rollback is a weight change
    assert served(service) == {new: 100.0, old: 0.0} and set(outcome.served_now) == {new, old}
    served_soon(service, {new: 100.0, old: 0.0})
    assert models(service)["following"]["baking"] == old
    assert old != new
    report = asyncio.run(canary_artifact())
    assert "promoted" in report and "| 50% | challenger |" in report
    assert not load.failures, load.failures[:5]


def test_a_worse_challenger_is_rolled_back_in_the_shadow_and_never_reaches_a_user(
    prefect_harness, service: Service, load: Load
) -> None:
    registry = model_registry(service.world.settings)
    champion = registry.aliases(MODEL)[CHAMPION]
    worse = register(service.world, "v3", 1)  # barely trained: far more bits per byte
    assert registry.aliases(MODEL) == {CHAMPION: champion, CHALLENGER: worse}
    before, answered = sum(load.statuses.values()), len(load.answered)
    started = time.perf_counter()
    since = pd.Timestamp.now(tz="UTC")
    # quality alone fails it, at the shadow step: half of the live requests mirrored to it
    outcome = canary_rollout(
        params(service, max_p95_ratio=20.0).model_copy(update={"shadow_percent": 50.0})
    )
    print(
        f"\nrollback rollout: {time.perf_counter() - started:.1f} s, "
        f"{[(s.label, s.action, s.replayed) for s in outcome.steps]}"
    )

    assert outcome.verdict == "rolled back"
    assert [(s.label, s.action) for s in outcome.steps] == [("shadow 50%", "rollback")]
    assert any(r.startswith("quality exceeds") for r in outcome.steps[0].reasons)
    assert registry.aliases(MODEL) == {CHAMPION: champion}
    change = registry.history(MODEL)[-1]
    assert (change.alias, change.action, change.previous) == (CHALLENGER, "rollback", worse)
    assert "canary failed at shadow 50%" in change.reason and "quality exceeds" in change.reason
    # loaded beside the others for the canary, then released once no alias names it
    baking = models(service)["following"]["baking"]
    served_soon(service, {champion: 100.0, baking: 0.0})
    assert models(service)["shadow"] == {}  # the mirror is off again

    # no user got an answer from it, while it did answer the mirrored copies
    assert worse not in {version for _, version in load.answered[answered:]}
    log = read_acknowledged(service.world.settings.requests_dir, since.to_pydatetime())
    mirrored = log[log["route"].str.startswith(SHADOW)]
    assert len(mirrored) > 0 and set(mirrored["version"]) == {worse}
    # zero downtime over both rollouts: every load and weight change included
    time.sleep(1.0)
    assert sum(load.statuses.values()) - before > 10
    assert not load.failures, load.failures[:5]
    assert set(load.statuses) == {200}
    print(f"load generator: {dict(load.statuses)} by version {dict(load.versions)}")


def test_rolling_back_during_the_bake_is_a_weight_change_under_load(
    prefect_harness, service: Service, load: Load
) -> None:
    from flows.rollback import rollback_model
    from tasks.promote.params import RollbackParams

    registry = model_registry(service.world.settings)
    current = registry.aliases(MODEL)[CHAMPION]
    previous = models(service)["following"]["baking"]
    before, answered = replicas(service), len(load.answered)
    started = time.monotonic()
    change = rollback_model(RollbackParams(model_name=MODEL, reason="test: bad answers"))
    served_soon(service, {previous: 100.0, current: 0.0})
    took = time.monotonic() - started
    print(f"\nrollback flow start to 100 % on v{previous}: {took:.1f} s (warm, no load)")

    assert (change.alias, change.version, change.action) == (CHAMPION, previous, "rollback")
    assert took <= 10
    assert replicas(service) == before  # the same replicas and processes: nothing loaded
    time.sleep(2.0)  # requests sent after the switch
    after = [version for sent, version in load.answered[answered:] if sent > started + took]
    assert after and set(after) == {previous}, Counter(after)
    assert not load.failures, load.failures[:5]
    assert models(service)["following"]["baking"] == current  # the rolled-back one bakes now
