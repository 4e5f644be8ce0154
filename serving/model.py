"""One served version: a Serve deployment that verifies, loads and warms up a registered
version, then answers batched requests, retrieving passages for RAG from the router app's
retriever, behind the rails of its release (`serving.rails`). Each version runs as an
application of its own (`serving.versions`)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ray import serve

from serving.api import (
    ApiError,
    ChatRequest,
    Generation,
    GenerationRequest,
    RailDecision,
    Source,
    StreamStart,
)
from serving.decoding import Decoder, EngineDecoder, StaticDecoder, Timing
from serving.engine import Engine
from serving.options import ModelOptions
from serving.prompts import prepare
from serving.rails import OutputGuard, check_output, check_request, refusal, screen_hits
from serving.retriever import NOTHING_INDEXED
from serving.tracing import context_of, span, tracer
from tasks.core.citations import locate
from tasks.core.rails import ServingRails
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
RETRIEVER = "Retriever"  # the deployment in the router's app that every version retrieves from

# Each of these deployments runs one replica (per version): a rolling update with Serve's default
# (max_surge_percent=0) stops it before its replacement is up, leaving none for 15-30 s. The
# requests caught then wait in the draining router for a champion that has no replica, and the
# router is force-killed after graceful_shutdown_timeout_s (20 s) with them in flight: the proxy
# answers a plain 500. Surging starts the replacement first and only then drains the old replica
# (it needs room for one more replica of each version while a redeploy runs); the longer grace
# lets a long generation (up to 30 s on CPU) finish on a draining replica.
ROLLOUT = {"max_surge_percent": 100, "graceful_shutdown_timeout_s": 60}


@serve.deployment(**ROLLOUT)
class ModelServer:
    """One registered version: verified, loaded, warmed up, answering through its engine."""

    def __init__(
        self,
        settings: Settings,
        model_name: str,
        version: str,
        retriever_app: str | None = None,
        options: ModelOptions | None = None,
    ) -> None:
        import torch

        from tasks.clients.embedder import EMBEDDING_MODEL
        from tasks.clients.registry import model_registry
        from tasks.clients.releases import DEFAULT_TOP_K, Releases
        from tasks.shared.devices import check_replica_memory, place, replica_placement
        from tasks.shared.models import load_model_folder

        options = options or ModelOptions()
        torch.set_num_threads(max(1, int(options.model_cpus)))
        started = time.perf_counter()
        registry = model_registry(settings)
        releases = Releases(settings, registry)
        # The version's release: its instruction, retrieval and limits (settings without one).
        self.release = releases.of(model_name, version)
        if self.release and self.release.embedding_model != EMBEDDING_MODEL:
            raise ValueError(
                f"{model_name} v{version} was released for an index embedded with "
                f"{self.release.embedding_model}; this app retrieves with {EMBEDDING_MODEL}"
            )
        self.instruction = releases.instruction(self.release)
        self.top_k = self.release.top_k if self.release else DEFAULT_TOP_K
        self.rails = self.release.rails.serving if self.release else ServingRails()
        self.deadline_s = settings.serving_deadline_s
        tracer(settings)  # this replica's spans go where the settings say (or nowhere)
        folder = registry.download_verified(model_name, version)  # verified
        self.model, self.tokenizer = load_model_folder(folder, settings.allow_pickle)
        self.version = version
        self.retriever = (
            serve.get_deployment_handle(RETRIEVER, app_name=retriever_app)
            if retriever_app
            else None
        )
        self.limits = Limits.of(
            self.model,
            self.tokenizer,
            self.release.max_prompt_tokens if self.release else settings.serving_max_prompt_tokens,
            self.release.max_tokens if self.release else settings.serving_max_tokens,
        )
        # A GPU replica decodes in bf16 there, if the model, its batch and window fit.
        device, dtype = replica_placement(self.model, options.model_gpus)
        gpus, batch = options.model_gpus, options.max_batch_size
        check_replica_memory(self.model, device, dtype, gpus, batch, self.limits.window)
        self.model = place(self.model, device, dtype)
        # The first forward pass pays lazy set-up (int8 weight packing, allocator): not a user.
        generate(self.model, self.tokenizer, [self.tokenizer.encode("warm up") or [0]], 2)
        self.decoder = self._decoder(options)
        self.load_s = time.perf_counter() - started

    def _decoder(self, options: ModelOptions) -> Decoder:
        if options.engine == "static":
            self._batch.set_max_batch_size(options.max_batch_size)
            self._batch.set_batch_wait_timeout_s(options.batch_wait_timeout_s)
            return StaticDecoder(
                self._batch, lambda ids, n, t: stream(self.model, self.tokenizer, ids, n, t)
            )
        engine = Engine(self.model, self.tokenizer, options.max_batch_size, options.max_queue)
        return EngineDecoder(engine)

    async def ready(self) -> dict[str, Any]:
        """Only answered once __init__ (load and warm-up) is done."""
        replica = serve.get_replica_context().replica_id.unique_id
        return {
            "version": self.version,
            "replica": replica,
            "pid": os.getpid(),
            "load_s": round(self.load_s, 3),
            "window": self.limits.window,
            "release": self.release.model_dump() if self.release else None,
        }

    async def complete(self, request: GenerationRequest) -> Generation | ApiError:
        if blocked := check_request(request, self.rails):  # the input rail, before anything
            return refusal(blocked)
        parent = context_of(request.trace)
        try:
            prompt, screened = await self._prepare(request, parent)
            decoding = self._start(prompt, request, False, parent)
            ids = [token async for token in decoding]
        except ApiError as refused:
            return refused
        return self._result(prompt, ids, screened, decoding.timing)

    async def stream(
        self, request: GenerationRequest
    ) -> AsyncIterator[StreamStart | str | Generation | ApiError]:
        """A StreamStart, then text deltas, then the whole Generation; or one ApiError instead
        of all of them (refused before any text), or after some deltas (the deadline passed).
        The deltas are what the output rail has passed (`OutputGuard`): held back a little,
        and redacted like the Generation's text. Leaving early ends the decoding."""
        if blocked := check_request(request, self.rails):
            answer = refusal(blocked)
            yield StreamStart(prompt_tokens=0)
            yield answer.text
            yield answer
            return
        parent = context_of(request.trace)  # a parent, not attached: this is a generator
        try:
            prompt, screened = await self._prepare(request, parent)
            decoding = self._start(prompt, request, True, parent)
        except ApiError as refused:
            yield refused
            return
        yield StreamStart(prompt_tokens=len(prompt.ids), sources=_sources(prompt))
        text, ids = TextStream(self.tokenizer), []
        guard = OutputGuard(self.instruction, self.rails)
        try:
            async for token in decoding:
                ids.append(token)
                if (delta := text.push(token)) and (checked := guard.push(delta)):
                    yield checked
        except ApiError as ended:
            yield ended
            return
        result = self._result(prompt, ids, screened, decoding.timing)
        if rest := guard.finish(result.text):
            yield rest
        yield result

    def _start(
        self, prompt: Prompt, request: GenerationRequest, streaming: bool, parent: Any
    ) -> Any:
        deadline = min(request.deadline_s or self.deadline_s, self.deadline_s)
        return self.decoder.start(prompt, request.temperature, deadline, streaming, parent)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batch(self, jobs: list[tuple[list[int], int, float]]) -> list[list[int]]:
        """The "static" engine's batches (`serving.decoding.StaticDecoder`)."""
        prompts, limits, temps = (list(column) for column in zip(*jobs, strict=True))
        # In a thread: the replica's event loop keeps queueing the next batch meanwhile.
        return await asyncio.to_thread(generate, self.model, self.tokenizer, prompts, limits, temps)

    def __del__(self) -> None:
        if decoder := getattr(self, "decoder", None):
            decoder.close()

    async def _prepare(
        self, request: GenerationRequest, parent: Any = None
    ) -> tuple[Prompt, list[RailDecision]]:
        """The prompt, and the retrieval rail's decisions on the passages retrieved for it."""
        try:
            # Length first, cheap: no retrieval for a prompt that is refused anyway.
            with span("prompt", parent=parent):
                prompt = prepare(self.tokenizer, request, self.limits, None, self.instruction)
            rag = request.rag if request.rag is not None else isinstance(request, ChatRequest)
            if not rag:
                return prompt, []
            hits = NOTHING_INDEXED
            if self.retriever is not None:
                top_k = request.top_k or self.top_k
                with span("retrieve", {"top_k": top_k}, parent=parent):
                    hits = await self._retrieve(request.question, top_k)
            if isinstance(hits, str):  # why there are no passages
                if request.rag:  # asked for explicitly: say why it cannot be done
                    raise ApiError(503, hits, "retrieval_unavailable")
                return prompt, []  # chat's default: answer without passages meanwhile
            with span("prompt", {"passages": len(hits)}, parent=parent):
                hits, screened = screen_hits(hits, self.rails)  # before any passage is prompted
                chunks = [
                    to_chunk(self.tokenizer, h["text"], h["doc_id"], h["source"], h["score"])
                    for h in hits
                ]
                prompt = prepare(self.tokenizer, request, self.limits, chunks, self.instruction)
            return prompt, screened
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

    def _result(
        self,
        prompt: Prompt,
        ids: list[int],
        screened: Sequence[RailDecision] = (),
        timing: Timing | None = None,
    ) -> Generation:
        """The answer to `prompt` from the generated `ids`, after the output rail; with the
        decisions of the retrieval rail (`screened`) and of the output rail."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, checked = check_output(text, self.instruction, self.rails)
        refused = any(d.action == "block" for d in checked)
        return Generation(
            text=text,
            prompt_tokens=len(prompt.ids),
            completion_tokens=len(ids),
            finish_reason="content_filter"
            if refused
            else ("length" if len(ids) >= prompt.max_new else "stop"),
            sources=_sources(prompt),
            rails=[*screened, *checked],
            **vars(timing or Timing()),
        )


def _sources(prompt: Prompt) -> list[Source]:
    # The text as `build_prompt` puts it in: what the answer's groundedness is judged against.
    return [
        Source(
            doc_id=c.doc_id,
            source=c.source,
            score=c.score,
            text=c.text.strip(),
            citation=(where := locate(c.source)).citation,
            page=where.page,
            section=where.section,
        )
        for c in prompt.chunks
    ]
