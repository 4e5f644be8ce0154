"""The training step, the Ray Train worker loop, and checkpoints in safetensors.

Made-With-ML's shape: a plain step, a loop each worker runs, and (in `tasks.finetune.trainer`)
a driver that builds the `TorchTrainer`. Other trainings (compression's recovery and
distillation) name their model loader and loss in the loop's config (`module:function`), so
this loop never imports them.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from tasks.shared.manifest import verify_manifest
from tasks.shared.usage import gather_worker_reports


def load_model(base_path: str, method: str, lora: dict[str, Any] | None) -> torch.nn.Module:
    """The base model (manifest-verified when it has one), wrapped with LoRA for `method=lora`."""
    from transformers import AutoModelForCausalLM

    if (Path(base_path) / "manifest.sha256.json").exists():
        verify_manifest(Path(base_path))
    model = AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **(lora or {})))
    return model


def by_name(path: str) -> Callable[..., Any]:
    """The function named `module:function` (a loader or loss factory from the loop's config)."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"{path!r}: name a function as 'module:function'")
    return getattr(importlib.import_module(module), name)


def trainable_fraction(model: torch.nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


IGNORE_INDEX = -100  # a label the loss skips (PyTorch's cross-entropy default)


def lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Next-token loss. Packed text rows ([batch, seq_len] ids): on every token. Instruction rows
    ([batch, 3, seq_len]: ids, labels, attention mask; `tasks.finetune.instructions`): on the
    labelled tokens only, the answers and their EOS."""
    if batch.dim() == 3:
        return answer_loss(model, batch)
    return model(input_ids=batch, labels=batch).loss


def answer_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The loss on the labelled tokens of left-padded instruction rows. Padding is masked (and
    positions counted from each row's first real token, as the serving app's batched decoding
    does); the columns of padding every row has are cut, and the vocabulary projection runs
    only from the first labelled column on, since answers end the rows."""
    ids, labels, mask = batch.unbind(1)
    used = mask.any(0).nonzero()
    lead = int(used.min()) if len(used) else 0
    ids, labels, mask = ids[:, lead:], labels[:, lead:], mask[:, lead:]
    answered = (labels != IGNORE_INDEX).any(0).nonzero()
    if not len(answered):
        raise ValueError("a batch of instruction rows without a single answer token")
    first = max(1, int(answered.min()))
    keep = ids.shape[1] - first + 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
    ).logits
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        labels[:, first:].flatten(),
        ignore_index=IGNORE_INDEX,
    )


def row_tokens(batch: torch.Tensor) -> int:
    """Tokens a batch trains on: every id of text rows, the unpadded ids of instruction rows."""
    return int(batch[:, 2].sum()) if batch.dim() == 3 else batch.numel()


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: list[torch.Tensor],
    amp: bool,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] = lm_loss,
) -> float:
    """One optimizer step over one or more micro-batches (gradient accumulation)."""
    model.train()
    total = 0.0
    for batch in micro_batches:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model, batch) / len(micro_batches)
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int
) -> None:
    """Trained weights and Adam state as safetensors (no pickle), the step as JSON."""
    core = _unwrap(model)
    save_file(
        {n: p.detach().contiguous() for n, p in core.named_parameters() if p.requires_grad},
        folder / "trainable.safetensors",
    )
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, s in state["state"].items() for k, v in s.items()}
    save_file(tensors, folder / "optimizer.safetensors")
    (folder / "trainer_state.json").write_text(
        json.dumps({"step": step, "param_groups": state["param_groups"]})
    )


def load_trainable(folder: Path, model: torch.nn.Module) -> None:
    """The trained weights of a checkpoint into a model built like the one that made it."""
    result = _unwrap(model).load_state_dict(
        load_file(folder / "trainable.safetensors"), strict=False
    )
    if result.unexpected_keys:
        raise ValueError(f"checkpoint weights do not fit the model: {result.unexpected_keys[:3]}")


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Weights and optimizer state; returns the step to continue from."""
    load_trainable(folder, model)
    meta = json.loads((folder / "trainer_state.json").read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(folder / "optimizer.safetensors").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"])


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """What every Ray Train worker runs: resume if a checkpoint exists, step, report."""
    import ray.train
    import ray.train.torch

    torch.manual_seed(config["seed"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    if config.get("model_loader"):  # e.g. a compressed candidate, loaded through its recipe
        model = by_name(config["model_loader"])(config["base_path"])
    else:
        model = load_model(config["base_path"], config["method"], config.get("lora"))
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config["learning_rate"]
    )
    step, resumed_from = 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            step = resumed_from = load_checkpoint(Path(folder), model, optimizer)
    loss_fn = lm_loss
    if config.get("loss"):  # e.g. knowledge distillation from a frozen teacher
        make_loss = by_name(config["loss"])
        loss_fn = make_loss(ray.train.torch.get_device(), config.get("loss_options", {}))
    tracker = _Tracker(config) if rank == 0 else None
    shard = ray.train.get_dataset_shard("train")
    amp = config["use_gpu"] and config["precision"] == "bf16"
    tokens, started = 0, 0.0
    device, accumulate = ray.train.torch.get_device(), config["gradient_accumulation"]
    while step < config["max_steps"]:
        epoch_start = step
        for micro in _steps(shard, config["batch_size"], accumulate):
            loss = train_step(model, optimizer, [ids.to(device) for ids in micro], amp, loss_fn)
            step += 1
            if not started:  # throughput from the second step: the first pays for warm-up
                started = time.perf_counter()
            else:
                tokens += sum(row_tokens(ids) for ids in micro)
            elapsed = time.perf_counter() - started
            metrics = {
                "step": step,
                "loss": loss,
                "tokens_per_s": tokens / elapsed if tokens else 0.0,
                "resumed_from": resumed_from,
                "world_size": context.get_world_size(),
            }
            if tracker:
                tracker.add(metrics)
            if step % config["checkpoint_every"] == 0 or step == config["max_steps"]:
                if tracker:
                    tracker.flush()
                if step >= config["max_steps"]:  # every worker's own usage, for the cost
                    metrics["worker_usage"] = gather_worker_reports(rank)
                with tempfile.TemporaryDirectory() as tmp:
                    if rank == 0:
                        save_checkpoint(Path(tmp), model, optimizer, step)
                    checkpoint = ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
                    ray.train.report(metrics, checkpoint=checkpoint)
            if step >= config["max_steps"]:
                break
        if step == epoch_start:
            raise ValueError(f"worker {rank}'s data shard holds less than one batch")


def _steps(
    shard: Any, batch_size: int, accumulate: int, blocks_of: int = 32
) -> Iterator[list[torch.Tensor]]:
    """The micro-batches of each optimizer step, cut from larger blocks of the worker's shard:
    Ray Data's per-batch cost, paid once a block, would otherwise take a third of a small
    model's step time here."""
    rows_per_step = batch_size * accumulate
    for block in shard.iter_torch_batches(batch_size=rows_per_step * blocks_of, dtypes=torch.long):
        rows = block["data"]
        for i in range(0, len(rows) - rows_per_step + 1, rows_per_step):
            step_rows = rows[i : i + rows_per_step]
            yield [step_rows[j : j + batch_size] for j in range(0, rows_per_step, batch_size)]


class _Tracker:
    """Rank 0 logs each step to the MLflow run the driver opened, in batches (one write per
    checkpoint), so tracking costs no time in the step."""

    def __init__(self, config: dict[str, Any]) -> None:
        from tasks.clients.tracking import run_on

        self._run = run_on(config["tracking_uri"], config["run_id"])
        self._pending: list[tuple[int, dict[str, float]]] = []

    def add(self, metrics: dict[str, float]) -> None:
        step = int(metrics["step"])
        self._pending.append((step, {k: metrics[k] for k in ("loss", "tokens_per_s")}))

    def flush(self) -> None:
        self._run.log_steps(self._pending)
        self._pending = []
