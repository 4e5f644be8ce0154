"""Continuous batching on a real (tiny, random) Llama: rows joining and leaving a running batch
decode what each would alone; the serving engine's queue, deadlines, cancellation and failures.
No Ray: the engine is plain threads and asyncio."""

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from serving.engine import Engine, QueueFull
from tasks.shared.batching import DecodeBatch, Job
from tasks.shared.generation import generate

from decoding import same_up_to_a_tie

pytestmark = pytest.mark.integration
TIE = 1e-4


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: the cache has fewer heads
        max_position_embeddings=4096,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = None
    return model


def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, 300, (n,), generator=g).tolist() for n in (5, 17, 1, 40, 9, 3, 26)]


LENGTHS = [12, 4, 20, 7, 15, 1, 9]


@pytest.fixture(scope="module")
def tokenizer(model: LlamaForCausalLM) -> Any:
    """EOS is an id the model emits mid-answer for one prompt: some rows stop early."""
    eos = generate(model, ENDLESS, [prompts()[2]], 20)[0][6]
    return SimpleNamespace(eos_token_id=eos, pad_token_id=None)


ENDLESS = SimpleNamespace(eos_token_id=None, pad_token_id=None)  # answers run to their count


def alone(model: Any, tokenizer: Any) -> list[list[int]]:
    return [generate(model, tokenizer, [p], n)[0] for p, n in zip(prompts(), LENGTHS, strict=True)]


def check(model: Any, tokenizer: Any, got: dict[int, list[int]], expected: list[list[int]]):
    for row, prompt in enumerate(prompts()):
        assert same_up_to_a_tie(model, prompt, got[row], expected[row], tokenizer.eos_token_id, TIE)


def test_rows_joining_and_leaving_a_running_batch_decode_what_they_would_alone(
    model, tokenizer
) -> None:
    expected = alone(model, tokenizer)
    assert any(len(e) < n for e, n in zip(expected, LENGTHS, strict=True))  # an early stop
    batch, got, ended = DecodeBatch(model, tokenizer), {i: [] for i in range(7)}, []
    joins = {0: [0, 1], 2: [2], 3: [3, 4], 8: [5], 9: [6]}  # step -> rows joining then
    widths = []
    for step in range(40):
        progress = [batch.step()] if len(batch) else []
        if step in joins:
            progress.append(batch.admit([Job(i, prompts()[i], LENGTHS[i]) for i in joins[step]]))
        for p in progress:
            for key, token in p.tokens.items():
                got[key].append(token)
            ended += p.ended
        widths.append(len(batch))
    check(model, tokenizer, got, expected)
    assert sorted(ended) == list(range(7)) and len(batch) == 0 and batch.cache is None
    assert max(widths) >= 3  # they really ran together
    # A fixed batch is the same engine with every row joining at once.
    assert generate(model, tokenizer, prompts(), LENGTHS) == expected or all(
        same_up_to_a_tie(model, p, g, e, tokenizer.eos_token_id, TIE)
        for p, g, e in zip(
            prompts(), generate(model, tokenizer, prompts(), LENGTHS), expected, strict=True
        )
    )


def test_a_long_prompt_that_leaves_does_not_keep_widening_the_cache(model, tokenizer) -> None:
    batch = DecodeBatch(model, tokenizer)
    batch.admit([Job("long", list(range(3, 203)), 2), Job("short", [5, 6, 7], 50)])
    while "long" in batch.keys:
        batch.step()
    assert batch.mask.shape[1] < 20  # the 200 columns only the long prompt used are gone
    assert batch.cache.layers[0].keys.shape[2] == batch.mask.shape[1]
    batch.drop(["short"])
    assert len(batch) == 0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def answer(engine: Engine, prompt: list[int], n: int, deadline_s: float = 60.0):
    ticket = engine.submit(prompt, n, 0.0, deadline_s)
    return [t async for t in engine.tokens(ticket)], ticket


def test_the_engine_answers_a_mixed_load_as_one_by_one_greedy_decoding(model, tokenizer):
    expected = alone(model, tokenizer)
    engine = Engine(model, tokenizer, max_batch_size=4, max_queue=16)

    async def load() -> list[Any]:
        jobs = []
        for i, (prompt, n) in enumerate(zip(prompts(), LENGTHS, strict=True)):
            jobs.append(asyncio.create_task(answer(engine, prompt, n)))
            await asyncio.sleep(0.002 * i)  # arriving while others decode
        return await asyncio.gather(*jobs)

    try:
        results = run(load())
    finally:
        engine.close()
    check(model, tokenizer, {i: r[0] for i, r in enumerate(results)}, expected)
    for (ids, ticket), n in zip(results, LENGTHS, strict=True):
        assert ticket.end.reason == ("length" if len(ids) == n else "stop")
        assert ticket.queue_ms >= 0 and ticket.ttft_ms >= ticket.queue_ms


def test_a_request_joins_a_running_batch_and_leaves_before_a_longer_one(model):
    engine = Engine(model, ENDLESS, max_batch_size=4, max_queue=4)

    async def overtake() -> tuple[Any, Any]:
        long = engine.submit([5, 6], 400, 0.0, 60.0)
        tokens = engine.tokens(long)
        first = await anext(tokens)  # decoding has started
        short = await answer(engine, [7, 8, 9], 2)
        rest = [t async for t in tokens]
        return (first, rest, long), short

    try:
        (first, rest, long), (short_ids, short) = run(overtake())
    finally:
        engine.close()
    assert len(short_ids) == 2 and len([first, *rest]) == 400
    assert long.first_token < short.admitted and short.finished < long.finished


def test_a_full_queue_refuses_and_the_engine_keeps_answering(model) -> None:
    engine = Engine(model, ENDLESS, max_batch_size=1, max_queue=2)

    async def crowd() -> tuple[list[Any], QueueFull]:
        first = engine.submit([5, 6], 300, 0.0, 60.0)
        tokens = engine.tokens(first)
        await anext(tokens)  # decoding: the batch of one is full
        queued = [asyncio.create_task(answer(engine, [5, 6], 300)) for _ in range(2)]
        await asyncio.sleep(0)  # both wait in the queue
        with pytest.raises(QueueFull) as full:
            engine.submit([7], 3, 0.0, 60.0)
        rest = [t async for t in tokens]
        return [rest, *[ids for ids, _ in await asyncio.gather(*queued)]], full.value

    try:
        done, full = run(crowd())
        assert full.waiting == 2 and 1 <= full.retry_after_s <= 60
        assert [len(ids) for ids in done] == [299, 300, 300]
        ids, ticket = run(answer(engine, [7], 3))
        assert len(ids) == 3 and ticket.end.reason == "length"
    finally:
        engine.close()


def test_a_burst_the_batch_and_the_queue_can_hold_is_taken_whole(model) -> None:
    """Rows free in the batch are not queue: a burst of batch + queue requests is accepted."""
    engine = Engine(model, ENDLESS, max_batch_size=4, max_queue=2)

    async def burst() -> tuple[list[Any], QueueFull]:
        tickets = [engine.submit([5, 6], 3000, 0.0, 0.5) for _ in range(4 + 2)]
        with pytest.raises(QueueFull) as full:
            engine.submit([7], 3, 0.0, 60.0)
        for ticket in tickets:
            async for _ in engine.tokens(ticket):
                pass
        return tickets, full.value

    try:
        tickets, full = run(burst())
        assert full.waiting == 2 and [t.end.reason for t in tickets] == ["deadline"] * 6
    finally:
        engine.close()


def test_a_deadline_ends_a_long_generation_and_a_queued_request(model) -> None:
    engine = Engine(model, ENDLESS, max_batch_size=1, max_queue=4)

    async def late() -> tuple[Any, Any]:
        long = asyncio.create_task(answer(engine, [5, 6], 3000, deadline_s=0.3))
        await asyncio.sleep(0)
        queued = asyncio.create_task(answer(engine, [7], 5, deadline_s=0.05))
        return await long, await queued

    try:
        started = time.monotonic()
        (ids, ticket), (queued_ids, queued) = run(late())
        assert ticket.end.reason == "deadline" and 0 < len(ids) < 3000
        assert ticket.finished - ticket.enqueued < 2.0  # ended, not run to its 3000 tokens
        assert queued.end.reason == "deadline" and queued_ids == []
        assert queued.end.detail == "in the queue" and time.monotonic() - started < 5
    finally:
        engine.close()


def test_a_caller_that_goes_away_frees_its_row(model) -> None:
    engine = Engine(model, ENDLESS, max_batch_size=2, max_queue=2)

    async def leave() -> None:
        ticket = engine.submit([5, 6], 3000, 0.0, 60.0)
        tokens = engine.tokens(ticket)
        async for _ in tokens:
            break
        await tokens.aclose()
        for _ in range(200):
            if not engine.running:
                return
            await asyncio.sleep(0.01)

    try:
        run(leave())
        assert not engine.running and len(engine.batch) == 0
    finally:
        engine.close()


def test_a_failing_model_answers_every_request_with_the_error_and_recovers(tokenizer) -> None:
    class Flaky(torch.nn.Module):
        """Fails its first forward pass, then answers id 9 forever."""

        def __init__(self) -> None:
            super().__init__()
            self.weight, self.calls = torch.nn.Parameter(torch.zeros(1)), 0

        def forward(self, input_ids, attention_mask, position_ids, cache, use_cache, **_):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("out of memory")
            logits = torch.zeros(input_ids.shape[0], 1, 300)
            logits[:, :, 9] = 1
            cache = SimpleNamespace(layers=[], batch_select_indices=lambda index: None)
            return SimpleNamespace(logits=logits, cache=cache)

    engine = Engine(Flaky(), tokenizer, max_batch_size=2, max_queue=2)
    try:
        ids, ticket = run(answer(engine, [5], 3))
        assert ids == [] and ticket.end.reason == "error" and "out of memory" in ticket.end.detail
        ids, ticket = run(answer(engine, [5], 3))
        assert ids == [9, 9, 9] and ticket.end.reason == "length"
    finally:
        engine.close()
