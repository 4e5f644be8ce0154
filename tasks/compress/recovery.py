"""Training compressed candidates through the fine-tuning path (Ray Train): a short recovery
fine-tune after pruning or factorisation, and knowledge distillation of a smaller student."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tasks.shared.candidates import load_candidate, read_recipe, save_candidate


def _magnitude_names(folder: Path) -> list[str]:
    steps = read_recipe(folder)["steps"]
    return [name for s in steps if s["kind"] == "magnitude" for name in s["weights"]]


def load_trainable_candidate(folder: Path | str) -> torch.nn.Module:
    """A candidate ready to train: every float weight trainable, pruned weights held at zero."""
    from tasks.compress.methods.prune import hold_zeros

    folder = Path(folder)
    model = load_candidate(folder)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    if names := _magnitude_names(folder):
        hold_zeros(model, names)
    return model


def distillation_loss(
    device: torch.device, options: dict[str, Any]
) -> Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]:
    """KL divergence to the frozen teacher's softened next-token distribution, mixed with the
    student's own language-model loss (Hinton et al.; the T^2 keeps gradients comparable)."""
    teacher = load_candidate(Path(options["teacher_path"])).to(device).eval()
    temperature, alpha = options["temperature"], options["alpha"]

    def loss(student: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        out = student(input_ids=batch, labels=batch)
        with torch.no_grad():
            target = teacher(input_ids=batch).logits
        vocab = out.logits.shape[-1]
        kl = F.kl_div(
            F.log_softmax(out.logits.reshape(-1, vocab) / temperature, dim=-1),
            F.log_softmax(target.reshape(-1, vocab) / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        return alpha * kl * temperature**2 + (1 - alpha) * out.loss

    return loss


def make_student(teacher: torch.nn.Module, layers: int) -> torch.nn.Module:
    """The teacher with `layers` of its decoder layers, evenly spaced, kept (DistilBERT's
    initialisation: a student that starts from the teacher's weights learns far faster)."""
    total = teacher.config.num_hidden_layers
    if not 1 <= layers < total:
        raise ValueError(f"a student needs 1 to {total - 1} layers (the teacher has {total})")
    keep = np.linspace(0, total - 1, layers).round().astype(int).tolist()
    student = copy.deepcopy(teacher)
    decoder = student.get_decoder()
    decoder.layers = torch.nn.ModuleList(decoder.layers[i] for i in keep)
    for index, layer in enumerate(decoder.layers):  # the KV cache is indexed by layer
        layer.self_attn.layer_idx = index
    student.config.num_hidden_layers = layers
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in keep]
    return student


def train_candidate(
    folder: Path,
    steps: int,
    train_rows: np.ndarray,
    settings: Any,
    run_id: str,
    train_options: dict[str, Any],
    teacher: Path | None = None,
    distill: dict[str, float] | None = None,
) -> int:
    """Train the candidate in `folder` with Ray Train (all float weights), write it back in
    place; returns the steps done."""
    from tasks.compress.methods.prune import release_zeros
    from tasks.finetune.loop import load_trainable
    from tasks.finetune.params import FinetuneParams
    from tasks.finetune.trainer import build_trainer

    params = FinetuneParams(method="full", max_steps=steps, checkpoint_every=steps, **train_options)
    # the loop finds these by name: fine-tuning never imports compression
    extra: dict[str, Any] = {"model_loader": f"{__name__}:load_trainable_candidate"}
    if teacher:
        options = {"teacher_path": str(teacher), **(distill or {})}
        extra |= {"loss": f"{__name__}:distillation_loss", "loss_options": options}
    result = build_trainer(params, folder, train_rows, settings, run_id, extra).fit()
    model = load_trainable_candidate(folder)
    with result.checkpoint.as_directory() as checkpoint:
        load_trainable(Path(checkpoint), model)
    release_zeros(model)
    recipe = read_recipe(folder)
    sparse = set(recipe.pop("sparse"))
    staging = folder.with_name(f"{folder.name}.trained")
    save_candidate(model, staging, {**recipe, "trained_steps": steps}, folder, sparse=sparse)
    shutil.rmtree(folder)
    staging.rename(folder)
    return int(result.metrics["step"])
