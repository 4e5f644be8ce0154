"""Fine-tuning stage: the driver that builds the Ray `TorchTrainer`, and MLflow tracking."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.clients.ray_cluster import describe_cluster, ensure_ray, worker_capacity
from tasks.clients.tracking import BASE_MODEL_ARTIFACT, TrackedRun, start_run
from tasks.core.cluster import check_gpu_workers
from tasks.core.cost import usage_metrics
from tasks.finetune.loop import load_trainable, train_loop_per_worker
from tasks.finetune.params import FinetuneParams, FinetuneReport
from tasks.finetune.prepare import Plan, git_commit, prepare
from tasks.shared.manifest import folder_digest, write_manifest
from tasks.shared.models import perplexity
from tasks.shared.settings import Settings
from tasks.shared.usage import ProcessMeter, ray_worker_usage


def build_trainer(
    params: FinetuneParams,
    base_path: Path,
    train_rows: np.ndarray,
    settings: Settings,
    run_id: str,
    extra: dict[str, Any] | None = None,
):
    """The `TorchTrainer` for fine-tuning, and for compression's recovery and distillation runs
    (`extra` carries the teacher)."""
    import ray.data
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config = {
        **params.model_dump(exclude={"lora"}),
        "lora": params.lora.model_dump(),
        "base_path": str(base_path),
        "precision": "bf16" if params.use_gpu else "fp32",
        "tracking_uri": settings.tracking_uri,
        "run_id": run_id,
        **(extra or {}),
    }
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=params.num_workers,
            use_gpu=params.use_gpu,
            resources_per_worker={"CPU": params.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=f"train-{run_id}",
            storage_path=settings.checkpoint_storage,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=params.max_failures),
        ),
        datasets={"train": ray.data.from_numpy(train_rows)},
    )


def check_workers(params: FinetuneParams, settings: Settings) -> None:
    if params.use_gpu:  # what the autoscaler can add counts: GPU groups scale from zero
        check_gpu_workers(describe_cluster(settings), params.num_workers, params.cpus_per_worker)
        return
    capacity = worker_capacity(ensure_ray(settings), False, params.cpus_per_worker)
    if params.num_workers > capacity:
        raise ValueError(
            f"{params.num_workers} workers asked for, but the Ray cluster has room for "
            f"{capacity} (CPUs at {params.cpus_per_worker} per worker): lower num_workers or "
            "cpus_per_worker, or add nodes"
        )


def finetune(params: FinetuneParams, settings: Settings) -> FinetuneReport:
    with ProcessMeter() as driver:
        return _finetune(params, settings, driver)


def _finetune(params: FinetuneParams, settings: Settings, driver: ProcessMeter) -> FinetuneReport:
    plan = prepare(params, settings)
    check_workers(params, settings)
    eval_rows, base = torch.from_numpy(plan.data.eval), plan.model
    with start_run(settings, f"{params.method}-{plan.data.snapshot_id}") as run:
        run_id = run.run_id
        _log_inputs(run, params, plan)
        ppl_before = perplexity(base, eval_rows)
        started = time.perf_counter()
        result = build_trainer(params, plan.base_path, plan.data.train, settings, run_id).fit()
        workers = ray_worker_usage(
            result.metrics["worker_usage"],
            time.perf_counter() - started,
            params.cpus_per_worker,
            params.use_gpu,
            settings.prices.gpu_type,
        )
        with result.checkpoint.as_directory() as folder:
            load_trainable(Path(folder), base)
        ppl_after = perplexity(base, eval_rows)
        model_dir = _export(base, plan, settings, run_id)
        metrics = result.metrics
        run.log_metrics({"perplexity_before": ppl_before, "perplexity_after": ppl_after})
        run.log_artifacts(model_dir, artifact_path="model")
        report = FinetuneReport(
            run_id=run_id,
            snapshot_id=plan.data.snapshot_id,
            base_model=params.base_model,
            model_dir=str(model_dir),
            steps=int(metrics["step"]),
            resumed_from=int(metrics["resumed_from"]),
            world_size=int(metrics["world_size"]),
            final_loss=float(metrics["loss"]),
            tokens_per_s=float(metrics["tokens_per_s"]),
            perplexity_before=ppl_before,
            perplexity_after=ppl_after,
            trainable_parameters=plan.shape.trainable,
            parameters=plan.shape.parameters,
            memory_gib=plan.memory.total / 2**30,
            memory=plan.memory.table(),
            usage=[driver.usage(), *workers],
        )
        run.log_metrics(
            {"final_loss": report.final_loss, "tokens_per_s_final": report.tokens_per_s}
        )
        run.log_metrics(usage_metrics(report.usage, settings.prices))
    return report


def _log_inputs(run: TrackedRun, params: FinetuneParams, plan: Plan) -> None:
    origin = plan.base_path / "ORIGIN.json"
    run.log_params(
        {
            **params.model_dump(exclude={"lora", "instructions"}),
            **{f"lora_{k}": v for k, v in params.lora.model_dump().items()},
            **(
                {f"instructions_{k}": v for k, v in params.instructions.model_dump().items()}
                if params.data == "instructions"
                else {}
            ),
        }
    )
    run.set_tags(
        {
            "data_snapshot": plan.data.snapshot_id,
            "base_model": params.base_model,
            "base_model_path": str(plan.base_path),
            "base_model_sha256": folder_digest(plan.base_path),
            "base_model_origin": json.loads(origin.read_text())["origin"]
            if origin.exists()
            else "pretrained",
            "git_commit": git_commit(),
            "train_sequences": str(len(plan.data.train)),
            "train_sequence_tokens": str(plan.data.train_row_tokens),
            "eval_sequences": str(len(plan.data.eval)),
        }
    )
    run.log_metrics(
        {
            "trainable_fraction": plan.shape.trainable / plan.shape.parameters,
            "memory_estimate_gib": plan.memory.total / 2**30,
        }
    )
    if origin.exists():  # built here (scratch): nowhere else to get it from on another machine
        run.log_artifacts(plan.base_path, artifact_path=BASE_MODEL_ARTIFACT)


def _export(model: torch.nn.Module, plan: Plan, settings: Settings, run_id: str) -> Path:
    """The adapter (or full weights) in safetensors, tokenizer, config, sha256 manifest."""
    from transformers import AutoTokenizer

    dest = settings.models_dir / "finetuned" / run_id
    model.save_pretrained(dest, safe_serialization=True)
    AutoTokenizer.from_pretrained(plan.base_path).save_pretrained(dest)
    write_manifest(dest)
    return dest
