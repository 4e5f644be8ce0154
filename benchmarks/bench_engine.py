"""The serving engine on a 125M model, against Hugging Face `generate` and the bandwidth bound.

Continuous batching against plain `generate` loops and against the memory-bandwidth bound of
decoding, in the same run.

The default serving model (1.8M weights) is so small that Python and framework overhead hide
the engine; here the model is GPT-2 small built from `GPT2Config()` (124M weights; `--arch
llama`: a tied Llama of the same width and depth, 138M), random weights, fp32, no EOS (every
answer runs to its length), torch on 2 threads. The same prompts (random ids, 16-128 tokens,
fixed seed), N/4..N new ids each (`--lengths mixed`, the default: answers vary, which is what
continuous batching is for; `--lengths fixed`: N each), greedy, through four paths, their
order rotated each round:

- `hf_one_by_one`: `model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)`
  one prompt at a time, as one process serving requests one by one;
- `hf_static`: the same `generate` on left-padded batches of B prompts (attention mask);
- `engine`: every request submitted at once to `serving.engine.Engine(max_batch_size=B)`
  (continuous batching, decoding in the engine's thread), read through `Engine.tokens`;
- `generate`: `tasks.shared.generation.generate` on batches of B (static, the engine's decoder).

Every path decodes under `torch.inference_mode` in a thread other than the main one (see
`in_thread`). Measured per path: tokens/s end to end (all requests arrive at once), decode
tokens/s (ids after each request's first, over the wall time not spent in prefill forwards),
rows per decoding step, TTFT and inter-token latency p50/p95, and decode tokens/s as a share
of the bounds. The weights are read once per decoding step whatever the rows, so the
memory-bandwidth bound is rows x bandwidth / weight bytes (bandwidth: `dst.copy_(src)` on
512 MB of fp32, 2 x size moved); the compute bound is FLOP/s (a 2048 x 2048 fp32 matmul) / (2 x
weights) per token; the roofline takes, step by step, the slower of weights plus KV cache read
and FLOPs.

    python benchmarks/bench_engine.py [--quick] [--rounds N] [--requests N] [--new-tokens N]
                                      [--batch B] [--arch gpt2|llama] [--copy-mb MB]
                                      [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import _common
import torch

THREADS = 2
PROMPT_TOKENS = (16, 128)  # prompt lengths, uniform, inclusive
ENDLESS = SimpleNamespace(eos_token_id=None, pad_token_id=None)  # answers run to their count
PAD = 0
PATHS = ("hf_one_by_one", "hf_static", "engine", "generate")


def build_model(arch: str) -> Any:
    """A standard ~125M configuration with random weights, in eval mode, without EOS."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config())  # GPT-2 small: 768 wide, 12 layers, 50257 ids
    else:
        config = LlamaConfig(
            vocab_size=32000,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_key_value_heads=12,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD
    return model


def weight_facts(model: Any) -> dict[str, Any]:
    """Parameters, and the bytes one decoding step reads: every weight once, except input
    embeddings that are not also the LM head (a gather of a few rows)."""
    params = {id(p): p for p in model.parameters()}  # tied weights once
    head = model.get_output_embeddings().weight
    gathered = sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m.weight is not head
    )
    total = sum(p.numel() for p in params.values())
    read = total - gathered
    c = model.config
    kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    kv_dim = kv_heads * c.hidden_size // c.num_attention_heads
    return {
        "params": total,
        "params_gathered": gathered,
        "params_read_per_step": read,
        "weight_bytes_per_step": 4 * read,
        "flops_per_token": 2 * read,
        "kv_bytes_per_position": c.num_hidden_layers * 2 * kv_dim * 4,  # K and V, every layer
        "dtype": str(next(model.parameters()).dtype),
    }


def copy_bandwidth(mb: int, repeats: int) -> dict[str, float]:
    """GB/s of `dst.copy_(src)` on `mb` MB of float32, 2 x size moved (read + write)."""
    src = torch.ones(mb * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # pages touched before timing
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        dst.copy_(src)
        rates.append(2 * src.numel() * 4 / (time.perf_counter() - started) / 1e9)
    return {"best": max(rates), "median": statistics.median(rates)}


def matmul_flops(n: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of an n x n fp32 matmul (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return {"best": max(rates), "median": statistics.median(rates)}


def linear_flops(rows: int, hidden: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of a decode-shaped linear: `rows` x `hidden` into 4 x `hidden` (the MLP's first
    weight; cache-resident here, so it is a ceiling for the shape, not a memory figure)."""
    x, w = torch.randn(rows, hidden), torch.randn(4 * hidden, hidden)
    calls = 50
    torch.nn.functional.linear(x, w)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            torch.nn.functional.linear(x, w)
        rates.append(calls * 2 * rows * hidden * 4 * hidden / (time.perf_counter() - started) / 1e9)
    return {"best": max(rates), "median": statistics.median(rates)}


def make_prompts(n: int, vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(PROMPT_TOKENS[0], PROMPT_TOKENS[1] + 1, (n,), generator=g)
    return [torch.randint(1, vocab, (int(k),), generator=g).tolist() for k in lengths]


class Forwards:
    """Every forward pass of the model: start, end, rows, positions fed, attention width."""

    def __init__(self, model: Any) -> None:
        self.calls: list[tuple[float, float, int, int, int]] = []
        self.pending: dict[int, tuple[float, int, int, int]] = {}
        model.register_forward_pre_hook(self._pre, with_kwargs=True)
        model.register_forward_hook(self._post)

    def _pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        width = ids.shape[1] if mask is None else mask.shape[1]
        self.pending[id(module)] = (time.perf_counter(), ids.shape[0], ids.shape[1], width)

    def _post(self, module: Any, args: tuple, output: Any) -> None:
        started, rows, seq, width = self.pending.pop(id(module))
        self.calls.append((started, time.perf_counter(), rows, seq, width))


def answer_lengths(prompts: list[list[int]], n: int, mixed: bool) -> dict[tuple, int]:
    """New ids per prompt: `n` each, or (mixed) drawn from n/4..n, as real answers vary."""
    g = torch.Generator().manual_seed(2)
    low = max(1, n // 4) if mixed else n
    drawn = torch.randint(low, n + 1, (len(prompts),), generator=g).tolist()
    return {tuple(p): int(k) for p, k in zip(prompts, drawn, strict=True)}


def hf_batch(model: Any, prompts: list[list[int]], n: int) -> list[list[int]]:
    """`model.generate` on left-padded prompts with their attention mask."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return out[:, width:].tolist()


def run_batches(
    call: Callable[[list[list[int]]], list[list[int]]],
    prompts: list[list[int]],
    size: int,
    forwards: Forwards,
) -> dict[str, Any]:
    """`call` on consecutive groups of `size` prompts; each row's ids get the end times of the
    forwards of its group (every row emits one id per forward: no EOS)."""
    ids: list[list[int]] = []
    times: list[list[float]] = []
    started = time.perf_counter()
    for i in range(0, len(prompts), size):
        first = len(forwards.calls)
        got = call(prompts[i : i + size])
        ends = [end for _, end, *_ in forwards.calls[first:]]
        ids += got
        times += [ends[: len(row)] for row in got]
    return {"ids": ids, "times": times, "started": started, "wall": time.perf_counter() - started}


async def run_engine(
    model: Any, prompts: list[list[int]], length: Callable[[list[int]], int], size: int
) -> dict[str, Any]:
    """Every request submitted at once; ids timed as the async iterator yields them."""
    from serving.engine import Engine

    engine = Engine(model, ENDLESS, max_batch_size=size, max_queue=len(prompts))

    async def read(ticket: Any) -> tuple[list[int], list[float]]:
        ids, times = [], []
        async for token in engine.tokens(ticket):
            times.append(time.perf_counter())
            ids.append(token)
        if ticket.end.reason != "length":
            raise RuntimeError(f"request ended with {ticket.end}")
        return ids, times

    try:
        started = time.perf_counter()
        tickets = [engine.submit(p, length(p), 0.0, 3600.0) for p in prompts]
        got = await asyncio.gather(*(read(t) for t in tickets))
        wall = time.perf_counter() - started
    finally:
        engine.close()
    return {
        "ids": [ids for ids, _ in got],
        "times": [times for _, times in got],
        "started": started,
        "wall": wall,
    }


def in_thread(call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)` in a new thread, as the engine decodes in a thread of its own. libgomp (torch's
    OpenMP) spin-waits at full count while it manages no more threads than there are cores,
    and throttles the spin beyond that; on a busy machine the full spin made decode-sized
    matmuls about 3x slower. With the main thread's team alive (`run` starts it), every
    decoding thread's team is beyond the core count: all paths decode under the same policy."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = call(*args)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, name="decode")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def paths(
    model: Any, length: Callable[[list[int]], int], size: int, forwards: Forwards
) -> dict[str, Callable]:
    """Each path over prompts asking `length(prompt)` new ids. A static batch runs to its
    longest answer (HF's `generate` has one length a batch: the rest is cut off and not
    counted); `generate` lets a row leave at its count but the next batch waits for all."""
    from tasks.shared.generation import generate

    def hf(g: list[list[int]]) -> list[list[int]]:
        ns = [length(p) for p in g]
        return [row[:k] for row, k in zip(hf_batch(model, g, max(ns)), ns, strict=True)]

    def ours(g: list[list[int]]) -> list[list[int]]:
        return generate(model, ENDLESS, g, [length(p) for p in g])

    return {
        "hf_one_by_one": lambda ps: in_thread(lambda: run_batches(hf, ps, 1, forwards)),
        "hf_static": lambda ps: in_thread(lambda: run_batches(hf, ps, size, forwards)),
        "engine": lambda ps: asyncio.run(run_engine(model, ps, length, size)),  # its own thread
        "generate": lambda ps: in_thread(lambda: run_batches(ours, ps, size, forwards)),
    }


def measure(run: Callable, prompts: list[list[int]], forwards: Forwards) -> dict[str, Any]:
    """One path over every prompt, with its forward passes split into prefill and decode."""
    first = len(forwards.calls)
    out = run(prompts)
    calls = forwards.calls[first:]
    decode = [c for c in calls if c[3] == 1]
    out["prefill_s"] = sum(end - start for start, end, _, seq, _ in calls if seq > 1)
    out["decode_forward_s"] = sum(end - start for start, end, *_ in decode)
    out["decode_steps"] = [(rows, width) for _, _, rows, _, width in decode]
    out["tokens"] = sum(len(ids) for ids in out["ids"])
    return out


def compare(model: Any, prompts: list[list[int]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Warm-up, then rounds of every path, the order rotated each round."""
    forwards = Forwards(model)
    lengths = answer_lengths(prompts, args.new_tokens, args.lengths == "mixed")
    runs = paths(model, lambda p: lengths[tuple(p)], args.batch, forwards)
    warm = paths(model, lambda p: 4, args.batch, forwards)
    for name, run in warm.items():  # kernels, allocator and the engine's thread warmed up
        run(prompts[:1] if name == "hf_one_by_one" else prompts[: args.batch])
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = list(PATHS)[r % len(PATHS) :] + list(PATHS)[: r % len(PATHS)]
        done = {}
        for name in order:
            done[name] = measure(runs[name], prompts, forwards)
            print(
                f"round {r + 1}/{args.rounds} {name}: {done[name]['wall']:.1f} s, "
                f"{done[name]['tokens'] / done[name]['wall']:.1f} tokens/s",
                flush=True,
            )
        rounds.append(done)
    return rounds  # each round's paths in the order they ran


def summary(
    runs: list[dict[str, Any]], reference: list[list[int]], bounds: dict[str, Any]
) -> dict[str, Any]:
    """One path pooled over rounds, against the bounds."""
    tokens = sum(r["tokens"] for r in runs)
    wall = sum(r["wall"] for r in runs)
    requests = sum(len(r["ids"]) for r in runs)
    prefill = sum(r["prefill_s"] for r in runs)
    decode_wall = wall - prefill
    steps = [s for r in runs for s in r["decode_steps"]]
    rows = sum(s[0] for s in steps)
    decode_tokens = tokens - requests  # each request's first id comes from its prefill
    decode_rate = decode_tokens / decode_wall
    mean_rows = rows / len(steps)
    bw, flops = bounds["bandwidth_gb_s"] * 1e9, bounds["matmul_gflop_s"] * 1e9
    w, kv, f = bounds["weight_bytes"], bounds["kv_bytes_per_position"], bounds["flops_per_token"]
    weights_bound = mean_rows * bw / w
    # Per step: the weights and every row's cache read, or every row's FLOPs, whichever is slower.
    roofline_s = sum(max((w + r * width * kv) / bw, r * f / flops) for r, width in steps)
    ttft, gaps = [], []
    for r in runs:
        for times in r["times"]:
            ttft.append(1000 * (times[0] - r["started"]))
            gaps += [1000 * (b - a) for a, b in itertools.pairwise(times)]
    ttft.sort()
    gaps.sort()
    return {
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "prefill_s": prefill,
        "decode_tokens_per_s": decode_rate,
        "decode_steps": len(steps),
        "rows_per_step": mean_rows,
        "decode_forward_share": sum(r["decode_forward_s"] for r in runs) / decode_wall,
        "weights_bound_tokens_per_s": weights_bound,
        "share_of_weights_bound": decode_rate / weights_bound,
        "roofline_tokens_per_s": rows / roofline_s,
        "share_of_roofline": decode_rate / (rows / roofline_s),
        "ttft_p50_ms": _pct(ttft, 0.5),
        "ttft_p95_ms": _pct(ttft, 0.95),
        "itl_p50_ms": _pct(gaps, 0.5),
        "itl_p95_ms": _pct(gaps, 0.95),
        "same_ids_as_hf_one_by_one": sum(
            a == b for a, b in zip(runs[0]["ids"], reference, strict=True)
        ),
    }


def _pct(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import __version__ as transformers_version
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # generation-config notices on every call
    results: dict[str, Any] = {
        "benchmark": "engine",
        "quick": args.quick,
        "arch": args.arch,
        "rounds": args.rounds,
        "requests": args.requests,
        "new_tokens": args.new_tokens,
        "lengths": args.lengths,
        "batch": args.batch,
        "prompt_tokens": PROMPT_TOKENS,
        "transformers": transformers_version,
    }
    started = time.perf_counter()
    model = build_model(args.arch)
    torch.ones(2**22).add_(1)  # a parallel region: the main thread's OpenMP team (in_thread)
    results["model_build_s"] = time.perf_counter() - started
    results["model"] = weight_facts(model)
    repeats = 5 if args.quick else 10
    hidden = model.config.hidden_size

    def gemms() -> dict[str, Any]:
        return {
            f"linear_{rows}_gflop_s": in_thread(linear_flops, rows, hidden, repeats)
            for rows in sorted({1, args.batch})
        }

    results["copy_mb"], results["hidden"] = args.copy_mb, hidden
    results["machine_before"] = {
        "copy_gb_s": in_thread(copy_bandwidth, args.copy_mb, repeats),
        "matmul_gflop_s": in_thread(matmul_flops, 2048, repeats),
        **gemms(),
    }
    prompts = make_prompts(args.requests, model.config.vocab_size)
    results["prompt_lengths"] = [len(p) for p in prompts]
    rounds = compare(model, prompts, args)
    # Measured again after the paths; the better figure is the machine's (an upper bound).
    results["machine_after"] = {
        "copy_gb_s": in_thread(copy_bandwidth, args.copy_mb, repeats),
        "matmul_gflop_s": in_thread(matmul_flops, 2048, repeats),
        **gemms(),
    }
    m = results["model"]
    both = (results["machine_before"], results["machine_after"])
    bounds = {
        "bandwidth_gb_s": max(x["copy_gb_s"]["best"] for x in both),
        "matmul_gflop_s": max(x["matmul_gflop_s"]["best"] for x in both),
        "weight_bytes": m["weight_bytes_per_step"],
        "kv_bytes_per_position": m["kv_bytes_per_position"],
        "flops_per_token": m["flops_per_token"],
    }
    bounds["single_stream_bandwidth_bound"] = (
        bounds["bandwidth_gb_s"] * 1e9 / bounds["weight_bytes"]
    )
    bounds["compute_bound"] = bounds["matmul_gflop_s"] * 1e9 / bounds["flops_per_token"]
    results["bounds"] = bounds
    reference = rounds[0]["hf_one_by_one"]["ids"]
    results["stats"] = {p: summary([r[p] for r in rounds], reference, bounds) for p in PATHS}
    results["per_round_tokens_per_s"] = [
        {p: r[p]["tokens"] / r[p]["wall"] for p in PATHS} for r in rounds
    ]
    results["order"] = [list(r) for r in rounds]
    return results


def answers(r: dict[str, Any]) -> str:
    n = r["new_tokens"]
    return f"{max(1, n // 4)}-{n} (mixed)" if r.get("lengths") == "mixed" else str(n)


def report(r: dict[str, Any]) -> None:
    m, b, s = r["model"], r["bounds"], r["stats"]
    print(
        f"\nmodel: {r['arch']} from its standard config, random weights, {m['dtype']}: "
        f"{m['params'] / 1e6:.1f}M parameters ({m['params_gathered'] / 1e6:.2f}M in "
        f"gathered embeddings), {m['weight_bytes_per_step'] / 1e6:.0f} MB of weights read per "
        f"decoding step, cache {m['kv_bytes_per_position'] / 1e3:.0f} kB per position and row"
    )
    lengths = r["prompt_lengths"]
    print(
        f"{r['requests']} requests, prompts {min(lengths)}-{max(lengths)} tokens "
        f"(mean {statistics.mean(lengths):.0f}), {answers(r)} new ids each, greedy, "
        f"batch size {r['batch']}, {r['rounds']} round(s); transformers {r['transformers']}"
    )
    before, after = r["machine_before"], r["machine_after"]

    def measured(key: str, stat: str) -> str:
        return f"{before[key][stat]:.1f} / {after[key][stat]:.1f}"

    def best(key: str) -> float:
        return max(before[key]["best"], after[key]["best"])

    _common.print_table(
        [
            "machine, before / after the paths",
            "best",
            "median",
            "per decoded token",
            "bound (best of both), tokens/s",
        ],
        [
            [
                f"copy GB/s ({r['copy_mb']} MB fp32, 2 x size moved)",
                measured("copy_gb_s", "best"),
                measured("copy_gb_s", "median"),
                f"{m['weight_bytes_per_step'] / 1e6:.0f} MB of weights (once per step)",
                f"{b['single_stream_bandwidth_bound']:.1f} x rows a step",
            ],
            [
                "matmul GFLOP/s (2048 x 2048, fp32)",
                measured("matmul_gflop_s", "best"),
                measured("matmul_gflop_s", "median"),
                f"{m['flops_per_token'] / 1e6:.0f} MFLOP (2 x weights)",
                f"{b['compute_bound']:.1f}",
            ],
            *[
                [
                    f"linear GFLOP/s ({rows} x {r['hidden']} -> {4 * r['hidden']}, fp32)",
                    measured(f"linear_{rows}_gflop_s", "best"),
                    measured(f"linear_{rows}_gflop_s", "median"),
                    f"{m['flops_per_token'] / 1e6:.0f} MFLOP",
                    f"{best(f'linear_{rows}_gflop_s') * 1e9 / m['flops_per_token']:.1f}",
                ]
                for rows in sorted({1, r["batch"]})
            ],
        ],
    )
    small = best(f"linear_{r['batch']}_gflop_s") / best("matmul_gflop_s")
    print(
        f"the bandwidth and matmul bounds meet at "
        f"{b['compute_bound'] / b['single_stream_bandwidth_bound']:.1f} rows a step (below: "
        f"bandwidth-bound, above: compute-bound); a linear of {r['batch']} rows runs at "
        f"{100 * small:.0f} % of the 2048 matmul's GFLOP/s"
    )
    one, static = s["hf_one_by_one"], s["hf_static"]
    print("\nthroughput (all requests arrive at once; ratios against the HF paths of this run):")
    _common.print_table(
        [
            "path",
            "rows/step",
            "tokens/s",
            "÷ HF 1-by-1",
            f"÷ HF static b{r['batch']}",
            "decode tokens/s",
            "decode ÷ HF 1-by-1",
            f"decode ÷ HF static b{r['batch']}",
            "prefill s",
            "wall s",
            "ids = HF 1-by-1",
        ],
        [
            [
                p,
                x["rows_per_step"],
                x["tokens_per_s"],
                x["tokens_per_s"] / one["tokens_per_s"],
                x["tokens_per_s"] / static["tokens_per_s"],
                x["decode_tokens_per_s"],
                x["decode_tokens_per_s"] / one["decode_tokens_per_s"],
                x["decode_tokens_per_s"] / static["decode_tokens_per_s"],
                x["prefill_s"],
                x["wall_s"],
                f"{x['same_ids_as_hf_one_by_one']}/{r['requests']}",
            ]
            for p, x in s.items()
        ],
    )
    print("\ndecode tokens/s against the bounds at each path's rows per step:")
    _common.print_table(
        [
            "path",
            "rows/step",
            "decode tokens/s",
            "bandwidth bound (weights)",
            "share",
            "roofline (weights + cache, FLOPs)",
            "share",
            "in model forward",
        ],
        [
            [
                p,
                x["rows_per_step"],
                x["decode_tokens_per_s"],
                x["weights_bound_tokens_per_s"],
                f"{100 * x['share_of_weights_bound']:.0f} %",
                x["roofline_tokens_per_s"],
                f"{100 * x['share_of_roofline']:.0f} %",
                f"{100 * x['decode_forward_share']:.0f} %",
            ]
            for p, x in s.items()
        ],
    )
    print("\nlatency per request, ms (TTFT from the moment every request arrived):")
    _common.print_table(
        ["path", "TTFT p50", "TTFT p95", "inter-token p50", "inter-token p95"],
        [
            [p, x["ttft_p50_ms"], x["ttft_p95_ms"], x["itl_p50_ms"], x["itl_p95_ms"]]
            for p, x in s.items()
        ],
    )
    per_round = r["per_round_tokens_per_s"]
    for base in ("hf_one_by_one", "hf_static"):
        ratios = [row["engine"] / row[base] for row in per_round]
        print(f"engine / {base} tokens/s per round: " + ", ".join(f"{x:.2f}" for x in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 32 new ids a request")
    parser.add_argument("--rounds", type=int, help="rounds over the four paths (3)")
    parser.add_argument("--requests", type=int, default=16, help="prompts a path a round (16)")
    parser.add_argument("--new-tokens", type=int, help="new ids a request, the most (64)")
    parser.add_argument(
        "--lengths",
        choices=("mixed", "fixed"),
        default="mixed",
        help="mixed: each request asks for N/4..N new ids (default); fixed: N each",
    )
    parser.add_argument("--batch", type=int, default=8, help="batch size B of every path (8)")
    parser.add_argument(
        "--arch", choices=("gpt2", "llama"), default="gpt2", help="model config (gpt2)"
    )
    parser.add_argument("--copy-mb", type=int, default=512, help="copy benchmark size (512)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.new_tokens = args.new_tokens or (32 if args.quick else 64)
    torch.set_num_threads(THREADS)
    info = _common.machine()
    started = time.perf_counter()
    results = run(args)
    results["run_s"] = time.perf_counter() - started
    print()
    _common.print_machine(info)
    report(results)
    print(f"run time {results['run_s']:.0f} s (torch.set_num_threads({THREADS}))")
    _common.write_json(args.json, {"machine": info, **results})


if __name__ == "__main__":
    main()
