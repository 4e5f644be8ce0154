"""A tiny world for registry and promotion tests: a snapshot of pydoc topics, a tiny base
model with its own tokenizer, a training run over them, and compression runs whose chosen
candidate is that model trained for more or fewer steps (more steps, fewer bits per byte).
`serving_app` serves two registered versions of it on a local Ray Serve, with a RAG index."""

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, replace
from pathlib import Path
from pydoc_data.topics import topics

import httpx
import pytest
import torch
from pydantic import SecretStr
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tasks.clients import Clients
from tasks.clients.feature_store import ChunkIndex
from tasks.clients.tracking import start_run
from tasks.compress.methods.quantize import quantize_dynamic_int8
from tasks.compress.params import UNCOMPRESSED, CandidateRow, CompressReport
from tasks.core.sequences import pack
from tasks.embed.index import embed_snapshot
from tasks.embed.params import EmbedParams
from tasks.finetune.base_model import train_tokenizer
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.promote.params import Candidate, PromoteReport
from tasks.promote.registration import (
    apply_decision,
    decide_promotion,
    evaluate_models,
    register_candidate,
)
from tasks.shared.candidates import save_candidate
from tasks.shared.lake import split_snapshot
from tasks.shared.manifest import manifest_digest, write_manifest
from tasks.shared.settings import Settings, get_settings

SEQ_LEN = 32
EVAL_FRACTION = 0.3


@dataclass
class World:
    """A snapshot, a tiny base model with its own tokenizer, and the training run over them."""

    settings: Settings
    snapshot: str
    base_dir: Path
    training_run: str
    config: LlamaConfig
    rows: torch.Tensor  # packed training rows


@contextmanager
def tiny_world(root: Path) -> Iterator[World]:
    """Everything under `root`, with LLMOPS_HOME pointing there while it is in use."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention (100x here)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOPS_HOME", str(root / "state"))
        settings = get_settings()
        docs = root / "docs"
        docs.mkdir()
        for name in sorted(topics)[:40]:
            (docs / f"{name}.txt").write_text(topics[name])
        snapshot = ingest_folder(docs, IngestParams(), settings).snapshot_id
        _, train, _ = split_snapshot(settings, snapshot, EVAL_FRACTION)
        tokenizer = train_tokenizer(train["text"], 300)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
            eos_token_id=tokenizer.eos_token_id,
        )
        base_dir = settings.models_dir / "base" / "tiny"
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
        write_manifest(base_dir)
        ids = tokenizer(train["text"].tolist(), add_special_tokens=False)["input_ids"]
        rows = torch.from_numpy(pack(ids, SEQ_LEN, tokenizer.eos_token_id))
        with start_run(settings, "tiny-finetune") as run:
            run.log_params({"eval_fraction": EVAL_FRACTION, "seq_len": SEQ_LEN})
            run.set_tags({"base_model_path": str(base_dir), "data_snapshot": snapshot})
        yield World(settings, snapshot, base_dir, run.run_id, config, rows)
    torch.set_num_threads(threads)


def trained(world: World, steps: int) -> LlamaForCausalLM:
    """The base weights after `steps` of full training: more steps, fewer bits per byte."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(world.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(steps):
        batch = world.rows[(step * 8) % len(world.rows) :][:8]
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def compressed(
    world: World, name: str, steps: int, gate_passed: bool = True, quantized: bool = False
) -> CompressReport:
    """A compression run whose chosen candidate (logged as its `model`) is a trained model,
    int8-quantized if asked (its loading then rebuilds int8 modules from the recipe)."""
    folder = world.settings.models_dir / "compressed" / name
    model = trained(world, steps)
    recipe_steps = [quantize_dynamic_int8(model)] if quantized else []
    save_candidate(model, folder, {"method": "int8_dynamic", "steps": recipe_steps}, world.base_dir)
    chosen = "int8-dynamic" if gate_passed else UNCOMPRESSED
    lineage = {
        "data_snapshot": world.snapshot,
        "feature_view": "document_chunks",
        "base_model": "tiny",
        "base_model_path": str(world.base_dir),
        "base_model_sha256": manifest_digest(world.base_dir),
        "training_run": world.training_run,
        "training_method": "full",
        "compression_method": chosen,
    }
    with start_run(world.settings, f"compress-{name}") as run:
        run.log_artifacts(folder, artifact_path="model")
        run.set_tags({**lineage, "chosen": chosen})
    row = CandidateRow(
        name="int8-dynamic",
        method="int8_dynamic",
        folder=str(folder),
        size_bytes=1,
        parameters=1,
        latency_ms_p50=1.0,
        tokens_per_s=1.0,
        perplexity=1.0,
    )
    baseline = row.model_copy(update={"name": UNCOMPRESSED, "method": "none"})
    return CompressReport(
        run_id=run.run_id,
        source_run_id=world.training_run,
        snapshot_id=world.snapshot,
        baseline=baseline,
        candidates=[row],
        chosen=chosen,
        lineage=lineage,
    )


def promote(
    world: World, report: CompressReport, name: str, margin: float = 0.0, canary: bool = False
) -> PromoteReport:
    """Register a compression report's model and apply the promotion rule, as the flow does."""
    candidate = Candidate.from_report(report)
    registered = register_candidate(candidate, name, Clients(world.settings), "test")
    evaluation = evaluate_models(candidate, registered, Clients(world.settings))
    decision = decide_promotion(evaluation, candidate.gate_passed, margin)
    return apply_decision(
        registered, evaluation, decision, None, Clients(world.settings), "test", canary
    )


def free_port() -> int:
    """A loopback port nothing listens on now (for a Serve proxy or a Prefect server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The served app of the serving and feedback tests (one per test module: it holds the Ray CPUs).
MODEL, KEY, APP = "assistant", "s3cret-key", "serving-test"
ADMIN_KEY = "s3cret-admin-key"  # moves traffic; the callers' KEY cannot
WINDOW, MAX_PROMPT, MAX_TOKENS = 512, 200, 24
QUEUE = 4  # requests waiting per model replica beyond its batch of 8
WEIGHTS = {"2": 30.0, "1": 70.0}  # challenger (int8) first, as a canary lists it
DOCS = ("try", "with", "for", "while")


@dataclass
class Service:
    url: str
    settings: Settings
    tokenizer: object
    startup_s: float

    def client(self, key: str | None = KEY) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextmanager
def serving_world(root: Path) -> Iterator[World]:
    """A tiny world whose model has a WINDOW-position window (room for RAG passages)."""
    with tiny_world(root) as built:
        config = deepcopy(built.config)
        config.max_position_embeddings = WINDOW  # RoPE: no weights depend on it
        yield replace(built, config=config)


def fill_index(world: World, embedder) -> None:
    """Index a few pydoc topics, then close the Milvus Lite file: it opens in one process at a
    time, and the service's retriever is another process."""
    root = world.settings.home / "rag-docs"
    root.mkdir()
    for name in DOCS:
        (root / f"{name}.txt").write_text(topics[name])
    snapshot = ingest_folder(root, IngestParams(source_dir=str(root)), world.settings).snapshot_id
    with ChunkIndex(world.settings) as index:
        index.apply()
        params = EmbedParams(snapshot_id=snapshot, chunk_tokens=64, overlap_tokens=0)
        assert embed_snapshot(params, world.settings, index, embedder).collection_rows > 8


def sync_rag_docs(settings: Settings, embedder) -> Path:
    """Ingest the served world's corpus folder again and sync the live index with it, as the
    nightly would (only what changed is read and embedded); the folder."""
    root = settings.home / "rag-docs"  # what `fill_index` ingested
    snapshot = ingest_folder(root, IngestParams(source_dir=str(root)), settings).snapshot_id
    embed = EmbedParams(snapshot_id=snapshot, chunk_tokens=64, overlap_tokens=0)
    with ChunkIndex(settings, wait_s=15) as index:  # the retriever lets go of it
        embed_snapshot(embed, settings, index, embedder)
    return root


@contextmanager
def in_rag_docs(settings: Settings, embedder, document: Path) -> Iterator[Path]:
    """`document`, written into the served world's corpus folder, synced into the live index
    as the nightly would; taken out of both again afterwards."""
    sync_rag_docs(settings, embedder)
    try:
        yield document
    finally:
        document.unlink()
        sync_rag_docs(settings, embedder)


@contextmanager
def serving_app(world: World, embedder, otlp: str | None = None) -> Iterator[Service]:
    """Versions 1 (plain) and 2 (int8) registered, the index filled, the app deployed behind
    an API key on a free port with the request and feedback logs flushed every 0.5 s; Serve is
    shut down afterwards. Needs a running Ray."""
    from ray import serve

    from serving.app import deploy
    from serving.options import ModelOptions

    settings = world.settings.model_copy(
        update={
            "serving_api_key": SecretStr(KEY),
            "serving_admin_key": SecretStr(ADMIN_KEY),
            "serving_max_prompt_tokens": MAX_PROMPT,
            "serving_max_tokens": MAX_TOKENS,
            "otlp_endpoint": otlp,  # the router's and the replicas' spans go there
        }
    )
    for name, steps, quantized in (("v1", 10, False), ("v2", 3, True)):
        candidate = Candidate.from_report(compressed(world, name, steps, quantized=quantized))
        # Registered with these limits in their release records, which serving then applies.
        register_candidate(candidate, MODEL, Clients(settings), "test")
    fill_index(world, embedder)
    port = free_port()
    started = time.perf_counter()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    options = ModelOptions(max_queue=QUEUE)  # a small queue: the 429 test fills it
    deploy(settings, MODEL, WEIGHTS, name=APP, options=options, log_flush_s=0.5)
    startup = time.perf_counter() - started
    print(f"\nserve start + deploy of 2 versions and the retriever: {startup:.1f} s")
    tokenizer = AutoTokenizer.from_pretrained(world.base_dir)
    try:
        yield Service(f"http://127.0.0.1:{port}", settings, tokenizer, startup)
    finally:
        serve.shutdown()


def post(client: httpx.Client, path: str, body: dict, **headers: str) -> httpx.Response:
    return client.post(path, json=body, headers=headers)


def complete(client: httpx.Client, prompt: str, **fields) -> dict:
    r = post(client, "/v1/completions", {"model": MODEL, "prompt": prompt, **fields})
    assert r.status_code == 200, r.text
    return r.json()
