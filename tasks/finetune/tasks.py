"""The fine-tuning stage's Prefect tasks: thin wrappers over `trainer`, and the report artifact."""

from __future__ import annotations

import base64
import io

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.clients.tracking import tracked
from tasks.finetune.params import FinetuneParams, FinetuneReport
from tasks.finetune.trainer import finetune
from tasks.shared.caching import finetune_key, stage_task
from tasks.shared.settings import get_settings


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

    run = tracked(get_settings(), report.run_id)
    history = run.client.get_metric_history(report.run_id, "loss")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([m.step for m in history], [m.value for m in history])
    ax.set(xlabel="step", ylabel="training loss", title=f"run {report.run_id[:8]}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    run.log_figure(fig, "loss_curve.png")
    plt.close(fig)
    image = base64.b64encode(buffer.getvalue()).decode()
    rows = [
        ("steps", report.steps),
        ("resumed from step", report.resumed_from),
        ("final loss", f"{report.final_loss:.4f}"),
        ("tokens/s", f"{report.tokens_per_s:.0f}"),
        ("perplexity before", f"{report.perplexity_before:.1f}"),
        ("perplexity after", f"{report.perplexity_after:.1f}"),
        (
            "trainable",
            f"{report.trainable_parameters} of {report.parameters} "
            f"({100 * report.trainable_fraction:.2f}%)",
        ),
        ("memory estimate / worker", f"{report.memory_gib:.3f} GiB"),
        *(
            (
                f"{u.part}: held / used",
                f"{u.cpu_core_s:.0f} CPU-core-s / {u.cpu_s:.0f} CPU-s, "
                f"{u.gpu_s:.0f} GPU-s, peak {u.peak_memory_bytes / 2**20:.0f} MiB",
            )
            for u in report.usage
        ),
    ]
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
