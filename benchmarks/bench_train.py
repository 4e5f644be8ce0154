"""Fine-tuning throughput: the Ray Train path against a plain PyTorch loop, in the same run.

Same base model (the from-scratch Llama), LoRA settings, packed data, batch size and number of
steps. Measured:
- tokens/s inside the training loop (from the second step): Ray Train with 1 worker on 1 CPU vs
  the plain loop on 1 thread (goal >= 0.9), and the same on 2 CPUs / 2 threads;
- Ray Train with 2 workers x 1 CPU (DDP over gloo) vs 1 worker: global tokens/s;
- time to first step: Ray start-up and `TorchTrainer.fit` overhead vs the plain loop's model
  load and first step.

    python benchmarks/bench_train.py [--quick] [--steps N] [--json PATH]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _common
import torch

GOAL = 0.9


def plain_loop(plan: Any, params: Any) -> dict[str, float]:
    from tasks.finetune.loop import load_model, train_step

    started = time.perf_counter()
    torch.manual_seed(params.seed)
    model = load_model(str(plan.base_path), params.method, params.lora.model_dump())
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=params.learning_rate
    )
    rows = torch.from_numpy(plan.data.train)
    loop_start, first_step, tokens = 0.0, 0.0, 0
    for step in range(params.max_steps):
        i = (step * params.batch_size) % (len(rows) - params.batch_size)
        batch = rows[i : i + params.batch_size]
        train_step(model, optimizer, [batch], amp=False)
        if step == 0:  # as in the Ray worker: throughput from the second step
            first_step = time.perf_counter() - started
            loop_start = time.perf_counter()
        else:
            tokens += batch.numel()
    return {
        "tokens_per_s": tokens / (time.perf_counter() - loop_start),
        "time_to_first_step_s": first_step,
    }


def ray_run(params: Any, settings: Any) -> dict[str, float]:
    from tasks.clients.ray_cluster import ensure_ray
    from tasks.finetune.trainer import finetune

    t0 = time.perf_counter()
    ensure_ray(settings)
    ray_start = time.perf_counter() - t0
    t1 = time.perf_counter()
    report = finetune(params, settings)
    wall = time.perf_counter() - t1
    per_step_tokens = params.batch_size * params.seq_len
    loop_seconds = (report.steps - 1) * per_step_tokens / report.tokens_per_s
    return {
        "tokens_per_s_per_worker": report.tokens_per_s,
        "tokens_per_s": report.tokens_per_s * report.world_size,
        "world_size": report.world_size,
        "ray_start_s": ray_start,
        "finetune_wall_s": wall,
        "outside_loop_s": wall - loop_seconds,
    }


def run(quick: bool, steps: int, batch_size: int, seq_len: int) -> dict[str, Any]:
    from tasks.finetune.params import FinetuneParams
    from tasks.finetune.prepare import prepare
    from tasks.ingest.documents import ingest_folder
    from tasks.ingest.params import IngestParams

    with _common.fresh_home("train") as settings:
        root = _common.write_demo_corpus(settings, quick=quick)
        snapshot = ingest_folder(root, IngestParams(), settings).snapshot_id
        base = FinetuneParams(
            snapshot_id=snapshot,
            max_steps=steps,
            checkpoint_every=steps,
            batch_size=batch_size,
            seq_len=seq_len,
        )
        plan = prepare(base, settings)
        torch.set_num_threads(1)
        plain1 = plain_loop(plan, base)
        torch.set_num_threads(2)
        plain2 = plain_loop(plan, base)
        one1 = ray_run(base, settings)
        one2 = ray_run(base.model_copy(update={"cpus_per_worker": 2}), settings)
        two = ray_run(base.model_copy(update={"num_workers": 2, "cpus_per_worker": 1}), settings)
    ratio1 = one1["tokens_per_s"] / plain1["tokens_per_s"]
    ratio2 = one2["tokens_per_s"] / plain2["tokens_per_s"]
    return {
        "benchmark": "train",
        "quick": quick,
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "train_sequences": len(plan.data.train),
        "plain_1_thread": plain1,
        "plain_2_threads": plain2,
        "ray_1_worker_1_cpu": one1,
        "ray_1_worker_2_cpus": one2,
        "ray_2_workers_1_cpu": two,
        "ratio_ray_to_plain_1_cpu": round(ratio1, 3),
        "ratio_ray_to_plain_2_cpus": round(ratio2, 3),
        "speedup_2_workers_vs_1_worker_2_cpus": round(
            two["tokens_per_s"] / one2["tokens_per_s"], 3
        ),
        "speedup_2_workers_vs_1_worker_1_cpu": round(two["tokens_per_s"] / one1["tokens_per_s"], 3),
        "goal": f"ray/plain tokens/s >= {GOAL}",
        "passed": bool(ratio1 >= GOAL),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 steps")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 60)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    info = _common.machine()
    r = run(args.quick, args.steps or (10 if args.quick else 60), args.batch_size, args.seq_len)
    print()
    _common.print_machine(info)
    rows = [
        ["plain loop, 1 thread", r["plain_1_thread"], "time_to_first_step_s"],
        ["plain loop, 2 threads", r["plain_2_threads"], "time_to_first_step_s"],
        ["Ray Train, 1 worker x 1 CPU", r["ray_1_worker_1_cpu"], "outside_loop_s"],
        ["Ray Train, 1 worker x 2 CPUs", r["ray_1_worker_2_cpus"], "outside_loop_s"],
        ["Ray Train, 2 workers x 1 CPU (DDP)", r["ray_2_workers_1_cpu"], "outside_loop_s"],
    ]
    _common.print_table(
        ["path", "tokens/s", "outside the loop s"],
        [[name, round(m["tokens_per_s"]), m[key]] for name, m, key in rows],
    )
    print(
        f"Ray start-up {r['ray_1_worker_1_cpu']['ray_start_s']:.2f} s; ray/plain tokens/s: "
        f"{r['ratio_ray_to_plain_1_cpu']} on 1 CPU (goal >= {GOAL}), "
        f"{r['ratio_ray_to_plain_2_cpus']} on 2 CPUs; 2 workers vs 1 worker x 2 CPUs: "
        f"{r['speedup_2_workers_vs_1_worker_2_cpus']}, vs 1 worker x 1 CPU: "
        f"{r['speedup_2_workers_vs_1_worker_1_cpu']}"
    )
    print("PASS" if r["passed"] else "FAIL")
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
