"""Secrets and personal data, end to end on the real services: the ingest_documents and
embed_documents flows under Prefect, Feast over Milvus Lite, retrieval through the client and
the fine-tuning instruction data built from the snapshot. A document holding a private key is
quarantined (its text kept there redacted) and is never searchable nor in any training
example; an e-mail address and a phone number are redacted in the index, the lake and the
training data. The same folder ingested again with `kinds={"private_key": "redact"}` is not
served from the cache: the document is kept, its key replaced by the placeholder."""

from pathlib import Path
from pydoc_data.topics import topics

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flows.embed import embed_documents
from flows.ingest import ingest_documents
from tasks.clients.embedder import EMBEDDING_MODEL, load_embedder
from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import search
from tasks.core.rails import IngestRails
from tasks.embed.params import EmbedParams
from tasks.finetune.instructions import document_passages, instruction_examples, read_documents
from tasks.ingest.params import IngestParams, IngestReport
from tasks.shared import lake
from tasks.shared.settings import Settings

pytestmark = pytest.mark.e2e

EMAIL, PHONE = "grace.hopper@navy-systems.io", "+1 415 555 0134"


def rsa_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def build_folder(root: Path, pem: str) -> None:
    root.mkdir()
    for name in ("try", "with", "for"):
        (root / f"{name}.txt").write_text(topics[name])
    (root / "deploy_key.md").write_text(
        "# Deploying the documentation site\n\nThe build server logs in with this key:\n\n"
        f"{pem}\nRotate it every quarter."
    )
    (root / "maintainers.md").write_text(
        "# Maintainers\n\nThe release manager answers questions about the release schedule. "
        f"Write to {EMAIL} or call {PHONE} on weekdays."
    )


def ingest_and_embed(root: Path, rails: IngestRails) -> IngestReport:
    report = ingest_documents(IngestParams(source_dir=str(root), rails=rails))
    embed_documents(EmbedParams(snapshot_id=report.snapshot_id, chunk_tokens=96))
    return report


def online_passages(settings: Settings) -> pd.DataFrame:
    with ChunkIndex(settings) as index:
        rows = index._client.query(
            index.collection, filter="", output_fields=["source", "text"], limit=10_000
        )
    return pd.DataFrame(rows)


def stored(path: Path) -> bytes:
    """A file's content as stored, a parquet file's decoded (its pages may be compressed)."""
    if path.suffix != ".parquet":
        return path.read_bytes()
    table = pq.read_table(path)
    strings = [c for c in table.column_names if pa.types.is_string(table.schema.field(c).type)]
    return "\n".join(str(v) for c in strings for v in table[c].to_pylist()).encode()


def leaks(settings: Settings, secrets: list[str]) -> list[str]:
    """Files under the state folder (the lake, Feast and Milvus Lite, results) holding any of
    `secrets`."""
    wanted = [s.encode() for s in secrets]
    return [
        str(path.relative_to(settings.home))
        for path in settings.home.rglob("*")
        if path.is_file() and any(w in stored(path) for w in wanted)
    ]


def training_text(settings: Settings, snapshot_id: str) -> str:
    """What training sees of the snapshot: its documents' titles and texts (the `text` data),
    their passages, and every prompt and answer of the instruction data built from them (both
    sides of the split: training and held-out evaluation are built by the same functions)."""
    tokenizer = load_embedder(EMBEDDING_MODEL).tokenizer
    members = lake.read_snapshot(settings.snapshots_dir, snapshot_id)
    docs = read_documents(settings, set(members["doc_id"]))
    passages = document_passages(settings, docs, tokenizer)

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    examples = instruction_examples(docs, passages, count, 512, questions_per_document=40)
    assert examples
    chunks = [c.text for doc in passages.values() for c in doc]
    return "\n".join(
        [*docs["text"], *docs["title"], *chunks] + [e.prompt + e.answer for e in examples]
    )


def test_a_private_key_is_quarantined_and_personal_data_redacted_end_to_end(
    prefect_harness, tmp_path: Path, settings: Settings
) -> None:
    pem = rsa_key_pem()
    key_line = pem.splitlines()[5]  # a line of the key's base64 body
    root = tmp_path / "docs"
    build_folder(root, pem)

    report = ingest_and_embed(root, IngestRails())

    assert (report.read, report.accepted, report.quarantined) == (5, 4, 1)
    assert report.reasons == {"secret: private_key": 1}
    assert report.findings == {
        "email": {"redact": 1},
        "phone": {"redact": 1},
        "private_key": {"quarantine": 1},
    }
    [held] = lake.read_quarantine(settings.quarantine_dir).itertuples()
    assert held.source == "deploy_key.md" and list(held.reasons) == [
        "secret: private_key at line 5"
    ]
    assert "this key:\n\n[REDACTED:PRIVATE_KEY]\n\nRotate it" in held.text

    passages = online_passages(settings)
    assert set(passages["source"]) == {"try.txt", "with.txt", "for.txt", "maintainers.md"}
    maintainers = " ".join(passages.loc[passages["source"] == "maintainers.md", "text"])
    assert "Write to [REDACTED:EMAIL] or call [REDACTED:PHONE]" in maintainers
    assert not passages["text"].str.contains(EMAIL, regex=False).any()
    hits = search(pem, top_k=10, settings=settings)
    assert hits and all(h.source != "deploy_key.md" and key_line not in h.text for h in hits)
    hits = search("How do I contact the release manager?", top_k=1, settings=settings)
    assert hits[0].source == "maintainers.md" and "[REDACTED:EMAIL]" in hits[0].text

    text = training_text(settings, report.snapshot_id)
    assert "[REDACTED:EMAIL]" in text and "release manager" in text
    for secret in (key_line, "PRIVATE KEY-----", EMAIL, PHONE):
        assert secret not in text
    # The lake's documents and chunks (the offline store) hold the redacted text, no file
    # under the state folder the raw one.
    kept = {p.split("/part-")[0] for p in leaks(settings, ["Write to [REDACTED:EMAIL]"])}
    assert {"lake/documents", "lake/chunks"} <= kept
    assert leaks(settings, [key_line, EMAIL, PHONE]) == []

    # Another policy on the same folder and state is a new ingest, not the cached one.
    redacting = ingest_and_embed(root, IngestRails(kinds={"private_key": "redact"}))

    assert redacting.run_id != report.run_id
    assert (redacting.read, redacting.accepted, redacting.quarantined) == (5, 5, 0)
    assert redacting.findings["private_key"] == {"redact": 1}
    passages = online_passages(settings)
    deploy = " ".join(passages.loc[passages["source"] == "deploy_key.md", "text"])
    assert "this key:\n\n[REDACTED:PRIVATE_KEY]\n\nRotate it" in deploy
    assert search(pem, top_k=10, settings=settings)  # searchable now, the key never
    text = training_text(settings, redacting.snapshot_id)
    assert "[REDACTED:PRIVATE_KEY]" in text and key_line not in text
    assert leaks(settings, [key_line, EMAIL, PHONE]) == []
