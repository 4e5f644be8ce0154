"""Compression: every method against the uncompressed fine-tuned model, in the same run.

The default pipeline's model (the from-scratch Llama, LoRA fine-tuned on the demo corpus) is
compressed by every method through the compress stage itself, so each candidate is saved,
reloaded from disk and measured the same way: weights on disk, CPU latency per generated token
(p50, greedy decoding with the KV cache), tokens/s and held-out perplexity. Pruning and low-rank
are run twice, without and with a recovery fine-tune. Goals for dynamic int8 on this CPU:
size <= 0.35, latency <= 0.7, perplexity change <= 3%.

The default model is embedding-dominated (vocab 8000 x 128 is over half its weights) and tiny,
so the same int8 kernels are also timed on a linear-dominated shape (hidden 512, 8 layers).

    python benchmarks/bench_compress.py [--quick] [--recovery-steps N] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, get_args

import _common
import torch

GOALS = {"size": 0.35, "latency": 0.7, "perplexity": 0.03}


def finetuned_run(settings: Any, quick: bool) -> str:
    from tasks.finetune.params import FinetuneParams
    from tasks.finetune.trainer import finetune
    from tasks.ingest.documents import ingest_folder
    from tasks.ingest.params import IngestParams

    root = _common.write_demo_corpus(settings, quick)
    snapshot = ingest_folder(root, IngestParams(), settings).snapshot_id
    steps = 20 if quick else 60
    return finetune(FinetuneParams(snapshot_id=snapshot, max_steps=steps), settings).run_id


def compress_all(settings: Any, run_id: str, recovery: int, quick: bool) -> Any:
    from tasks.compress.candidates import compress
    from tasks.compress.params import CompressParams, Method

    methods = list(get_args(Method))  # every method the stage knows
    plain = compress(
        CompressParams(
            source_run_id=run_id,
            methods=methods,
            distill_steps=20 if quick else 60,
            new_tokens=64,
            answer_gate={"enabled": False},  # the methods' size, speed and perplexity only
        ),
        settings,
    )
    recovered = compress(
        CompressParams(
            source_run_id=run_id,
            methods=["magnitude", "structured", "lowrank"],
            recovery_steps=recovery,
            new_tokens=64,
            answer_gate={"enabled": False},
        ),
        settings,
    )
    return plain, recovered


def interleaved_latency(
    folders: dict[str, str], prompt: torch.Tensor, rounds: int = 12
) -> dict[str, float]:
    """ms/token p50 of each model, measured in alternation, round after round, so that whatever
    else the machine does falls on all of them alike (the stage measures one after another)."""
    from tasks.compress.measure import decode_latency
    from tasks.shared.candidates import load_candidate

    models = {name: load_candidate(Path(folder)) for name, folder in folders.items()}
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            samples[name].append(decode_latency(model, prompt, new_tokens=32, repeats=1)[0])
    return {name: statistics.median(values) for name, values in samples.items()}


def linear_dominated(repeats: int = 64) -> dict[str, float]:
    """The same int8 kernels on a Llama whose weights are mostly in linear layers."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tasks.compress.measure import decode_latency
    from tasks.compress.methods.quantize import quantize_dynamic_int8

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=8000,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        tie_word_embeddings=True,
    )
    fp32 = LlamaForCausalLM(config).eval()
    int8 = LlamaForCausalLM(config).eval()
    int8.load_state_dict(fp32.state_dict())
    quantize_dynamic_int8(int8)
    prompt = torch.randint(0, 8000, (1, 32))
    batch = torch.randint(0, 8000, (8, 128))
    out: dict[str, float] = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        out[f"{name}_ms_per_token"], _ = decode_latency(model, prompt, repeats, repeats=2)
        with torch.inference_mode():
            model(input_ids=batch)
            took = []
            for _ in range(3):
                started = time.perf_counter()
                logits = model(input_ids=batch).logits
                took.append(time.perf_counter() - started)
        out[f"{name}_batch_s"] = statistics.median(took)
        out[f"{name}_logits"] = logits
    reference, quantized = out.pop("fp32_logits"), out.pop("int8_logits")
    out["relative_logit_error"] = float((quantized - reference).norm() / reference.norm())
    out["top1_agreement"] = float((quantized.argmax(-1) == reference.argmax(-1)).float().mean())
    return out


def rows_of(report: Any) -> list[list[Any]]:
    base = report.baseline
    return [
        [
            row.name,
            row.size_bytes / base.size_bytes,
            row.parameters / base.parameters,
            row.latency_ms_p50 / base.latency_ms_p50,
            row.tokens_per_s,
            row.perplexity / base.perplexity - 1,
            "baseline" if row is base else "; ".join(row.broken) or "passes",
        ]
        for row in [base, *report.candidates]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 topics, fewer steps")
    parser.add_argument("--recovery-steps", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    info = _common.machine()
    _common.print_machine(info)
    with _common.fresh_home("compress") as settings:
        run_id = finetuned_run(settings, args.quick)
        plain, recovered = compress_all(settings, run_id, args.recovery_steps, args.quick)
        folders = {"fp32": plain.baseline.folder} | {
            row.name: row.folder
            for row in plain.candidates
            if row.method in ("bf16", "fp16", "int8_dynamic", "int8_static")
        }
        prompt = torch.randint(0, 1000, (1, 32), generator=torch.Generator().manual_seed(0))
        alternating = interleaved_latency(folders, prompt)
    headers = ["candidate", "size", "weights held", "latency", "tokens/s", "perplexity", "gate"]
    base = plain.baseline
    print(
        f"\nuncompressed (base + LoRA adapter): {base.size_bytes / 2**20:.2f} MiB, "
        f"{base.latency_ms_p50:.2f} ms/token p50, perplexity {base.perplexity:.1f}; "
        "ratios below are candidate / uncompressed"
    )
    _common.print_table(headers, rows_of(plain))
    print(f"\nwith a {args.recovery_steps}-step recovery fine-tune (Ray Train):")
    _common.print_table(headers, rows_of(recovered)[1:])

    print("\nms/token p50 measured in alternation, against the merged fp32 model:")
    _common.print_table(
        ["model", "ms/token p50", "latency ratio"],
        [[name, ms, ms / alternating["fp32"]] for name, ms in alternating.items()],
    )
    int8 = next(r for r in plain.candidates if r.name == "int8-dynamic")
    ratios = {
        "size": int8.size_bytes / base.size_bytes,
        "latency": alternating["int8-dynamic"] / alternating["fp32"],
        "perplexity": int8.perplexity / base.perplexity - 1,
    }
    for key, goal in GOALS.items():
        verdict = "PASS" if ratios[key] <= goal else "FAIL"
        print(f"dynamic int8 {key}: {ratios[key]:.3f} (goal <= {goal}) {verdict}")
    big = linear_dominated()
    print(
        f"\nlinear-dominated Llama (h512, 8 layers, random weights): int8 / fp32 latency "
        f"{big['int8_ms_per_token'] / big['fp32_ms_per_token']:.2f} per token "
        f"({big['fp32_ms_per_token']:.2f} -> {big['int8_ms_per_token']:.2f} ms), "
        f"{big['int8_batch_s'] / big['fp32_batch_s']:.2f} on an 8x128 batch; "
        f"relative logit error {big['relative_logit_error']:.3f}, "
        f"top-1 agreement {big['top1_agreement']:.3f}"
    )
    _common.write_json(
        args.json,
        {
            "machine": info,
            "int8_dynamic": ratios,
            "plain": plain.model_dump(),
            "recovered": recovered.model_dump(),
            "linear_dominated": big,
            "alternating_ms_per_token": alternating,
        },
    )


if __name__ == "__main__":
    main()
