"""Models compared on one held-out set in bits per byte, whatever their tokenizers.

Perplexity depends on the vocabulary (the default base's BPE tokenizer is trained per data
snapshot), so models are compared by the information they need per UTF-8 byte of text: the
total next-token negative log-likelihood in nats over the held-out texts, divided by
ln 2 times the bytes of those texts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tasks.core.sequences import pack
from tasks.shared.candidates import is_candidate, load_candidate
from tasks.shared.lake import split_snapshot
from tasks.shared.manifest import PICKLE_SUFFIXES, verify_manifest
from tasks.shared.model_files import load_tensors
from tasks.shared.settings import Settings

ADAPTER_CONFIG = "adapter_config.json"


def held_out_texts(settings: Settings, snapshot_id: str, eval_fraction: float) -> list[str]:
    """The snapshot's documents that fine-tuning held out (the same split as training's)."""
    _, _, held_out = split_snapshot(settings, snapshot_id, eval_fraction)
    return held_out["text"].tolist()


@torch.inference_mode()
def bits_per_byte(
    model: Any, tokenizer: Any, texts: Sequence[str], seq_len: int = 128, batch_size: int = 16
) -> float:
    """Next-token NLL over `texts` (each ended by EOS, packed into rows of `seq_len`; the tail
    that fills no row is scored as one shorter row) in bits per UTF-8 byte of the texts."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token to separate documents with")
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)
    if n_bytes == 0:
        raise ValueError("no held-out text to evaluate on")
    seq_len = min(seq_len, getattr(model.config, "max_position_embeddings", seq_len))
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    rows = pack(ids, seq_len, eos)
    stream = np.fromiter(chain.from_iterable([*x, eos] for x in ids), dtype=np.int64)
    tail = stream[rows.size :]
    batches = [torch.from_numpy(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    if len(tail) >= 2:  # one token predicts nothing
        batches.append(torch.from_numpy(tail).unsqueeze(0))
    model.eval()
    nats = 0.0
    for batch in tqdm(batches, desc="bits/byte", leave=False, disable=len(batches) < 8):
        loss = model(input_ids=batch, labels=batch).loss  # mean over the predicted tokens
        nats += float(loss) * batch.shape[0] * (batch.shape[1] - 1)
    return nats / (math.log(2) * n_bytes)


def load_model_folder(folder: Path, allow_pickle: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a compressed candidate, a PEFT adapter (its base model loaded
    from the path in its config) or a plain Hugging Face folder. Every folder is checked
    against its sha256 manifest first; pickle weights only when allowed, as plain tensors."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if is_candidate(folder):
        model = load_candidate(folder, allow_pickle)  # verifies the manifest itself
    else:
        verify_manifest(folder, allow_pickle)
        if (folder / ADAPTER_CONFIG).exists():
            model = _load_adapter(folder, allow_pickle)
        else:
            model = _load_plain(folder, allow_pickle)
    return model.eval(), AutoTokenizer.from_pretrained(folder)


def _load_adapter(folder: Path, allow_pickle: bool) -> Any:
    from peft import PeftModel

    base = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise ValueError(
            f"{folder}: the adapter's base model {base!r} is not a local folder; load needs the "
            "verified base model files"
        )
    base_model, _ = load_model_folder(Path(base), allow_pickle)
    # PEFT reads adapter_model.safetensors (or, when allowed, .bin with weights_only=True).
    return PeftModel.from_pretrained(base_model, folder)


def _load_plain(folder: Path, allow_pickle: bool) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    if any(folder.glob("*.safetensors")):
        return AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    weights = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not weights:
        raise ValueError(f"{folder} holds no model weights (safetensors or, if allowed, pickle)")
    state: dict[str, torch.Tensor] = {}
    for path in weights:  # refused unless allowed; never unpickles code
        state.update(load_tensors(path, allow_pickle))
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    result = model.load_state_dict(state, strict=False)
    model.tie_weights()
    params = model.state_dict()
    loaded = {params[k].data_ptr() for k in state if k in params}
    missing = [k for k in result.missing_keys if params[k].data_ptr() not in loaded]  # not tied
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{folder}: weights do not fit the config (missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )
    return model


@torch.no_grad()
def perplexity(model: torch.nn.Module, rows: torch.Tensor, batch_size: int = 16) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        total += float(model(input_ids=batch, labels=batch).loss) * len(batch)
        count += len(batch)
    return math.exp(total / count)
