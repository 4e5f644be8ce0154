"""The base model to fine-tune: a local path, a hub id, or the default built here from scratch.

No pretrained causal LM can be downloaded on this platform's default machine, so the default
base is a small Llama-architecture model initialised from its config, with a byte-level BPE
tokenizer trained on the corpus. It has learnt nothing before fine-tuning, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tasks.core.text import content_id
from tasks.shared.manifest import verify_manifest, write_manifest

SCRATCH = "scratch"
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


class ScratchSpec(BaseModel):
    """Shape of the from-scratch default (about 1.8M parameters)."""

    vocab_size: int = 8000
    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 512
    seed: int = 0


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL)


def build_scratch_model(dest: Path, texts: Iterable[str], spec: ScratchSpec) -> Path:
    """Tokenizer trained on `texts`, a randomly initialised Llama, safetensors and a manifest."""
    import torch

    tokenizer = train_tokenizer(texts, spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    (dest / "ORIGIN.json").write_text(
        json.dumps({"origin": "initialised from scratch (random weights)", **spec.model_dump()})
    )
    write_manifest(dest)
    return dest


def resolve_base_model(
    base: str, models_dir: Path, corpus_key: str, texts: Iterable[str], spec: ScratchSpec
) -> Path:
    """A verified local folder for `base`, or a clear error before any training starts."""
    if base == SCRATCH:
        dest = (
            models_dir
            / "base"
            / f"llama-scratch-{content_id(corpus_key + spec.model_dump_json())[:12]}"
        )
        if not (dest / "manifest.sha256.json").exists():
            build_scratch_model(dest, texts, spec)
        verify_manifest(dest)
        return dest
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ValueError(f"base model folder {path} has no config.json")
        return path
    if base.startswith((".", "/", "~")) or base.count("/") > 1:
        raise FileNotFoundError(f"base model path {base} does not exist: give an existing folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # the hub cache only: a run must not depend on the network
        return Path(snapshot_download(base, local_files_only=True))
    except LocalEntryNotFoundError:
        raise ValueError(
            f"hub id {base!r} is not in the local Hugging Face cache and the hub is not "
            f"reachable: download it where there is network, or give a local path, or use "
            f"{SCRATCH!r}"
        ) from None
