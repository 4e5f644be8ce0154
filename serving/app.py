"""The Ray Serve application: a FastAPI router splitting traffic by weight between one model
deployment per registered version, and one retriever for RAG.

    HTTP ─► Router (auth, routing, request log, metrics) ─► ModelServer "model-v<version>" × n
                                                                  └─► Retriever (embedder, index)

The router also takes feedback on answers (`POST /v1/feedback`) into the feedback log.

Changing the split at runtime (the canary's steps) is `set_weights` (a handle call inside the
cluster) or `POST /admin/weights` (the admin key, never a caller's): the router swaps one dict,
in place, so nothing restarts, no model reloads and no request is dropped. Not `serve.run`
again: Serve gives every deployment built in Python a fresh random version on each run, so a
redeploy replaces every replica (a rolling update, surging: see ROLLOUT; ~15-30 s and each model
loaded twice over). The weights given at deploy time are the router's `user_config`; a
declarative deploy (`serve deploy`, a RayService's serveConfigV2) changes them in place through
`reconfigure`, and a restarted router starts from them again (runtime changes are not persisted:
the canary sets the weights at each step).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from serving.api import ApiError, ChatRequest, Generation, GenerationRequest, Source, StreamStart
from serving.http import http_app
from serving.prompts import prepare
from serving.retriever import NOTHING_INDEXED, Retriever
from tasks.clients.secrets import with_serving_key
from tasks.core.routing import normalise_weights
from tasks.shared.generation import (
    Limits,
    Prompt,
    PromptTooLong,
    TextStream,
    generate,
    stream,
    to_chunk,
)
from tasks.shared.settings import Settings

logger = logging.getLogger(__name__)

# Each of these deployments runs one replica (per version): a rolling update with Serve's default
# (max_surge_percent=0) stops it before its replacement is up, leaving none for 15-30 s. The
# requests caught then wait in the draining router for a champion that has no replica, and the
# router is force-killed after graceful_shutdown_timeout_s (20 s) with them in flight: the proxy
# answers a plain 500. Surging starts the replacement first and only then drains the old replica
# (it needs room for one more replica of each version while a redeploy runs); the longer grace
# lets a long generation (up to 30 s on CPU) finish on a draining replica.
ROLLOUT = {"max_surge_percent": 100, "graceful_shutdown_timeout_s": 60}


@serve.deployment(max_ongoing_requests=64, **ROLLOUT)
class ModelServer:
    """One registered version: verified, loaded, warmed up, answering batched requests."""

    def __init__(
        self,
        settings: Settings,
        model_name: str,
        version: str,
        retriever: DeploymentHandle | None = None,
        max_batch_size: int = 8,
        batch_wait_timeout_s: float = 0.01,
        threads: int = 1,
    ) -> None:
        import torch

        from tasks.clients.registry import model_registry
        from tasks.shared.models import load_model_folder

        torch.set_num_threads(threads)
        started = time.perf_counter()
        folder = model_registry(settings).download_verified(model_name, version)  # verified
        self.model, self.tokenizer = load_model_folder(folder, settings.allow_pickle)
        self.version, self.retriever = version, retriever
        self.limits = Limits.of(
            self.model,
            self.tokenizer,
            settings.serving_max_prompt_tokens,
            settings.serving_max_tokens,
        )
        self._batch.set_max_batch_size(max_batch_size)
        self._batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        # The first forward pass pays lazy set-up (int8 weight packing, allocator): not a user.
        generate(self.model, self.tokenizer, [self.tokenizer.encode("warm up") or [0]], 2)
        self.load_s = time.perf_counter() - started

    async def ready(self) -> dict[str, Any]:
        """Only answered once __init__ (load and warm-up) is done."""
        replica = serve.get_replica_context().replica_id.unique_id
        return {
            "version": self.version,
            "replica": replica,
            "load_s": round(self.load_s, 3),
            "window": self.limits.window,
        }

    async def complete(self, request: GenerationRequest) -> Generation | ApiError:
        try:
            prompt = await self._prepare(request)
        except ApiError as refusal:
            return refusal
        ids = await self._batch((prompt.ids, prompt.max_new, request.temperature))
        return self._result(prompt, ids)

    async def stream(
        self, request: GenerationRequest
    ) -> AsyncIterator[StreamStart | str | Generation | ApiError]:
        """A StreamStart, then text deltas, then the whole Generation (or one ApiError)."""
        try:
            prompt = await self._prepare(request)
        except ApiError as refusal:
            yield refusal
            return
        yield StreamStart(prompt_tokens=len(prompt.ids), sources=_sources(prompt))
        tokens = stream(self.model, self.tokenizer, prompt.ids, prompt.max_new, request.temperature)
        text, ids = TextStream(self.tokenizer), []
        while (token := await asyncio.to_thread(next, tokens, None)) is not None:
            ids.append(token)
            if delta := text.push(token):
                yield delta
        yield self._result(prompt, ids)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batch(self, jobs: list[tuple[list[int], int, float]]) -> list[list[int]]:
        prompts, limits, temps = (list(column) for column in zip(*jobs, strict=True))
        # In a thread: the replica's event loop keeps queueing the next batch meanwhile.
        return await asyncio.to_thread(generate, self.model, self.tokenizer, prompts, limits, temps)

    async def _prepare(self, request: GenerationRequest) -> Prompt:
        try:
            prompt = prepare(self.tokenizer, request, self.limits, None)  # length first, cheap
            rag = request.rag if request.rag is not None else isinstance(request, ChatRequest)
            if not rag:
                return prompt
            hits = NOTHING_INDEXED
            if self.retriever is not None:
                hits = await self._retrieve(request.question, request.top_k)
            if isinstance(hits, str):  # why there are no passages
                if request.rag:  # asked for explicitly: say why it cannot be done
                    raise ApiError(503, hits, "retrieval_unavailable")
                return prompt  # chat's default: answer without passages meanwhile
            chunks = [
                to_chunk(self.tokenizer, h["text"], h["doc_id"], h["source"], h["score"])
                for h in hits
            ]
            return prepare(self.tokenizer, request, self.limits, chunks)
        except PromptTooLong as exc:
            raise ApiError(
                400, f"{exc} (limit {exc.limit}, got {exc.count})", "context_length_exceeded"
            ) from None

    async def _retrieve(self, question: str, top_k: int) -> list[dict[str, Any]] | str:
        try:
            return await self.retriever.search.remote(question, top_k)
        except Exception as exc:  # the index is down, not this model: say which
            logger.exception("retrieval failed")
            raise ApiError(
                503, f"retrieval failed: {type(exc).__name__}", "retrieval_unavailable"
            ) from None

    def _result(self, prompt: Prompt, ids: list[int]) -> Generation:
        return Generation(
            text=self.tokenizer.decode(ids, skip_special_tokens=True),
            prompt_tokens=len(prompt.ids),
            completion_tokens=len(ids),
            finish_reason="length" if len(ids) >= prompt.max_new else "stop",
            sources=_sources(prompt),
        )


def _sources(prompt: Prompt) -> list[Source]:
    # The text as `build_prompt` puts it in: what the answer's groundedness is judged against.
    return [
        Source(doc_id=c.doc_id, source=c.source, score=c.score, text=c.text.strip())
        for c in prompt.chunks
    ]


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256, **ROLLOUT)
@serve.ingress()
class Router:
    """Holds a handle per served version and the weights; the HTTP side is `serving.http`."""

    def __init__(
        self,
        settings: Settings,
        model_name: str,
        servers: dict[str, DeploymentHandle],
        log_flush_s: float = 30.0,
    ) -> None:
        from serving.metrics import ServingMetrics
        from tasks.clients.request_log import FeedbackLog, RequestLog

        self.settings, self.model_name, self.servers = settings, model_name, servers
        self.weights: dict[str, float] = dict.fromkeys(servers, 1.0)  # until reconfigure
        self.metrics = ServingMetrics()
        self.log = RequestLog(settings.requests_dir)
        self.feedback = FeedbackLog(settings.feedback_dir)
        self.log_flush_s = log_flush_s
        key, admin = settings.serving_api_key, settings.serving_admin_key
        self.api_key = key.get_secret_value() if key else None
        self.admin_key = admin.get_secret_value() if admin else None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config {"weights": {version: weight}}, applied in place (see the module doc)."""
        self.weights = checked_weights(config.get("weights", {}), self.servers)

    async def set_weights(self, weights: dict[str, float]) -> dict[str, float]:
        """New weights for the next requests (in routing order); ValueError leaves them as
        they were."""
        self.weights = checked_weights(weights, self.servers)
        logger.info("weights now %s", self.weights)
        return self.weights

    def __serve_build_asgi_app__(self) -> FastAPI:
        return http_app(self)

    def __del__(self) -> None:
        self.log.close()  # moves what the WALs hold into parquet
        self.feedback.close()


def checked_weights(weights: Mapping[str, float], served: Any) -> dict[str, float]:
    """Weights over served versions only, in their given (routing) order."""
    weights = {str(v): w for v, w in weights.items()}
    normalise_weights(weights)  # raises on empty, negative, non-finite or all-zero weights
    unknown = sorted(set(weights) - set(served))
    if unknown:
        raise ValueError(f"weights name versions that are not served: {unknown}")
    return weights


def build_app(
    settings: Settings,
    model_name: str,
    weights: Mapping[str, float],
    *,
    max_batch_size: int = 8,
    batch_wait_timeout_s: float = 0.01,
    model_cpus: float = 1.0,
    model_replicas: int = 1,
    control_labels: Mapping[str, str] | None = None,
    log_flush_s: float = 30.0,
) -> Application:
    """The bound application: one ModelServer per version in `weights` (a weight of 0 is served
    but only reached by pinning), the retriever and the router. Weights are walked in order:
    list the challenger first so that raising its share only moves callers towards it.

    `model_replicas` replicas per version, which Serve spreads over the nodes (best effort: its
    default placement is SPREAD), so losing a node loses some replicas of each version, not a
    version. The router (one replica: it holds the live split) and the retriever are single;
    `control_labels` (a Ray label selector, e.g. {"llmops.io/role": "control"}, given to the
    head with `ray start --labels`) keeps them on the node(s) that carry those labels, so that
    losing a worker node does not take the entry point down with it."""
    weights = {str(v): float(w) for v, w in weights.items()}
    checked_weights(weights, weights)
    if model_replicas < 1:
        raise ValueError(f"model_replicas must be at least 1, got {model_replicas}")
    settings = with_serving_key(settings)  # the replicas get the key, not the secret's name
    control = control_options(control_labels)
    retriever = Retriever.options(ray_actor_options=control).bind(settings)
    options = {"num_cpus": model_cpus}
    servers = {
        version: ModelServer.options(
            name=f"model-v{version}", num_replicas=model_replicas, ray_actor_options=options
        ).bind(
            settings,
            model_name,
            version,
            retriever,
            max_batch_size,
            batch_wait_timeout_s,
            max(1, int(model_cpus)),
        )
        for version in weights
    }
    router = Router.options(user_config={"weights": weights}, ray_actor_options=control)
    return router.bind(settings, model_name, servers, log_flush_s)


def control_options(labels: Mapping[str, str] | None) -> dict[str, Any]:
    """Actor options of the router and the retriever: no CPU (they wait on the models), and
    only on nodes carrying `labels` when given (Serve and Ray check the selector's syntax)."""
    options: dict[str, Any] = {"num_cpus": 0}
    if labels:
        options["label_selector"] = {str(k): str(v) for k, v in labels.items()}
    return options


def deploy(
    settings: Settings,
    model_name: str,
    weights: Mapping[str, float],
    name: str = "llmops",
    route_prefix: str = "/",
    **options: Any,
) -> DeploymentHandle:
    """Start the application, or replace it (new versions: a rolling update of every replica;
    to change only the split, use `tasks.clients.serve.ServeControl.set_weights`)."""
    return serve.run(
        build_app(settings, model_name, weights, **options), name=name, route_prefix=route_prefix
    )
