"""The canary rollout: raise the challenger's share step by step on the running Serve app, judge
each step on what the request log says each version did, then promote or roll back.

Stats come from the request log, WAL included: the router fsyncs a request's record into its
write-ahead log before the response leaves (`Gateway.finish` runs before the reply), while
parquet only appears every 256 records or `log_flush_s` (30 s by default), far too late to
judge a step. Live traffic and replayed requests are counted alike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import httpx
import numpy as np
import pandas as pd

from tasks.canary.answers import answer_pinned, live_groundedness, pinned_verdict
from tasks.canary.params import CanaryOutcome, CanaryParams, StepResult
from tasks.canary.rails import rail_counts, rail_figures
from tasks.clients import Clients
from tasks.clients.request_log import read_acknowledged
from tasks.core.canary import CanaryThresholds, VersionStats, canary_weights, decide_step
from tasks.core.paired import Verdict
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.core.scorers import Example, summarize


def canary_versions(clients: Clients, name: str) -> dict[str, str]:
    aliases = clients.registry.aliases(name)
    if not aliases.get(CHAMPION):
        raise ValueError(f"{name} has no champion: promote a version first (promote_model)")
    if not aliases.get(CHALLENGER) or aliases[CHALLENGER] == aliases[CHAMPION]:
        raise ValueError(f"{name} has no challenger to roll out: register one (promote_model)")
    return {"champion": aliases[CHAMPION], "challenger": aliases[CHALLENGER]}


def ensure_serving(clients: Clients, params: CanaryParams, versions: dict[str, str]) -> bool:
    """Serve both versions, the challenger at weight 0; True if anything was loaded. A running
    app gets the missing version loaded beside the others (nothing is redeployed: the champion
    keeps answering, warm); otherwise the app is deployed, following the registry."""
    serve = clients.serve
    served = serve.served_versions(params.router_url)
    wanted = [versions["challenger"], versions["champion"]]
    if set(wanted) <= set(served):
        return False
    clients.ray()
    if served and not serve.runs_here(params.app_name):  # the port is another Ray's
        raise RuntimeError(
            f"a serving app answers at {params.router_url} but runs on another Ray than this "
            "run's: set LLMOPS_RAY_ADDRESS to that cluster (`auto` for the one `make serve` "
            "started on this machine), or give router_url a free port"
        )
    if served:
        serve.add_versions([v for v in wanted if v not in served], params.app_name)
        return True
    serve.start(params.router_url)
    weights = {versions["challenger"]: 0.0, versions["champion"]: 100.0}
    follow_s = clients.settings.serving_follow_s
    serve.deploy(
        params.model_name, weights, params.app_name, follow_s=follow_s, **params.deploy_options()
    )
    return True


def held_out_for(clients: Clients, name: str, version: str) -> tuple[list[str], int]:
    """The held-out texts of the version's training run, and its sequence length."""
    from tasks.shared.models import held_out_texts

    registry = clients.registry
    tags = registry.version_tags(name, version)
    if not {"training_run", "data_snapshot"} <= set(tags):
        raise ValueError(
            f"{name} v{version} lacks the training_run/data_snapshot tags: "
            "no held-out texts to measure quality and replay on"
        )
    run = registry.client.get_run(tags["training_run"]).data.params
    texts = held_out_texts(clients.settings, tags["data_snapshot"], float(run["eval_fraction"]))
    return texts, int(run["seq_len"])


def quality_scores(clients: Clients, name: str, versions: dict[str, str]) -> dict[str, float]:
    """Bits per byte (lower is better) of both versions on the challenger's held-out texts:
    the same texts for both, the verified files loaded here, once before the steps."""
    from tasks.shared.models import bits_per_byte, load_model_folder

    texts, seq_len = held_out_for(clients, name, versions["challenger"])
    scores = {}
    for role, version in versions.items():
        folder = clients.registry.download_verified(name, version)
        model, tokenizer = load_model_folder(folder, clients.settings.allow_pickle)
        scores[role] = bits_per_byte(model, tokenizer, texts, seq_len)
    return scores


def replay_prompts(clients: Clients, name: str, version: str, count: int = 64) -> list[str]:
    texts, _ = held_out_for(clients, name, version)
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
    return [line[:120] for line in lines[:count]] or ["The with statement"]


def replay(
    clients: Clients, params: CanaryParams, versions: dict[str, str], prompts: list[str], n: int
) -> int:
    """Send the same n prompts to each version, pinned; the requests sent."""
    sent = 0
    with clients.serve.http(params.router_url) as client:
        for i in range(n):
            for version in versions.values():
                body = {
                    "model": params.model_name,
                    "prompt": prompts[i % len(prompts)],
                    "max_tokens": params.replay_max_tokens,
                }
                with contextlib.suppress(httpx.HTTPError):  # the router's log says what came
                    client.post("/v1/completions", json=body, headers={"x-llmops-version": version})
                sent += 1
    return sent


def step_stats(
    frame: pd.DataFrame, versions: dict[str, str], quality: dict[str, float] | None
) -> dict[str, VersionStats]:
    out = {}
    for role, version in versions.items():
        rows = frame[frame["version"] == version]
        latency = rows["latency_ms"].to_numpy(dtype=float)
        p95 = float(np.percentile(latency, 95)) if len(latency) else float("nan")
        errors = int((rows["status"] >= 500).sum())
        out[role] = VersionStats(
            len(rows), errors, p95, (quality or {}).get(role), rail_counts(rows)
        )
    return out


def run_step(
    clients: Clients,
    params: CanaryParams,
    versions: dict[str, str],
    percent: float,
    last: bool,
    quality: dict[str, float] | None,
    prompts: list[str],
    pinned: Sequence[Example] = (),
    shadow: float = 0.0,
) -> StepResult:
    """Set the split (or, for a shadow step, mirror `shadow` % of live requests to the
    challenger while the champion answers every user); both versions answer a round of the
    pinned questions; gather stats since, replaying if short, until a verdict or max_wait_s. An
    inconclusive verdict on the answers adds a round of pinned questions (up to
    max_extensions), then ends the step as it is."""
    roles = canary_weights(0.0 if shadow else percent)
    split = {versions[r]: roles[r] for r in ("challenger", "champion")}
    clients.serve.set_weights(split, params.app_name)
    with mirrored(clients, params.app_name, versions["challenger"], shadow):
        started, since, replayed = time.monotonic(), datetime.now(UTC), 0
        t = CanaryThresholds(**params.thresholds.model_dump())
        rounds = PinnedRounds(clients, params, versions, pinned)
        answers = rounds.ask()
        while True:
            settings = clients.settings
            frame = read_acknowledged(settings.requests_dir, since, settings.requests_location)
            stats = step_stats(frame, versions, quality)
            verdict = decide_step(stats["champion"], stats["challenger"], t, last, answers)
            waited = time.monotonic() - started
            if verdict.action == "extend" and rounds.extensions < params.max_extensions:
                more = rounds.ask()
                if more is not None:  # None: no question left, the step ends as it is
                    answers = more
                    continue
            if verdict.action != "wait" or waited > params.max_wait_s:
                break
            if params.replay:
                short = max(t.min_requests - s.requests for s in stats.values())
                replayed += replay(clients, params, versions, prompts, short)
            else:
                time.sleep(min(2.0, params.max_wait_s))
        live = live_groundedness(frame, versions, {e.question for e in pinned})
        figures = {
            role: {
                "requests": s.requests,
                "errors": s.errors,
                "p95_ms": s.p95_ms,
                "quality_bpb": s.quality,
                "pinned_token_f1": rounds.mean(role, params.contract.primary),
                "live_groundedness": live[role],
                **rail_figures(s.rails),
            }
            for role, s in stats.items()
        }
        return StepResult(
            percent=percent,
            shadow=shadow,
            action=verdict.action,
            reasons=list(verdict.reasons) + rounds.reasons,
            stats=figures,
            replayed=replayed,
            seconds=round(waited, 2),
            pinned=rounds.asked,
            extensions=rounds.extensions,
        )


class PinnedRounds:
    """The step's pinned questions, asked a round at a time; the verdict over all asked."""

    def __init__(
        self,
        clients: Clients,
        params: CanaryParams,
        versions: dict[str, str],
        pinned: Sequence[Example],
    ) -> None:
        self.clients, self.params, self.versions = clients, params, versions
        self.pinned = list(pinned) if params.answer_check else []
        self.scores: dict[str, list] = {"champion": [], "challenger": []}
        self.asked, self.rounds, self.reasons = 0, 0, []

    @property
    def extensions(self) -> int:
        return max(0, self.rounds - 1)

    def ask(self) -> Verdict | None:
        """Ask the next round; the verdict over every round so far (None: nothing to ask)."""
        batch = self.pinned[self.asked : self.asked + self.params.pinned_questions]
        if not batch:
            return None
        for role, rows in answer_pinned(self.clients, self.params, self.versions, batch).items():
            self.scores[role] += rows
        self.asked += len(batch)
        self.rounds += 1
        verdict, self.reasons = pinned_verdict(self.scores, self.params)
        return verdict

    def mean(self, role: str, metric: str) -> float | None:
        found = summarize(self.scores[role]).get(metric)
        return found.mean if found else None


def conclude(
    clients: Clients,
    params: CanaryParams,
    versions: dict[str, str],
    steps: list[StepResult],
    actor: str,
) -> CanaryOutcome:
    """Promote (challenger 100 %, aliases moved; the old champion stays loaded at weight 0
    for the bake period, so a rollback is a weight change), roll back (challenger 0 %, alias
    cleared: a following app releases it), or, when a step never got enough requests, leave
    the aliases as they are with the champion taking all traffic again. Nothing is
    redeployed."""
    registry, serve, name = clients.registry, clients.serve, params.model_name
    last = steps[-1]
    why = "; ".join(last.reasons)
    figures = {
        f"{r}_{k}": float(v) for r, s in last.stats.items() for k, v in s.items() if v is not None
    }
    new, old = versions["challenger"], versions["champion"]
    if last.action == "promote":
        serve.set_weights({new: 100.0, old: 0.0}, params.app_name)
        registry.set_alias(
            name,
            CHAMPION,
            new,
            action="promote",
            actor=actor,
            metrics=figures,
            reason=f"canary passed at {last.label}: {why}",
        )
        registry.set_alias(
            name,
            CHALLENGER,
            None,
            action="clear",
            actor=actor,
            reason=f"v{new} promoted to champion by the canary",
        )
        verdict = "promoted"
    else:
        serve.set_weights({new: 0.0, old: 100.0}, params.app_name)
        if last.action == "rollback":
            registry.set_alias(
                name,
                CHALLENGER,
                None,
                action="rollback",
                actor=actor,
                metrics=figures,
                reason=f"canary failed at {last.label}: {why}",
            )
        verdict = "rolled back" if last.action == "rollback" else "inconclusive"
    aliases = registry.aliases(name)
    return CanaryOutcome(
        model_name=name,
        champion=old,
        challenger=new,
        verdict=verdict,
        steps=steps,
        champion_now=aliases.get(CHAMPION),
        challenger_now=aliases.get(CHALLENGER),
        served_now=serve.served_versions(params.router_url),
    )


@contextlib.contextmanager
def mirrored(clients: Clients, app_name: str, version: str, percent: float) -> Iterator[None]:
    """Mirror `percent` % of live requests to `version` while the block runs (none: no-op);
    stopped whatever happens in it."""
    if not percent:
        yield
        return
    clients.serve.set_shadow({version: percent}, app_name)
    try:
        yield
    finally:
        clients.serve.set_shadow({}, app_name)
