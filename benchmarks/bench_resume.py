"""Resuming a failed nightly: the re-run after a failure in compression against a full nightly,
in the same run.

Three nightly runs (`flows.nightly.nightly_pipeline`, every stage a sub-flow, against the test
harness's Prefect server, started and warmed before any timing), no canary (it needs the serving
app):

- warm-up (untimed): the --quick slice in a state folder of its own, so that the process's
  one-time costs (imports, model loads, the first Ray Train run, the first quantization) fall
  on no timed run;
- failed: in a fresh state folder, with compression parameters that make compression raise
  after fine-tuning finished (a distilled student with more layers than its teacher);
- resumed: the same nightly started again in that state folder with the fixed (the defaults')
  compression parameters: ingest, embed and fine-tuning come from the cache (checked: their task
  runs are `Cached`), compression and promotion run;
- full: the same fixed nightly in another fresh state folder: every stage computed.

Goal: resumed wall time < 0.30 x full. Each run records the load average before and after it:
other work on the machine slows whichever run it overlaps.

    python benchmarks/bench_resume.py [--quick] [--steps N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any
from uuid import UUID

import _common

GOAL = 0.30
STAGES = ["ingest", "embed", "finetune", "compress", "promote"]
STAGE_TASKS = dict(zip(STAGES[:4], ["ingest_source", "index_snapshot", "finetune_task",
                                    "compress_task"], strict=True))  # fmt: skip


def nightly_params(quick: bool, steps: int | None) -> Any:
    """The embedded defaults (the whole demo corpus, 60 LoRA steps, the seven default
    compressions), or with --quick the orchestration benchmark's slice (10 pydoc topics, 20
    steps on short sequences)."""
    from flows.nightly import NightlyParams
    from tasks.finetune.params import FinetuneParams
    from tasks.ingest.params import IngestParams

    if not quick:
        finetune = FinetuneParams() if steps is None else FinetuneParams(max_steps=steps)
        return NightlyParams(finetune=finetune, canary=None)
    steps = steps or 20
    return NightlyParams(
        ingest=IngestParams(demo_topics=_common.QUICK_TOPICS, demo_modules=[]),
        finetune=FinetuneParams(max_steps=steps, checkpoint_every=steps, batch_size=4, seq_len=64),
        canary=None,
    )


async def _task_states(parent: UUID) -> dict[str, str]:
    """The state of each stage's main task run in a nightly run (Completed, Cached, Failed)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    async with get_client() as client:
        children = FlowRunFilterParentFlowRunId(any_=[parent])
        subflows = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=children)
        )
        ids = TaskRunFilterFlowRunId(any_=[r.id for r in subflows])
        runs = await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=ids))
    states = {t.name.rsplit("-", 1)[0]: t.state_name for t in runs}
    return {stage: states.get(name, "not run") for stage, name in STAGE_TASKS.items()}


def one_run(label: str, params: Any, should_fail: bool = False) -> dict[str, Any]:
    from flows.nightly import nightly_pipeline

    load, started = os.getloadavg()[0], time.perf_counter()
    state = nightly_pipeline(params, return_state=True)
    seconds = time.perf_counter() - started
    load = (round(load, 2), round(os.getloadavg()[0], 2))
    if state.is_failed() != should_fail:
        raise RuntimeError(f"the {label} nightly ended {state.name}: {state.message}")
    tasks = asyncio.run(_task_states(state.state_details.flow_run_id))
    stages = {} if should_fail else {s.stage: s.wall_s for s in state.result().usage}
    print(f"{label}: {seconds:.1f} s, {tasks}, load average {load}", flush=True)
    return {"run": label, "seconds": seconds, "stages": stages, "tasks": tasks, "load": load}


def run(quick: bool, steps: int | None) -> dict[str, Any]:
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from tasks.clients.ray_cluster import ensure_ray
    from tasks.compress.params import CompressParams
    from tasks.shared.settings import get_settings

    params = nightly_params(quick, steps)
    broken = params.with_stages(compress=CompressParams(methods=["distill"], student_layers=99))
    ensure_ray(get_settings())  # ~5 s, once per process: part of no run
    with prefect_test_harness(server_startup_timeout=120):
        flow(lambda: None, name="warm-up")()  # server, client and database warm
        with _common.fresh_home("bench-resume-warm-up"):
            one_run("warm-up (quick slice)", nightly_params(quick=True, steps=None))
        with _common.fresh_home("bench-resume"):
            failed = one_run("failed in compress", broken, should_fail=True)
            resumed = one_run("resumed", params)
        with _common.fresh_home("bench-resume-full"):
            full = one_run("full", params)
    reused = all(resumed["tasks"][s] == "Cached" for s in ("ingest", "embed", "finetune"))
    ratio = resumed["seconds"] / full["seconds"]
    return {
        "benchmark": "resume",
        "configuration": "quick" if quick else "defaults",
        "finetune_steps": params.finetune.max_steps,
        "demo_topics": len(params.ingest.demo_topics) if params.ingest.demo_topics else "all",
        "compress_methods": list(params.compress.methods),
        "runs": [failed, resumed, full],
        "full_s": round(full["seconds"], 2),
        "resumed_s": round(resumed["seconds"], 2),
        "ratio_resumed_to_full": round(ratio, 3),
        "stages_reused": reused,
        "goal": f"< {GOAL}",
        "passed": reused and ratio < GOAL,
    }


def print_results(r: dict[str, Any]) -> None:
    rows = []
    for x in r["runs"]:
        stages = [
            f"{x['stages'][s]:.2f} ({x['tasks'].get(s, 'ran')})" if s in x["stages"] else "-"
            for s in STAGES
        ]
        outside = x["seconds"] - sum(x["stages"].values()) if x["stages"] else "-"
        load = f"{x['load'][0]} → {x['load'][1]}"
        rows.append([x["run"], x["seconds"], *stages, outside, load])
    headers = ["run", "wall s", *[f"{s} s" for s in STAGES], "outside stages s", "load average"]
    _common.print_table(headers, rows)
    verdict = "PASS" if r["passed"] else "FAIL"
    print(
        f"resumed / full: {r['resumed_s']} s / {r['full_s']} s = {r['ratio_resumed_to_full']} "
        f"(goal < {GOAL}; ingest, embed and fine-tuning reused: {r['stages_reused']}) {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 pydoc topics, 20 LoRA steps")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default: the nightly's)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    info = _common.machine()
    r = run(args.quick, args.steps)
    print()
    _common.print_machine(info)
    print(
        f"nightly without canary ({r['configuration']}): {r['demo_topics']} pydoc topics, "
        f"{r['finetune_steps']} LoRA steps, compress {' + '.join(r['compress_methods'])}"
    )
    print_results(r)
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
