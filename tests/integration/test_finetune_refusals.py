from pathlib import Path

import pytest

from tasks.finetune.params import FinetuneParams
from tasks.finetune.prepare import prepare
from tasks.finetune.trainer import check_workers
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"base_model": "/no/such/model"}, FileNotFoundError, "does not exist"),
        ({"base_model": "someorg/some-llm"}, ValueError, "not in the local Hugging Face cache"),
        ({"seq_len": 1024}, ValueError, "exceeds the model's maximum of 512"),
        ({"batch_size": 4096}, ValueError, "less than one step"),
        ({"memory_budget_gib": 0.05}, MemoryError, "batch_size=3 fits"),
        ({"memory_budget_gib": 0.00001}, MemoryError, "no batch size fits"),
    ],
    ids=["missing-path", "hub-offline", "seq-len", "tiny-data", "memory", "no-memory"],
)
def test_runs_that_cannot_work_are_refused_before_training(
    training_snapshot: str, settings: Settings, change: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        prepare(FinetuneParams(snapshot_id=training_snapshot, **change), settings)


def test_an_empty_snapshot_is_refused(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "empty.txt").write_text("")
    snapshot = ingest_folder(root, IngestParams(), settings).snapshot_id
    with pytest.raises(ValueError, match="no documents to train on"):
        prepare(FinetuneParams(snapshot_id=snapshot), settings)


def test_more_workers_than_the_cluster_has_are_refused(ray_local, settings: Settings) -> None:
    with pytest.raises(ValueError, match="has room for 2"):
        check_workers(FinetuneParams(num_workers=3), settings)


def test_gpu_workers_count_what_the_clusters_gpu_group_scales_to(
    ray_local, settings: Settings
) -> None:
    # Local Ray has no GPU; the shipped manifest's GPU group (0 replicas, at most 4) counts.
    manifest = REPO_ROOT / "infra" / "ray" / "raycluster.yaml"
    scaling = settings.model_copy(update={"ray_cluster_manifest": manifest})
    check_workers(FinetuneParams(use_gpu=True, num_workers=4), scaling)
    with pytest.raises(ValueError, match=r"at most 4: 0 on its live nodes, 4 more in group 'gpu'"):
        check_workers(FinetuneParams(use_gpu=True, num_workers=5), scaling)
    with pytest.raises(ValueError, match="can hold at most 0: 0 on its live nodes"):
        check_workers(FinetuneParams(use_gpu=True), settings)  # no node types known: live only


def test_a_single_document_or_a_tiny_held_out_split_is_refused(
    tmp_path: Path, settings: Settings
) -> None:
    root = tmp_path / "one"
    root.mkdir()
    (root / "only.txt").write_text("A single document about context managers. " * 50)
    snapshot = ingest_folder(root, IngestParams(), settings).snapshot_id
    with pytest.raises(ValueError, match="at least 2 are needed"):
        prepare(FinetuneParams(snapshot_id=snapshot), settings)

    (root / "short.txt").write_text("A short held-out note about loops and iterators.")
    snapshot = ingest_folder(root, IngestParams(), settings).snapshot_id
    # Whichever of the two is held out, the other side has less than it needs.
    with pytest.raises(ValueError, match=r"less than one (sequence of 128 tokens|step)"):
        prepare(FinetuneParams(snapshot_id=snapshot), settings)
