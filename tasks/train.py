"""Fine-tuning stage: the driver that builds the Ray `TorchTrainer`, and MLflow tracking."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from tasks.caching import finetune_key, stage_task
from tasks.clients.ray_cluster import ensure_ray, worker_capacity
from tasks.clients.tracking import BASE_MODEL_ARTIFACT, start_run
from tasks.core.cost import Usage, usage_metrics
from tasks.manifest import folder_digest, write_manifest
from tasks.settings import Settings, get_settings
from tasks.train_loop import load_trainable, perplexity, train_loop_per_worker
from tasks.train_prepare import FinetuneParams, Plan, git_commit, prepare
from tasks.usage import FLOW_PROCESS, ProcessMeter, ray_worker_usage


class FinetuneReport(BaseModel):
    run_id: str
    snapshot_id: str
    base_model: str
    model_dir: str
    steps: int
    resumed_from: int
    world_size: int
    final_loss: float
    tokens_per_s: float
    perplexity_before: float
    perplexity_after: float
    trainable_parameters: int
    parameters: int
    memory_gib: float
    memory: list[dict[str, object]]
    usage: list[Usage] = []  # the driver process, then each Ray worker

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_parameters / self.parameters

    @property
    def worker_usage(self) -> list[Usage]:
        return [u for u in self.usage if u.part != FLOW_PROCESS]


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
    capacity = worker_capacity(ensure_ray(settings), params.use_gpu, params.cpus_per_worker)
    if params.num_workers > capacity:
        unit = "GPUs" if params.use_gpu else f"CPUs at {params.cpus_per_worker} per worker"
        raise ValueError(
            f"{params.num_workers} workers asked for, but the Ray cluster has room for "
            f"{capacity} ({unit}): lower num_workers or cpus_per_worker, or add nodes"
        )


def finetune(params: FinetuneParams, settings: Settings) -> FinetuneReport:
    with ProcessMeter() as driver:
        return _finetune(params, settings, driver)


def _finetune(params: FinetuneParams, settings: Settings, driver: ProcessMeter) -> FinetuneReport:
    plan = prepare(params, settings)
    check_workers(params, settings)
    eval_rows, base = torch.from_numpy(plan.data.eval), plan.model
    with start_run(settings, f"{params.method}-{plan.data.snapshot_id}") as run:
        run_id = run.info.run_id
        _log_inputs(params, plan)
        ppl_before = perplexity(base, eval_rows)
        started = time.perf_counter()
        result = build_trainer(params, plan.base_path, plan.data.train, settings, run_id).fit()
        workers = ray_worker_usage(
            result.metrics["worker_usage"], time.perf_counter() - started,
            params.cpus_per_worker, params.use_gpu, settings.prices.gpu_type,
        )  # fmt: skip
        with result.checkpoint.as_directory() as folder:
            load_trainable(Path(folder), base)
        ppl_after = perplexity(base, eval_rows)
        model_dir = _export(base, plan, settings, run_id)
        metrics = result.metrics
        mlflow.log_metrics({"perplexity_before": ppl_before, "perplexity_after": ppl_after})
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
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
        mlflow.log_metrics(
            {"final_loss": report.final_loss, "tokens_per_s_final": report.tokens_per_s}
        )
        mlflow.log_metrics(usage_metrics(report.usage, settings.prices))
    return report


def _log_inputs(params: FinetuneParams, plan: Plan) -> None:
    origin = plan.base_path / "ORIGIN.json"
    mlflow.log_params(
        {
            **params.model_dump(exclude={"lora"}),
            **{f"lora_{k}": v for k, v in params.lora.model_dump().items()},
        }
    )
    mlflow.set_tags(
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
            "eval_sequences": str(len(plan.data.eval)),
        }
    )
    mlflow.log_metrics(
        {
            "trainable_fraction": plan.shape.trainable / plan.shape.parameters,
            "memory_estimate_gib": plan.memory.total / 2**30,
        }
    )
    if origin.exists():  # built here (scratch): nowhere else to get it from on another machine
        mlflow.log_artifacts(str(plan.base_path), artifact_path=BASE_MODEL_ARTIFACT)


def _export(model: torch.nn.Module, plan: Plan, settings: Settings, run_id: str) -> Path:
    """The adapter (or full weights) in safetensors, tokenizer, config, sha256 manifest."""
    from transformers import AutoTokenizer

    dest = settings.models_dir / "finetuned" / run_id
    model.save_pretrained(dest, safe_serialization=True)
    AutoTokenizer.from_pretrained(plan.base_path).save_pretrained(dest)
    write_manifest(dest)
    return dest


# Cached: training is seeded (initialisation, data order, split), so the same parameters on the
# same snapshot and base give the same model; the reused MLflow run stays its record.
@stage_task(finetune_key)
def finetune_task(params: FinetuneParams) -> FinetuneReport:
    return finetune(params, get_settings())


@task
def publish_finetune_report(report: FinetuneReport) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = get_settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    history = mlflow.MlflowClient().get_metric_history(report.run_id, "loss")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([m.step for m in history], [m.value for m in history])
    ax.set(xlabel="step", ylabel="training loss", title=f"run {report.run_id[:8]}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    mlflow.MlflowClient().log_figure(report.run_id, fig, "loss_curve.png")
    plt.close(fig)
    image = base64.b64encode(buffer.getvalue()).decode()
    rows = [
        ("steps", report.steps), ("resumed from step", report.resumed_from),
        ("final loss", f"{report.final_loss:.4f}"), ("tokens/s", f"{report.tokens_per_s:.0f}"),
        ("perplexity before", f"{report.perplexity_before:.1f}"),
        ("perplexity after", f"{report.perplexity_after:.1f}"),
        ("trainable", f"{report.trainable_parameters} of {report.parameters} "
         f"({100 * report.trainable_fraction:.2f}%)"),
        ("memory estimate / worker", f"{report.memory_gib:.3f} GiB"),
        *((f"{u.part}: held / used", f"{u.cpu_core_s:.0f} CPU-core-s / {u.cpu_s:.0f} CPU-s, "
           f"{u.gpu_s:.0f} GPU-s, peak {u.peak_memory_bytes / 2**20:.0f} MiB")
          for u in report.usage),
    ]  # fmt: skip
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    memory = "\n".join(f"| {m['part']} | {m['GiB']} |" for m in report.memory)
    create_markdown_artifact(
        f"# Fine-tuning {report.run_id}\n\nBase `{report.base_model}`, snapshot "
        f"`{report.snapshot_id}`, model `{report.model_dir}`\n\n| metric | value |\n|---|---|\n"
        f"{table}\n\n## Memory estimate per worker\n\n| part | GiB |\n|---|---:|\n{memory}\n\n"
        f"![loss curve](data:image/png;base64,{image})\n",
        key="finetune-report",
        description="Fine-tuning metrics and loss curve",
    )
