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
from datetime import UTC, datetime

import httpx
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact

from serving.request_log import read_acknowledged
from tasks.caching import RETRIES
from tasks.canary_report import CanaryOutcome, CanaryParams, StepResult, report_markdown
from tasks.clients.registry import model_registry
from tasks.clients.secrets import with_serving_key
from tasks.core.canary import CanaryThresholds, VersionStats, canary_weights, decide_step
from tasks.registry import CHALLENGER, CHAMPION, current_actor
from tasks.settings import Settings, get_settings


def canary_versions(settings: Settings, name: str) -> dict[str, str]:
    aliases = model_registry(settings).aliases(name)
    if not aliases.get(CHAMPION):
        raise ValueError(f"{name} has no champion: promote a version first (promote_model)")
    if not aliases.get(CHALLENGER) or aliases[CHALLENGER] == aliases[CHAMPION]:
        raise ValueError(f"{name} has no challenger to roll out: register one (promote_model)")
    return {"champion": aliases[CHAMPION], "challenger": aliases[CHALLENGER]}


def _client(settings: Settings, url: str) -> httpx.Client:
    key = settings.serving_api_key
    headers = {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def served_versions(settings: Settings, url: str) -> list[str]:
    """The versions the router at `url` serves ([] when nothing answers)."""
    try:
        with _client(settings, url) as client:
            models = client.get("/v1/models").raise_for_status().json()["data"][0]
    except (httpx.HTTPError, KeyError, IndexError):
        return []
    return [v["version"] for v in models["versions"]]


def ensure_serving(settings: Settings, params: CanaryParams, versions: dict[str, str]) -> bool:
    """Deploy {challenger: 0, champion: 100} unless the app already serves both; True if
    deployed. A redeploy is a rolling update: the champion keeps answering."""
    served = served_versions(settings, params.router_url)
    if {versions["champion"], versions["challenger"]} <= set(served):
        return False
    from ray import serve

    from serving.app import deploy
    from tasks.clients.ray_cluster import ensure_ray

    ensure_ray(settings)
    if served and not _app_on_this_ray(params.app_name):  # the port is another Ray's
        raise RuntimeError(
            f"a serving app answers at {params.router_url} but runs on another Ray than this "
            "run's: set LLMOPS_RAY_ADDRESS to that cluster (`auto` for the one `make serve` "
            "started on this machine), or give router_url a free port"
        )
    url = httpx.URL(params.router_url)
    serve.start(http_options={"host": url.host, "port": url.port or 80})
    weights = {versions["challenger"]: 0.0, versions["champion"]: 100.0}
    deploy(settings, params.model_name, weights, name=params.app_name, **params.deploy_options())
    return True


def _app_on_this_ray(name: str) -> bool:
    from ray import serve

    try:
        return name in serve.status().applications
    except Exception:  # no Serve controller on this Ray
        return False


def held_out_for(settings: Settings, name: str, version: str) -> tuple[list[str], int]:
    """The held-out texts of the version's training run, and its sequence length."""
    from tasks.evaluate import held_out_texts

    registry = model_registry(settings)
    tags = registry.version_tags(name, version)
    if not {"training_run", "data_snapshot"} <= set(tags):
        raise ValueError(f"{name} v{version} lacks the training_run/data_snapshot tags: "
                         "no held-out texts to measure quality and replay on")  # fmt: skip
    run = registry.client.get_run(tags["training_run"]).data.params
    texts = held_out_texts(settings, tags["data_snapshot"], float(run["eval_fraction"]))
    return texts, int(run["seq_len"])


def quality_scores(settings: Settings, name: str, versions: dict[str, str]) -> dict[str, float]:
    """Bits per byte (lower is better) of both versions on the challenger's held-out texts:
    the same texts for both, the verified files loaded here, once before the steps."""
    from tasks.evaluate import bits_per_byte, load_model_folder

    texts, seq_len = held_out_for(settings, name, versions["challenger"])
    registry, scores = model_registry(settings), {}
    for role, version in versions.items():
        model, tokenizer = load_model_folder(registry.download_verified(name, version),
                                             settings.allow_pickle)  # fmt: skip
        scores[role] = bits_per_byte(model, tokenizer, texts, seq_len)
    return scores


def replay_prompts(settings: Settings, name: str, version: str, count: int = 64) -> list[str]:
    texts, _ = held_out_for(settings, name, version)
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
    return [line[:120] for line in lines[:count]] or ["The with statement"]


def replay(
    settings: Settings, params: CanaryParams, versions: dict[str, str], prompts: list[str], n: int
) -> int:
    """Send the same n prompts to each version, pinned; the requests sent."""
    sent = 0
    with _client(settings, params.router_url) as client:
        for i in range(n):
            for version in versions.values():
                body = {"model": params.model_name, "prompt": prompts[i % len(prompts)],
                        "max_tokens": params.replay_max_tokens}  # fmt: skip
                with contextlib.suppress(httpx.HTTPError):  # the router's log says what came
                    client.post("/v1/completions", json=body,
                                headers={"x-llmops-version": version})  # fmt: skip
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
        out[role] = VersionStats(len(rows), int((rows["status"] >= 500).sum()), p95,
                                 (quality or {}).get(role))  # fmt: skip
    return out


def run_step(
    settings: Settings, params: CanaryParams, versions: dict[str, str], percent: float,
    last: bool, quality: dict[str, float] | None, prompts: list[str],
) -> StepResult:  # fmt: skip
    """Set the split, gather stats since, replay if short, until a verdict or max_wait_s."""
    from serving.app import set_weights

    roles = canary_weights(percent)
    set_weights({versions[r]: roles[r] for r in ("challenger", "champion")}, params.app_name)
    started, since, replayed = time.monotonic(), datetime.now(UTC), 0
    t = CanaryThresholds(**params.thresholds.model_dump())
    while True:
        stats = step_stats(read_acknowledged(settings.home / "requests", since), versions, quality)
        verdict = decide_step(stats["champion"], stats["challenger"], t, last)
        waited = time.monotonic() - started
        if verdict.action != "wait" or waited > params.max_wait_s:
            break
        if params.replay:
            short = max(t.min_requests - s.requests for s in stats.values())
            replayed += replay(settings, params, versions, prompts, short)
        else:
            time.sleep(min(2.0, params.max_wait_s))
    figures = {role: {"requests": s.requests, "errors": s.errors, "p95_ms": s.p95_ms,
                      "quality_bpb": s.quality} for role, s in stats.items()}  # fmt: skip
    return StepResult(percent=percent, action=verdict.action, reasons=list(verdict.reasons),
                      stats=figures, replayed=replayed, seconds=round(waited, 2))  # fmt: skip


def conclude(
    settings: Settings, params: CanaryParams, versions: dict[str, str], steps: list[StepResult],
    actor: str,
) -> CanaryOutcome:  # fmt: skip
    """Promote (challenger 100 %, aliases moved, app redeployed with the new champion only),
    roll back (challenger 0 %, alias cleared), or, when a step never got enough requests,
    leave the aliases as they are with the champion taking all traffic again."""
    from serving.app import deploy, set_weights

    registry, name = model_registry(settings), params.model_name
    last = steps[-1]
    why = "; ".join(last.reasons)
    figures = {f"{r}_{k}": float(v) for r, s in last.stats.items() for k, v in s.items()
               if v is not None}  # fmt: skip
    new, old = versions["challenger"], versions["champion"]
    if last.action == "promote":
        set_weights({new: 100.0, old: 0.0}, params.app_name)
        registry.set_alias(name, CHAMPION, new, action="promote", actor=actor, metrics=figures,
                           reason=f"canary passed at {last.percent:g}%: {why}")  # fmt: skip
        registry.set_alias(name, CHALLENGER, None, action="clear", actor=actor,
                           reason=f"v{new} promoted to champion by the canary")  # fmt: skip
        deploy(settings, name, {new: 100.0}, name=params.app_name, **params.deploy_options())
        verdict = "promoted"
    else:
        set_weights({new: 0.0, old: 100.0}, params.app_name)
        if last.action == "rollback":
            registry.set_alias(name, CHALLENGER, None, action="rollback", actor=actor,
                               metrics=figures,
                               reason=f"canary failed at {last.percent:g}%: {why}")  # fmt: skip
        verdict = "rolled back" if last.action == "rollback" else "inconclusive"
    aliases = registry.aliases(name)
    return CanaryOutcome(
        model_name=name, champion=old, challenger=new, verdict=verdict, steps=steps,
        champion_now=aliases.get(CHAMPION), challenger_now=aliases.get(CHALLENGER),
        served_now=served_versions(settings, params.router_url),
    )  # fmt: skip


def _router_settings() -> Settings:
    """Settings with the serving API key, read once per task (from a Prefect secret maybe)."""
    return with_serving_key(get_settings())


@task(**RETRIES)
def canary_versions_task(name: str) -> dict[str, str]:
    return canary_versions(get_settings(), name)


@task
def ensure_serving_task(params: CanaryParams, versions: dict[str, str]) -> bool:
    return ensure_serving(_router_settings(), params, versions)


@task(**RETRIES)
def quality_task(name: str, versions: dict[str, str]) -> dict[str, float]:
    return quality_scores(get_settings(), name, versions)


@task(**RETRIES)
def replay_prompts_task(name: str, version: str) -> list[str]:
    return replay_prompts(get_settings(), name, version)


@task(task_run_name="canary step {percent}%")
def canary_step_task(
    params: CanaryParams, versions: dict[str, str], percent: float, last: bool,
    quality: dict[str, float] | None, prompts: list[str],
) -> StepResult:  # fmt: skip
    return run_step(_router_settings(), params, versions, percent, last, quality, prompts)


@task
def conclude_task(
    params: CanaryParams, versions: dict[str, str], steps: list[StepResult]
) -> CanaryOutcome:
    return conclude(_router_settings(), params, versions, steps, current_actor())


@task
def publish_canary_report(outcome: CanaryOutcome) -> None:
    create_markdown_artifact(report_markdown(outcome), key="canary-report",
                             description=f"{outcome.model_name}: {outcome.verdict}")  # fmt: skip
