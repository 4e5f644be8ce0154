"""Answers to an evaluation set, produced the way users get them: the same retrieval, the same
prompt (`tasks.shared.generation.prompt_for`), greedy decoding.

Retrieval does not depend on the model, so the passages are fetched once per set and every
version answers from the same ones (`retrieve`); a model folder answers in-process in batches
(`answer_with_model`), a served endpoint over HTTP (`answer_with_endpoint`). A question that
cannot be answered (prompt too long, endpoint error) gets an `Answer` with `error` set: its
metrics are then missing with that reason, never a made-up zero.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.context import Chunk, build_prompt
from tasks.core.routing import VERSION_HEADER
from tasks.core.scorers import Answer, Example
from tasks.shared.generation import Limits, PromptTooLong, generate, prompt_for, to_chunk


@dataclass(frozen=True)
class Passage:
    doc_id: str
    source: str
    text: str
    score: float


def retrieve(examples: Sequence[Example], index: Any, top_k: int) -> list[list[Passage]]:
    """The top_k passages for each question, best first, from the platform's index."""
    from tasks.clients.retrieval import search

    return [
        [
            Passage(h.doc_id, h.source, h.text, h.score)
            for h in search(e.question, top_k, index=index)
        ]
        for e in examples
    ]


class ModelLoadError(RuntimeError):
    """A version that cannot be evaluated: nothing downstream may promote it."""


def load_for_evaluation(folder: Path, label: str, allow_pickle: bool) -> tuple[Any, Any]:
    from tasks.shared.models import load_model_folder

    try:
        return load_model_folder(folder, allow_pickle)
    except Exception as exc:
        raise ModelLoadError(f"{label} could not be loaded from {folder}: {exc}") from exc


def answer_with_model(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    passages: Sequence[Sequence[Passage]],
    max_tokens: int,
    max_prompt_tokens: int = 4096,
    batch_size: int = 8,
    threads: int = 1,
) -> list[Answer]:
    """Greedy answers, `batch_size` questions at a time, on `threads` CPU threads (as a serving
    replica decodes; a small model on a busy machine decodes ~10x faster on one thread than
    on two); each answer's latency is its batch's wall time."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _answer_batches(
            model, tokenizer, examples, passages, max_tokens, max_prompt_tokens, batch_size
        )
    finally:
        torch.set_num_threads(before)


def _answer_batches(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    passages: Sequence[Sequence[Passage]],
    max_tokens: int,
    max_prompt_tokens: int,
    batch_size: int,
) -> list[Answer]:
    model.eval()
    limits = Limits.of(model, tokenizer, max_prompt_tokens, max_tokens)
    answers: list[Answer | None] = [None] * len(examples)
    prompts = []
    for i, (example, hits) in enumerate(zip(examples, passages, strict=True)):
        chunks = [to_chunk(tokenizer, h.text, h.doc_id, h.source, h.score) for h in hits]
        try:
            prompts.append((i, prompt_for(tokenizer, example.question, limits, max_tokens, chunks)))
        except PromptTooLong as exc:
            answers[i] = _failed(str(exc))
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        started = time.perf_counter()
        ids = generate(model, tokenizer, [p.ids for _, p in batch], [p.max_new for _, p in batch])
        took_ms = 1000 * (time.perf_counter() - started)
        for (i, prompt), out in zip(batch, ids, strict=True):
            answers[i] = _answer(
                tokenizer.decode(out, skip_special_tokens=True),
                prompt.chunks,
                took_ms,
                len(prompt.ids),
                len(out),
            )
    return [a for a in answers if a is not None]


def answer_with_endpoint(
    url: str,
    examples: Sequence[Example],
    passages: Sequence[Sequence[Passage]] | None,
    max_tokens: int,
    api_key: str | None = None,
    model: str | None = None,
    version: str | None = None,
    top_k: int | None = 4,
    timeout_s: float = 60.0,
) -> list[Answer]:
    """Answers from an OpenAI-compatible `/v1/completions` endpoint. With `passages` the prompt
    is built here (any endpoint); without, the platform's own serving app retrieves (`rag`) and
    returns its `sources` (`top_k` passages; None: as many as the version's release says).
    `version` pins one served version (the router's version header)."""
    import httpx

    headers = _headers(api_key, version)
    answers = []
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s) as client:
        for i, example in enumerate(examples):
            hits = passages[i] if passages is not None else None
            body: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.0}
            if model:
                body["model"] = model
            if hits is None:
                body.update(prompt=example.question, rag=True)
                if top_k is not None:  # else the served version's release decides
                    body["top_k"] = top_k
            else:
                chunks = [Chunk(h.text, 0, h.doc_id, h.source, h.score) for h in hits]
                body["prompt"] = build_prompt(example.question, chunks)
            started = time.perf_counter()
            try:
                response = client.post("/v1/completions", json=body)
                response.raise_for_status()
                answers.append(_from_response(response.json(), hits, started))
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                answers.append(_failed(f"{type(exc).__name__}: {exc}"[:300]))
    return answers


def _headers(api_key: str | None, version: str | None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    if version:
        headers[VERSION_HEADER] = version
    return headers


def _from_response(body: dict[str, Any], hits: Sequence[Passage] | None, started: float) -> Answer:
    took_ms = 1000 * (time.perf_counter() - started)
    usage = body.get("usage") or {}
    if hits is None:  # the serving app's own retrieval: the passages it put into the prompt
        hits = [
            Passage(s["doc_id"], s.get("source", ""), s.get("text", ""), s.get("score", 0.0))
            for s in body.get("sources") or []
        ]
    return Answer(
        text=body["choices"][0]["text"],
        passage_doc_ids=tuple(h.doc_id for h in hits),
        passages=tuple(h.text for h in hits),
        latency_ms=took_ms,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def _answer(text: str, chunks: Sequence[Chunk], took_ms: float, prompt: int, out: int) -> Answer:
    return Answer(
        text=text,
        passage_doc_ids=tuple(c.doc_id for c in chunks),
        passages=tuple(c.text for c in chunks),
        latency_ms=took_ms,
        prompt_tokens=prompt,
        completion_tokens=out,
    )


def _failed(reason: str) -> Answer:
    return Answer("", (), (), 0.0, 0, 0, error=reason)
