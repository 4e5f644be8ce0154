"""Orchestration overhead: the nightly pipeline under Prefect against the same stage functions
called in a plain script, in the same run.

Both sides run the nightly's stages (ingest → embed → fine-tune → compress → promote; no canary,
which needs the serving app) with the same small parameters, each run in a fresh state folder:

- prefect: `flows.nightly.nightly_pipeline(params)` called in this process against a Prefect
  server (the test harness's SQLite server, started and warmed before any timing): every stage
  a sub-flow with its task runs, states, logs and artifacts;
- plain: the functions those tasks wrap (`write_python_docs`, `ingest_folder`, `embed_snapshot`,
  `finetune`, `compress`, `register_candidate`, `evaluate_models`, `decide_promotion`,
  `apply_decision`), in the same order with the same parameters, and no reports.

One untimed warm-up of each side, then the sides alternate (plain, prefect, prefect, plain, …);
each adjacent pair gives a ratio, and the verdict is on their median. Local Ray is started once,
before the warm-ups. Goal: prefect wall time <= 1.05 x plain.

    python benchmarks/bench_orchestration.py [--pairs N] [--steps N] [--methods M ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import _common

GOAL = 1.05
STAGES = ["ingest", "embed", "finetune", "compress", "promote"]
SUBFLOWS = dict(
    zip(
        [
            "ingest_documents",
            "embed_documents",
            "finetune_model",
            "compress_model",
            "promote_model",
        ],
        STAGES,
        strict=True,
    )
)


def nightly_params(steps: int, methods: list[str] | None) -> Any:
    from flows.nightly import NightlyParams
    from tasks.compress.params import CompressParams
    from tasks.finetune.params import FinetuneParams
    from tasks.ingest.params import IngestParams

    return NightlyParams(
        ingest=IngestParams(demo_topics=_common.QUICK_TOPICS, demo_modules=[]),
        finetune=FinetuneParams(max_steps=steps, checkpoint_every=steps, batch_size=4, seq_len=64),
        compress=CompressParams(methods=methods) if methods else CompressParams(),
        canary=None,
    )


@contextmanager
def timed(times: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    times[stage] = time.perf_counter() - started


def plain_nightly(params: Any, settings: Any) -> dict[str, float]:
    """The nightly's recipe with the plain functions: what a script without Prefect would do."""
    from tasks.clients import Clients
    from tasks.clients.embedder import load_embedder
    from tasks.clients.feature_store import ChunkIndex
    from tasks.compress.candidates import compress
    from tasks.embed.index import embed_snapshot
    from tasks.finetune.trainer import finetune
    from tasks.ingest.demo_corpus import write_python_docs
    from tasks.ingest.documents import ingest_folder
    from tasks.promote.answers import evaluate_answers
    from tasks.promote.params import Candidate
    from tasks.promote.registration import (
        apply_decision,
        decide_promotion,
        evaluate_models,
        register_candidate,
    )

    times: dict[str, float] = {}
    with timed(times, "ingest"):
        root = settings.corpus_dir / "python-docs"
        write_python_docs(root, params.ingest.demo_topics, params.ingest.demo_modules)
        ingested = ingest_folder(root, params.ingest, settings)
    snapshot = {"snapshot_id": ingested.snapshot_id}
    with timed(times, "embed"), ChunkIndex(settings) as index:
        index.apply()
        embed_params = params.embed.model_copy(update=snapshot)
        embed_snapshot(embed_params, settings, index, load_embedder(embed_params.model))
    with timed(times, "finetune"):
        tuned = finetune(params.finetune.model_copy(update=snapshot), settings)
    with timed(times, "compress"):
        update = {"source_run_id": tuned.run_id}
        compressed = compress(params.compress.model_copy(update=update), settings)
    with timed(times, "promote"):
        candidate, name = Candidate.from_report(compressed), params.promote.model_name
        registered = register_candidate(candidate, name, Clients(settings), "plain call")
        evaluation = evaluate_models(candidate, registered, Clients(settings))
        if params.promote.answer_gate:  # as the flow's task does
            answers = evaluate_answers(candidate, registered, params.promote, Clients(settings))
            evaluation = evaluation.model_copy(update={"answers": answers})
        decision = decide_promotion(
            evaluation, candidate.gate_passed, params.promote.min_improvement
        )
        apply_decision(registered, evaluation, decision, None, Clients(settings), "plain call")
    return times


def prefect_nightly(params: Any) -> tuple[dict[str, float], UUID]:
    from flows.nightly import nightly_pipeline

    times: dict[str, float] = {}
    with timed(times, "total"):
        state = nightly_pipeline(params, return_state=True)
    if not state.is_completed():
        raise RuntimeError(f"the nightly run ended {state.name}: {state.message}")
    return times, state.state_details.flow_run_id


async def _breakdown(since: datetime, parent: UUID) -> dict[str, float]:
    """Wall seconds of each stage's sub-flow, of the `publish_*` report tasks and of all other
    task runs (`work`: the bodies wrap the plain side's functions), as the server recorded
    them (start to end)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        TaskRunFilter,
        TaskRunFilterStartTime,
    )

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since))
        )
        tasks = await client.read_task_runs(
            task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=since))
        )
        names = {r.flow_id: (await client.read_flow(r.flow_id)).name for r in runs}
    out = {SUBFLOWS[names[r.flow_id]]: _wall(r) for r in runs if names[r.flow_id] in SUBFLOWS}
    out["reports"] = sum(_wall(t) for t in tasks if t.name.startswith("publish_"))
    # The parent's own task runs stand for its sub-flows (Prefect 3 tracks a sub-flow call so).
    work = [t for t in tasks if t.flow_run_id != parent and not t.name.startswith("publish_")]
    out["work"] = sum(_wall(t) for t in work)
    return out


def _wall(run: Any) -> float:
    return (run.end_time - run.start_time).total_seconds() if run.end_time else 0.0


def one_run(side: str, params: Any) -> dict[str, Any]:
    with _common.fresh_home(f"bench-orch-{side}") as settings:
        if side == "plain":
            times = plain_nightly(params, settings)
            return {"side": side, "seconds": sum(times.values()), "stages": times}
        since = datetime.now(UTC)
        times, flow_run_id = prefect_nightly(params)
        stages = asyncio.run(_breakdown(since, flow_run_id))
        return {"side": side, "seconds": times["total"], "stages": stages}


def run(pairs: int, steps: int, methods: list[str] | None) -> dict[str, Any]:
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from tasks.clients.ray_cluster import ensure_ray
    from tasks.shared.settings import get_settings

    params = nightly_params(steps, methods)
    methods = list(params.compress.methods)
    ensure_ray(get_settings())  # ~5 s, once per process: not part of either side
    with prefect_test_harness(server_startup_timeout=120):
        flow(lambda: None, name="warm-up")()  # server, client and database warm
        for side in ("plain", "prefect"):
            warm = one_run(side, params)
            print(f"warm-up {side}: {warm['seconds']:.1f} s", flush=True)
        order = [
            s for i in range(pairs) for s in (("plain", "prefect"), ("prefect", "plain"))[i % 2]
        ]
        runs = []
        for side in order:
            runs.append(one_run(side, params))
            print(f"{side}: {runs[-1]['seconds']:.1f} s", flush=True)
    return summarise(runs, pairs, steps, methods)


def summarise(runs: list[dict[str, Any]], pairs: int, steps: int, methods: list[str]) -> dict:
    """Ratios per adjacent pair (the machine's drift hits both alike) and of the medians; the
    time the Prefect run spends outside its stage sub-flows is orchestration alone."""
    for r in runs:
        r["outside_stages_s"] = r["seconds"] - sum(r["stages"].get(s, 0.0) for s in STAGES)
    by_side = {side: [r for r in runs if r["side"] == side] for side in ("plain", "prefect")}
    medians = {side: statistics.median(r["seconds"] for r in rs) for side, rs in by_side.items()}
    pair_ratios = [
        next(r for r in pair if r["side"] == "prefect")["seconds"]
        / next(r for r in pair if r["side"] == "plain")["seconds"]
        for pair in zip(runs[::2], runs[1::2], strict=True)
    ]
    ratio = statistics.median(pair_ratios)
    in_run = [r["seconds"] / r["stages"]["work"] for r in by_side["prefect"]]
    return {
        "benchmark": "orchestration",
        "pairs": pairs,
        "finetune_steps": steps,
        "compress_methods": methods,
        "runs": runs,
        "plain_median_s": round(medians["plain"], 2),
        "prefect_median_s": round(medians["prefect"], 2),
        "ratio_of_medians": round(medians["prefect"] / medians["plain"], 3),
        "pair_ratios": [round(x, 3) for x in pair_ratios],
        "ratio_prefect_to_plain": round(ratio, 3),
        "prefect_outside_stages_median_s": round(
            statistics.median(r["outside_stages_s"] for r in by_side["prefect"]), 2
        ),
        "in_run_ratios": [round(x, 3) for x in in_run],
        "in_run_ratio_median": round(statistics.median(in_run), 3),
        "goal": f"<= {GOAL} (median of the pairs' ratios)",
        "passed": ratio <= GOAL,
    }


def print_results(r: dict[str, Any]) -> None:
    rows = []
    for n, x in enumerate(r["runs"], start=1):
        stages = [x["stages"].get(s, 0.0) for s in STAGES]
        is_prefect = x["side"] == "prefect"
        extra = [x["stages"][k] for k in ("work", "reports")] if is_prefect else []
        extra += [x["outside_stages_s"]] if is_prefect else []
        rows.append([f"{n} {x['side']}", x["seconds"], *stages, *(extra or ["-"] * 3)])
    headers = ["in task bodies s", "in reports s", "outside stages s"]
    _common.print_table(["run", "wall s", *[f"{s} s" for s in STAGES], *headers], rows)
    verdict = "PASS" if r["passed"] else "FAIL"
    print(
        f"medians: plain {r['plain_median_s']} s, prefect {r['prefect_median_s']} s "
        f"(ratio {r['ratio_of_medians']}); Prefect outside its stages: "
        f"{r['prefect_outside_stages_median_s']} s (median)"
    )
    print(
        f"ratio prefect/plain per pair: {r['pair_ratios']}; median {r['ratio_prefect_to_plain']} "
        f"(goal <= {GOAL}) {verdict}"
    )
    print(
        f"within each Prefect run, wall / time in task bodies: {r['in_run_ratios']}; "
        f"median {r['in_run_ratio_median']} (no drift between runs in this one)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="timed runs of each side")
    parser.add_argument("--steps", type=int, default=20, help="fine-tuning steps per run")
    parser.add_argument("--methods", nargs="+", help="compression methods (default: the nightly's)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    info = _common.machine()
    r = run(args.pairs, args.steps, args.methods)
    print()
    _common.print_machine(info)
    print(
        f"nightly without canary: {len(_common.QUICK_TOPICS)} pydoc topics, "
        f"{args.steps} LoRA steps, compress {' + '.join(r['compress_methods'])}; "
        "fresh state each run"
    )
    print_results(r)
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
