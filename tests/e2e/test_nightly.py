import asyncio
import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
)
from prefect.client.schemas.sorting import FlowRunSort
from ray import serve

from flows.nightly import NightlyParams, nightly_pipeline
from tasks.canary.params import CanaryParams, ThresholdParams
from tasks.clients.retrieval import search
from tasks.compress.params import AnswerGateParams, CompressParams
from tasks.embed.params import EmbedParams
from tasks.finetune.params import FinetuneParams
from tasks.ingest.params import IngestParams
from tasks.promote.params import PromoteParams
from tasks.shared.reports import export_run_reports
from tasks.shared.settings import Settings

from worlds import free_port

pytestmark = pytest.mark.e2e

EXPECTED_ARTIFACTS = {
    "ingest-report",
    "embed-report",
    "finetune-report",
    "compress-report",
    "promotion-report",
    "nightly-summary",
    "nightly-details",
}
TOPICS = ["try", "with", "for", "while", "function", "class", "import", "lambda", "if"]


async def artifact_keys() -> set[str]:
    async with get_client() as client:
        keys = ArtifactFilterKey(any_=[*EXPECTED_ARTIFACTS])
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=keys))
    return {a.key for a in artifacts}


async def latest_nightly_run_id() -> str:
    async with get_client() as client:
        [run] = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["nightly_pipeline"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    return str(run.id)


async def summary_table() -> list[dict]:
    """The rows of the latest `nightly-details` table artifact, as the UI shows them."""
    async with get_client() as client:
        keys = ArtifactFilterKey(any_=["nightly-details"])
        found = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=keys))
    data = found[0].data
    return json.loads(data) if isinstance(data, str) else data


def check_costs(report, stages: list[str]) -> None:
    """Every stage measured and priced (> 0: work ran), the rows add up to the total, and the
    model version costs the stages that made it (all but the search index)."""
    assert [s.stage for s in report.usage] == stages
    for s in report.usage:
        assert s.wall_s > 0 and s.cpu_core_s > 0 and s.cpu_s > 0, s
        assert s.peak_memory_bytes > 50 * 2**20 and s.cost.total > 0 and s.gpu_s == 0, s
    finetune = next(s for s in report.usage if s.stage == "finetune")
    workers = [p for p in finetune.parts if p.part.startswith("ray worker")]
    assert len(workers) == report.finetune.world_size == 1
    assert workers[0].cpu_s > 0 and workers[0].peak_memory_bytes > 50 * 2**20
    assert workers[0].wall_s < finetune.wall_s  # held for the training, inside the stage
    rows = asyncio.run(summary_table())
    cost = {r["stage"]: r["value"] for r in rows if r["metric"] == "cost USD"}
    assert list(cost)[: len(stages)] == stages
    assert cost["total"] == pytest.approx(sum(cost[s] for s in stages), abs=1e-5)
    version = cost[f"llmops-assistant v{report.promote.version}"]
    assert version == pytest.approx(cost["total"] - cost["embed"], abs=1e-5)
    assert f"estimated cost {cost['total']:.4f} USD" in report.summary


def test_nightly_pipeline_on_a_slice_of_the_demo_corpus(
    prefect_harness, ray_local, settings: Settings, tmp_path
):
    # The pipeline's mechanics (caching, promotion, the canary's takeover) on models trained for
    # seconds: they answer nothing yet, so the answer gates are off here and each one is shown
    # on its own (tests/integration/served/, tests/unit/test_gate.py); the resume test runs them.
    params = NightlyParams(
        ingest=IngestParams(demo_topics=TOPICS, demo_modules=["contextlib"]),
        embed=EmbedParams(chunk_tokens=160),
        finetune=FinetuneParams(max_steps=6, checkpoint_every=3, batch_size=4, seq_len=64),
        compress=CompressParams(answer_gate=AnswerGateParams(enabled=False)),
        promote=PromoteParams(answer_gate=False),
    )
    report = nightly_pipeline(params)

    ingest, embed = report.ingest, report.embed
    assert ingest.read == len(TOPICS) + 1 and ingest.reconciles
    assert embed.snapshot_id == ingest.snapshot_id
    assert embed.documents == ingest.accepted and embed.chunks_embedded == embed.collection_rows
    assert asyncio.run(artifact_keys()) == EXPECTED_ARTIFACTS
    assert report.finetune.snapshot_id == ingest.snapshot_id and report.finetune.steps == 6
    assert f"quarantined {ingest.quarantined}" in report.summary
    # `make nightly` writes the run's reports (its stages' artifacts) as files
    folder = export_run_reports(asyncio.run(latest_nightly_run_id()), tmp_path)
    assert {f"{key}.md" for key in EXPECTED_ARTIFACTS} <= {p.name for p in folder.iterdir()}
    summary = (folder / "nightly-summary.md").read_text()
    assert summary.index("![time, cost and scores](data:image/png;base64,") < summary.index(
        "| stage | outcome | wall s | cost USD |"
    )
    assert "| stage | metric | value |" in (folder / "nightly-details.md").read_text()

    compressed, promoted = report.compress, report.promote
    assert compressed.source_run_id == report.finetune.run_id
    assert compressed.chosen_row.size_bytes <= compressed.baseline.size_bytes
    assert promoted.version == "1" and promoted.parent_version == "none"
    assert promoted.evaluation.snapshot_id == ingest.snapshot_id
    assert promoted.promoted == (promoted.champion == "1")  # first model: it only needs the base
    assert "registered as llmops-assistant v1" in report.summary
    check_costs(report, ["ingest", "embed", "finetune", "compress", "promote"])

    hits = search("how do I define a decorator", top_k=3, settings=settings)
    assert all("decorat" in h.text for h in hits)
    assert any(h.source == "topics/function.txt" for h in hits)  # where decorators are defined
    hits = search("Which statement catches exceptions?", top_k=1, settings=settings)
    assert hits[0].source == "topics/try.txt" and "except" in hits[0].text
    hits = search("What does the with statement do?", top_k=3, settings=settings)
    assert {"topics/with.txt", "modules/contextlib.html"} & {h.source for h in hits}

    # Same sources, same snapshot: ingest and embed are reused from the cache; trained longer,
    # the new model passes the held-out comparison and faces the champion in a canary on the
    # serving app, which the nightly deploys.
    longer = params.finetune.model_copy(update={"max_steps": 30, "checkpoint_every": 15})
    canary = CanaryParams(
        router_url=f"http://127.0.0.1:{free_port()}",
        app_name="nightly-canary",
        steps=[25, 100],
        model_cpus=0.5,
        max_wait_s=120,
        thresholds=ThresholdParams(min_requests=8, max_p95_ratio=3.0),
        answer_check=False,
    )
    try:
        again = nightly_pipeline(params.with_stages(finetune=longer, canary=canary))
    finally:
        serve.shutdown()
    assert (again.ingest, again.embed) == (ingest, embed)  # the first run's reports
    assert again.finetune.run_id != report.finetune.run_id and again.finetune.steps == 30
    assert again.promote.version == "2" and again.promote.parent_version == "1"
    assert again.promote.canary_pending and not again.promote.promoted, again.promote.reasons
    rolled = again.canary
    assert (rolled.challenger, rolled.champion, rolled.verdict) == ("2", "1", "promoted"), (
        rolled.steps[-1].reasons
    )
    assert [s.percent for s in rolled.steps] == [25] and rolled.steps[0].replayed > 0
    assert (rolled.champion_now, rolled.challenger_now) == ("2", None)
    assert sorted(rolled.served_now) == ["1", "2"]  # v1 bakes warm at weight 0: instant rollback
    assert "canary against v1: promoted (champion: v2)" in again.summary
    check_costs(again, ["ingest", "embed", "finetune", "compress", "promote", "canary"])
