from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

import mlflow
import pytest
import torch

from tasks.compress.candidates import compress
from tasks.compress.params import UNCOMPRESSED, AnswerGateParams, CompressParams, GateParams
from tasks.finetune.params import FinetuneParams
from tasks.finetune.trainer import finetune
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.candidates import load_candidate
from tasks.shared.settings import Settings, get_settings

pytestmark = pytest.mark.integration

# The methods and the perplexity/size gate, on a model trained for seconds with no index to
# answer from; the answer gate is tests/integration/served/test_evaluate.py's.
NO_ANSWERS = AnswerGateParams(enabled=False)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Iterator[tuple[Settings, str]]:
    """One short LoRA fine-tune on 80 pydoc topics, shared by this module's tests."""
    root = tmp_path_factory.mktemp("compress")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOPS_HOME", str(root / "state"))
        settings = get_settings()
        docs = root / "docs"
        docs.mkdir()
        for name in sorted(topics)[:80]:
            (docs / f"{name}.txt").write_text(topics[name])
        snapshot = ingest_folder(docs, IngestParams(), settings).snapshot_id
        report = finetune(FinetuneParams(snapshot_id=snapshot, max_steps=8, seq_len=64), settings)
        yield settings, report.run_id


def test_every_method_is_measured_and_the_smallest_passing_candidate_is_kept(tuned) -> None:
    settings, run_id = tuned
    report = compress(CompressParams(source_run_id=run_id, answer_gate=NO_ANSWERS), settings)

    names = [row.name for row in report.candidates]
    assert names == [
        "merged",
        "bf16",
        "int8-dynamic",
        "int8-static",
        "magnitude-50%",
        "structured-mlp-25%",
        "lowrank-90%",
    ]
    base = report.baseline
    rows = {row.name: row for row in report.candidates}
    assert rows["merged"].size_bytes < base.size_bytes  # no adapter any more
    assert abs(rows["merged"].perplexity / base.perplexity - 1) < 1e-3  # merging is lossless
    assert rows["bf16"].size_bytes < 0.55 * base.size_bytes
    assert rows["int8-dynamic"].size_bytes < 0.35 * base.size_bytes
    assert rows["magnitude-50%"].parameters < 0.85 * base.parameters
    assert rows["structured-mlp-25%"].parameters < base.parameters
    for row in report.candidates:  # each threshold a candidate broke is named
        size_cut = 1 - row.size_bytes / base.size_bytes
        assert any("size" in b for b in row.broken) == (size_cut < 0.4)
        assert row.latency_ms_p50 > 0 and row.tokens_per_s > 0
    passing = [row for row in report.candidates if not row.broken]
    assert report.chosen == min(passing, key=lambda r: r.size_bytes).name

    client = mlflow.MlflowClient(settings.tracking_uri)
    run = client.get_run(report.run_id)
    assert run.data.tags["training_run"] == run_id
    assert run.data.tags["chosen"] == report.chosen
    logged = {f.path for f in client.list_artifacts(report.run_id)}
    assert {"comparison.json", "comparison.md", "model"} <= logged
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{report.run_id}'"
    )
    assert len(children) == len(report.candidates)


def test_a_gate_nothing_passes_keeps_the_uncompressed_model_and_says_why(tuned) -> None:
    settings, run_id = tuned
    strict = GateParams(max_perplexity_increase=0.0, min_size_reduction=0.9)
    report = compress(
        CompressParams(
            source_run_id=run_id,
            methods=["bf16", "int8_dynamic"],
            gate=strict,
            answer_gate=NO_ANSWERS,
        ),
        settings,
    )
    assert report.chosen == UNCOMPRESSED and not report.gate_passed
    assert all(any("size" in b for b in row.broken) for row in report.candidates)
    model = load_candidate(Path(report.chosen_row.folder))  # merged, full precision
    assert next(model.parameters()).dtype == torch.float32


def test_recovery_and_distillation_train_through_ray_train(tuned) -> None:
    settings, run_id = tuned
    params = CompressParams(
        answer_gate=NO_ANSWERS,
        source_run_id=run_id,
        methods=["magnitude", "distill"],
        recovery_steps=4,
        distill_steps=4,
        gate=GateParams(max_perplexity_increase=None, min_size_reduction=None),
    )
    report = compress(params, settings)
    rows = {row.name: row for row in report.candidates}
    assert set(rows) == {"magnitude-50%+recovery", "distill-2L"}

    pruned = load_candidate(Path(rows["magnitude-50%+recovery"].folder))
    weights = [m.weight for n, m in pruned.named_modules() if n.endswith("proj")]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros >= 0.5  # recovery training kept the pruned weights at zero
    student = load_candidate(Path(rows["distill-2L"].folder))
    assert student.config.num_hidden_layers == 2

    client = mlflow.MlflowClient(settings.tracking_uri)
    run = client.get_run(report.run_id)
    for child in client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{report.run_id}'"
    ):
        assert len(client.get_metric_history(child.info.run_id, "loss")) == 4
