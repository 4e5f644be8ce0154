"""A nightly that failed in a late stage, started again, resumes at the failed stage: ingest,
embed and fine-tuning are reused from the cache (their task runs are `Cached`, no second model
is trained) and only compression onwards runs again."""

import asyncio
import json
from uuid import UUID

import mlflow
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from flows.nightly import NightlyParams, nightly_pipeline
from tasks.compress.params import CompressParams
from tasks.embed.params import EmbedParams
from tasks.finetune.params import FinetuneParams
from tasks.ingest.params import IngestParams
from tasks.shared.settings import Settings

pytestmark = pytest.mark.e2e

TOPICS = ["try", "with", "for", "while", "function", "class", "import", "lambda", "if"]
STAGE_TASKS = ["ingest_source", "index_snapshot", "finetune_task", "compress_task"]


async def stage_runs(parent: UUID) -> tuple[dict[str, str], list[str]]:
    """The state of each stage's main task run in a nightly run, and its sub-flow runs' names."""
    async with get_client() as client:
        children = FlowRunFilterParentFlowRunId(any_=[parent])
        subflows = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=children)
        )
        ids = TaskRunFilterFlowRunId(any_=[r.id for r in subflows])
        runs = await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=ids))
    states = {t.name.rsplit("-", 1)[0]: t.state_name for t in runs}
    return {name: states.get(name, "not run") for name in STAGE_TASKS}, [r.name for r in subflows]


def test_a_nightly_that_failed_in_compression_resumes_there(
    prefect_harness, ray_local, settings: Settings
):
    small = NightlyParams(  # tests/e2e/test_nightly.py's slice: a fresh state folder must not
        # meet that test's cached stages
        ingest=IngestParams(demo_topics=TOPICS, demo_modules=["contextlib"]),
        embed=EmbedParams(chunk_tokens=160),
        finetune=FinetuneParams(max_steps=6, checkpoint_every=3, batch_size=4, seq_len=64),
        canary=None,
    )
    # The teacher has far fewer than 99 layers: compression raises after fine-tuning finished.
    broken = CompressParams(methods=["distill"], student_layers=99)
    failed = nightly_pipeline(small.with_stages(compress=broken), return_state=True)
    assert failed.is_failed()
    assert "a student needs 1 to" in str(failed.result(raise_on_failure=False))
    first, _ = asyncio.run(stage_runs(failed.state_details.flow_run_id))
    assert first == {  # computed, not taken from an earlier test's state folder
        "ingest_source": "Completed", "index_snapshot": "Completed", "finetune_task": "Completed",
        "compress_task": "Failed",
    }  # fmt: skip

    fixed = small.with_stages(compress=CompressParams(methods=["int8_dynamic"]))
    state = nightly_pipeline(fixed, return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    again, names = asyncio.run(stage_runs(state.state_details.flow_run_id))
    assert again == {
        "ingest_source": "Cached", "index_snapshot": "Cached", "finetune_task": "Cached",
        "compress_task": "Completed",
    }  # fmt: skip

    # The stages' results, as JSON in this test's own state folder (beside them: the failed
    # run's exception, which Prefect keeps under a key of its own, never a cache key).
    stored = [json.loads(p.read_text()) for p in (settings.home / "prefect-results").iterdir()]
    assert {r["metadata"]["serializer"]["type"] for r in stored} == {"json"}
    kept = sorted(str(json.loads(r["result"]).get("__class__")).rsplit(".")[-1] for r in stored)
    assert kept == ["CompressReport", "EmbedReport", "FinetuneReport", "IngestReport", "None"]

    client = mlflow.MlflowClient(settings.tracking_uri)
    [trained] = client.search_runs(client.get_experiment_by_name("finetune").experiment_id)
    assert report.finetune.run_id == trained.info.run_id  # one model trained, reused
    assert report.compress.source_run_id == trained.info.run_id
    assert [c.method for c in report.compress.candidates] == ["int8_dynamic"]
    assert report.promote.version == "1"
    # The answer gates ran in the pipeline: every candidate answered the held-out questions,
    # and promotion compared the candidate's answers with its base's, paired.
    assert report.compress.baseline.answers and report.compress.candidates[0].answers
    answers = report.promote.evaluation.answers
    assert answers is not None and set(answers.means) == {"candidate", "base"}
    assert any(r.startswith("answers against the base model") for r in report.promote.reasons)
    snapshot, run = report.ingest.snapshot_id, trained.info.run_id[:8]
    assert set(names) >= {
        "ingest-demo-corpus", f"embed-{snapshot}", f"finetune-lora-scratch-on-{snapshot}",
        f"compress-{run}", f"promote-llmops-assistant-from-{report.compress.run_id[:8]}",
    }  # fmt: skip
