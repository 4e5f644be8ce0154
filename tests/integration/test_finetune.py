import threading
import time
from pathlib import Path

import mlflow
import psutil
import pytest

from tasks.finetune.params import FinetuneParams
from tasks.finetune.trainer import finetune
from tasks.shared.manifest import MANIFEST, verify_manifest
from tasks.shared.settings import Settings

pytestmark = pytest.mark.integration


def test_lora_trains_under_ray_train_and_mlflow_holds_the_run(
    ray_local, training_snapshot: str, settings: Settings
) -> None:
    params = FinetuneParams(snapshot_id=training_snapshot, max_steps=16, checkpoint_every=8)
    report = finetune(params, settings)

    assert report.steps == 16 and report.world_size == 1 and report.resumed_from == 0
    assert report.trainable_fraction < 0.05
    assert report.perplexity_after < report.perplexity_before

    client = mlflow.MlflowClient(settings.tracking_uri)
    losses = [m.value for m in client.get_metric_history(report.run_id, "loss")]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # the loss goes down
    run = client.get_run(report.run_id)
    assert run.data.tags["data_snapshot"] == training_snapshot
    assert len(run.data.tags["base_model_sha256"]) == 64
    assert run.data.tags["base_model_origin"].startswith("initialised from scratch")
    assert run.data.tags["git_commit"]
    assert run.data.params["method"] == "lora" and run.data.params["lora_r"] == "8"
    assert {"perplexity_before", "perplexity_after", "trainable_fraction"} <= set(run.data.metrics)
    logged = {f.path for f in client.list_artifacts(report.run_id, "model")}
    assert {
        "model/adapter_model.safetensors",
        f"model/{MANIFEST}",
        "model/tokenizer.json",
    } <= logged

    model_dir = Path(report.model_dir)
    verify_manifest(model_dir)
    (model_dir / "adapter_config.json").write_text("{}")  # tampering is caught
    with pytest.raises(ValueError, match="sha256 does not match"):
        verify_manifest(model_dir)


def test_two_workers_train_data_parallel(
    ray_local, training_snapshot: str, settings: Settings
) -> None:
    params = FinetuneParams(
        snapshot_id=training_snapshot,
        num_workers=2,
        max_steps=6,
        checkpoint_every=3,
        batch_size=4,
        gradient_accumulation=2,
    )
    report = finetune(params, settings)
    assert report.world_size == 2 and report.steps == 6
    # Each optimizer step saw 2 micro-batches of 4 sequences on each of the 2 workers.
    assert report.tokens_per_s > 0
    # Each worker reported its own usage (gathered to rank 0): both measured, both held a core.
    workers = report.worker_usage
    assert [w.part for w in workers] == ["ray worker 0", "ray worker 1"]
    assert all(w.cpu_s > 0 and w.peak_memory_bytes > 100 * 2**20 for w in workers)
    assert all(w.cores == 1 and w.wall_s > 0 for w in workers)
    assert workers[0].cpu_s != workers[1].cpu_s  # two processes, not one report copied


def _train_workers() -> list[psutil.Process]:
    # Ray titles worker processes after the actor they host.
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("RayTrainWorker" in part for part in p.info["cmdline"] or [])
    ]


def _kill_a_worker_after_first_checkpoint(storage: Path, killed: list[int]) -> None:
    deadline = time.monotonic() + 240
    # Workers buffer their reports until Train's controller polls them: a checkpoint counts
    # once the controller has registered it, which it records in this file.
    while time.monotonic() < deadline and not any(
        storage.glob("*/checkpoint_manager_snapshot.json")
    ):
        time.sleep(0.1)
    while time.monotonic() < deadline:
        if workers := _train_workers():
            workers[0].kill()
            killed.append(workers[0].pid)
            return
        time.sleep(0.2)


def test_a_killed_worker_resumes_from_the_last_checkpoint(
    ray_local, training_snapshot: str, settings: Settings
) -> None:
    params = FinetuneParams(
        snapshot_id=training_snapshot, max_steps=80, checkpoint_every=5, max_failures=2
    )
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_a_worker_after_first_checkpoint,
        args=(Path(settings.checkpoint_storage), killed),
    )
    killer.start()
    report = finetune(params, settings)
    killer.join()

    assert killed, "no worker was killed"
    assert report.steps == 80
    assert report.resumed_from >= 5 and report.resumed_from % 5 == 0  # not from step 0


def test_full_fine_tuning_of_a_model_given_by_path(
    ray_local, training_snapshot: str, settings: Settings
) -> None:
    from tasks.finetune.prepare import prepare

    base = prepare(FinetuneParams(snapshot_id=training_snapshot), settings).base_path
    params = FinetuneParams(
        snapshot_id=training_snapshot,
        base_model=str(base),
        method="full",
        max_steps=8,
        checkpoint_every=4,
        learning_rate=1e-3,
    )
    report = finetune(params, settings)

    assert report.trainable_fraction == 1.0 and report.steps == 8
    assert report.perplexity_after < report.perplexity_before
    model_dir = Path(report.model_dir)
    assert (model_dir / "model.safetensors").exists()
    assert not list(model_dir.glob("adapter_*"))
    verify_manifest(model_dir)
    run = mlflow.MlflowClient(settings.tracking_uri).get_run(report.run_id)
    assert run.data.tags["base_model_path"] == str(base)
