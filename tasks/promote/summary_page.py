"""The nightly summary as a person reads it: a picture first (where the time and the money went,
and the model's scores beside its base's and the champion's), then one row per stage saying
what it did. The full key-value list stays in its own table artifact (`nightly-details`)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

from tasks.canary.params import CanaryOutcome
from tasks.compress.params import CompressReport
from tasks.core.cost import StageUsage
from tasks.embed.params import EmbedReport
from tasks.finetune.params import FinetuneReport
from tasks.ingest.params import IngestReport
from tasks.promote.params import PromoteReport, version_name

ANSWER_METRICS = ("token_f1", "groundedness", "empty")


def stage_outcomes(
    ingest: IngestReport,
    embed: EmbedReport,
    tuned: FinetuneReport,
    compressed: CompressReport,
    promoted: PromoteReport,
    canary: CanaryOutcome | None,
) -> dict[str, str]:
    """What each stage did, in a few words."""
    chosen, base = compressed.chosen_row, compressed.baseline
    outcomes = {
        "ingest": f"read {ingest.read}: {ingest.accepted} accepted, "
        f"{ingest.quarantined} quarantined",
        "embed": f"{embed.chunks_embedded} chunks embedded, {embed.collection_rows} searchable",
        "finetune": f"{tuned.steps} steps, perplexity {tuned.perplexity_before:.0f} → "
        f"{tuned.perplexity_after:.0f}",
        "compress": f"{compressed.chosen}, ×{chosen.size_bytes / base.size_bytes:.2f} size",
        "promote": f"v{promoted.version}: {promoted.verdict} "
        f"(champion: {version_name(promoted.champion)})",
    }
    if canary:
        outcomes["canary"] = f"v{canary.challenger} against v{canary.champion}: {canary.verdict}"
    return outcomes


def stage_table(outcomes: Mapping[str, str], usage: Sequence[StageUsage]) -> str:
    """One markdown row per stage: what it did, its wall time and its cost; then the total."""
    spent = {s.stage: s for s in usage}
    currency = usage[0].cost.currency if usage else "USD"
    lines = [f"| stage | outcome | wall s | cost {currency} |", "|---|---|---:|---:|"]
    for stage, outcome in outcomes.items():
        s = spent.get(stage)
        wall, cost = (f"{s.wall_s:.0f}", f"{s.cost.total:.4f}") if s else ("", "")
        lines.append(f"| {stage} | {outcome.replace('|', '/')} | {wall} | {cost} |")
    if usage:
        wall = sum(s.wall_s for s in usage)
        total = sum(s.cost.total for s in usage)
        lines.append(f"| **total** |  | {wall:.0f} | {total:.4f} |")
    return "\n".join(lines) + "\n"


def model_scores(promoted: PromoteReport) -> dict[str, dict[str, float]]:
    """metric -> {model: value}: bits per byte of the candidate, its base and the champion,
    and the answer metrics of the models that answered the held-out questions."""
    e = promoted.evaluation
    bpb = {"candidate": e.candidate_bpb, "base": e.base_bpb}
    if e.champion_bpb is not None:
        bpb["champion"] = e.champion_bpb
    scores = {"bits per byte (lower is better)": bpb}
    if e.answers is not None:
        for metric in ANSWER_METRICS:
            values = {
                role: means[metric]
                for role, means in e.answers.means.items()
                if means.get(metric) is not None
            }
            if values:
                scores[metric] = values
    return scores


def summary_figure(usage: Sequence[StageUsage], scores: Mapping[str, Mapping[str, float]]) -> str:
    """A PNG (base64): wall time per stage with its cost; bits per byte by model; the answer
    metrics by model (0 to 1, on their own axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bpb = {k: v for k, v in scores.items() if k.startswith("bits per byte")}
    answers = {k: v for k, v in scores.items() if k not in bpb}
    panels = 1 + bool(bpb) + bool(answers)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.2), squeeze=False)
    time_ax, *score_axes = axes[0]
    bars = time_ax.barh([s.stage for s in usage], [s.wall_s for s in usage], color="#4c78a8")
    time_ax.bar_label(bars, labels=[f"{s.cost.total:.4f} $" for s in usage], padding=3)
    time_ax.invert_yaxis()
    time_ax.set(xlabel="wall seconds (label: cost)", title="time and cost per stage")
    time_ax.margins(x=0.3)
    for ax, (group, title) in zip(
        score_axes,
        [(g, t) for g, t in ((bpb, "bits per byte (lower is better)"), (answers, "answers")) if g],
        strict=True,
    ):
        _grouped_bars(ax, group)
        ax.set_title(title)
    if answers:
        score_axes[-1].set_ylim(0, 1)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _grouped_bars(ax: object, scores: Mapping[str, Mapping[str, float]]) -> None:
    """One group of bars per metric, one bar per model, the same colour per model."""
    models = list(dict.fromkeys(m for values in scores.values() for m in values))
    colours = {"candidate": "#4c78a8", "base": "#f58518", "champion": "#54a24b"}
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        xs = [j + i * width for j, values in enumerate(scores.values()) if model in values]
        ys = [values[model] for values in scores.values() if model in values]
        bars = ax.bar(xs, ys, width, label=model, color=colours.get(model))  # type: ignore[attr-defined]
        ax.bar_label(bars, fmt="%.2f", fontsize=7)  # type: ignore[attr-defined]
    middle = width * (len(models) - 1) / 2
    names = [name.split(" (")[0] for name in scores]
    ax.set_xticks([j + middle for j in range(len(scores))], names)  # type: ignore[attr-defined]
    ax.legend(fontsize=8)  # type: ignore[attr-defined]


def summary_markdown(line: str, figure_png: str, table: str) -> str:
    return (
        f"# Nightly summary\n\n![time, cost and scores](data:image/png;base64,{figure_png})\n\n"
        f"{table}\n{line}\n\nEvery figure: the `nightly-details` artifact.\n"
    )
