"""Compressed candidates on disk: safetensors, a recipe that says how to rebuild the module
tree, the tokenizer, and a sha256 manifest.

A candidate folder holds `config.json` (the Hugging Face config of the shapes it has now),
`model.safetensors`, `compression.json` (the recipe) and the tokenizer. Loading builds the
model from its config, replays each recipe step's `rebuild` (which puts empty shells of the
right kind where the method replaced modules: int8 linears, factored linears, half precision),
then loads the tensors strictly. Nothing is pickled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tasks.shared.layers import REBUILDERS
from tasks.shared.manifest import verify_manifest, write_manifest

RECIPE = "compression.json"
WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _encode(state: dict[str, torch.Tensor], sparse: set[str]) -> dict[str, torch.Tensor]:
    """Drop tensors that share storage with an earlier one (tied weights) and store the
    listed ones as non-zero values plus a packed bit mask."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, int], str] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen and tensor.numel():
            continue
        seen[key] = name
        if name in sparse:
            mask = tensor != 0
            out[f"{name}::values"] = tensor[mask].contiguous()
            out[f"{name}::mask"] = _pack_bits(mask.flatten())
        else:
            out[name] = tensor.detach().contiguous()
    return out


def _decode(stored: dict[str, torch.Tensor], shapes: dict[str, torch.Size]) -> dict[str, Any]:
    state: dict[str, torch.Tensor] = {}
    for name, tensor in stored.items():
        if name.endswith("::mask"):
            continue
        if name.endswith("::values"):
            base = name.removesuffix("::values")
            mask = _unpack_bits(stored[f"{base}::mask"], shapes[base].numel()).view(shapes[base])
            dense = torch.zeros(shapes[base], dtype=tensor.dtype)
            dense[mask] = tensor
            state[base] = dense
        else:
            state[name] = tensor
    return state


def _pack_bits(bits: torch.Tensor) -> torch.Tensor:
    padded = torch.zeros((bits.numel() + 7) // 8 * 8, dtype=torch.uint8)
    padded[: bits.numel()] = bits.to(torch.uint8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    return (padded.view(-1, 8) * weights).sum(1, dtype=torch.uint8)


def _unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    shifts = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)
    return ((packed.unsqueeze(1) >> shifts) & 1).flatten()[:count].bool()


def save_candidate(
    model: torch.nn.Module,
    dest: Path,
    recipe: dict[str, Any],
    tokenizer_from: Path,
    sparse: set[str] = frozenset(),  # type: ignore[assignment]
) -> Path:
    """Write the model, its recipe (`{"method": ..., "steps": [...]}`) and tokenizer."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    model.config.save_pretrained(dest)
    save_file(_encode(model.state_dict(), set(sparse)), dest / WEIGHTS)
    (dest / RECIPE).write_text(json.dumps({**recipe, "sparse": sorted(sparse)}, indent=1))
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copyfile(tokenizer_from / name, dest / name)
    write_manifest(dest)
    return dest


def read_recipe(folder: Path) -> dict[str, Any]:
    return json.loads((folder / RECIPE).read_text())


def is_candidate(folder: Path) -> bool:
    return (folder / RECIPE).exists()


def load_candidate(folder: Path, allow_pickle: bool = False) -> torch.nn.Module:
    """The model exactly as saved, after checking every file against the manifest."""
    from transformers import AutoConfig, AutoModelForCausalLM

    verify_manifest(folder, allow_pickle=allow_pickle)
    recipe = read_recipe(folder)
    torch.manual_seed(0)  # from_config initialises weights that loading then overwrites
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    for step in recipe["steps"]:
        if step["kind"] not in REBUILDERS:
            raise ValueError(f"{folder}: unknown compression step {step['kind']!r}")
        REBUILDERS[step["kind"]](model, step)
    shapes = {name: t.shape for name, t in model.state_dict().items()}
    state = _decode(load_file(folder / WEIGHTS), shapes)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not _shares_storage(model, k, state)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{folder}: weights do not fit the recipe (missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )
    return model.eval()


def _shares_storage(model: torch.nn.Module, key: str, state: dict[str, Any]) -> bool:
    """A tied tensor is stored once; its twin is filled by the tie, not the file."""
    tensor = model.state_dict()[key]
    ptr = tensor.untyped_storage().data_ptr()
    return any(
        other.untyped_storage().data_ptr() == ptr
        for name, other in model.state_dict().items()
        if name != key and name in state
    )
