"""Ingest stage: files → normalised, validated documents in the lake; bad rows → quarantine."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field
from tqdm import tqdm

from tasks import lake
from tasks.caching import ingest_key, stage_task
from tasks.core.documents import Batch, prepare_batch, quarantine_row, reason_kind
from tasks.core.iterables import batched
from tasks.demo_corpus import write_python_docs
from tasks.quality import DocumentValidator
from tasks.settings import Settings, get_settings
from tasks.sources import iter_records


class IngestParams(BaseModel):
    """What to ingest and the rules a document must pass."""

    source_dir: str | None = Field(
        None, description="Folder of .txt/.md/.html/.jsonl/.parquet files; empty = demo corpus."
    )
    demo_topics: list[str] | None = Field(
        None, description="Demo corpus: pydoc topics to include (empty = all of them)."
    )
    demo_modules: list[str] | None = Field(
        None, description="Demo corpus: standard-library modules whose docs to include."
    )
    text_field: str = Field("text", description="Field holding the text in .jsonl/.parquet.")
    min_chars: int = Field(20, ge=1, description="Shortest accepted document, in characters.")
    max_chars: int = Field(2_000_000, ge=1, description="Longest accepted document.")
    max_file_bytes: int = Field(20_000_000, ge=1, description="Larger single files are refused.")
    batch_size: int = Field(500, ge=1, description="Documents validated and written at a time.")


class IngestReport(BaseModel):
    run_id: str
    source_root: str
    snapshot_id: str
    read: int
    accepted: int
    quarantined: int
    new_documents: int
    reasons: dict[str, int]
    seconds: float

    @property
    def reconciles(self) -> bool:
        return self.read == self.accepted + self.quarantined


def _validate(batch: Batch, validator: DocumentValidator, run_id: str) -> pd.DataFrame:
    """Move rows that break an expectation into `batch.quarantined`; return the rest."""
    frame = pd.DataFrame(batch.rows)
    if frame.empty:
        return frame
    failed = validator.failures(frame)
    for i, reasons in failed.items():
        row = frame.iloc[i]
        batch.quarantined.append(quarantine_row(run_id, row["source"], reasons, row["text"]))
    return frame.drop(index=list(failed)).reset_index(drop=True)


def ingest_folder(root: Path, params: IngestParams, settings: Settings) -> IngestReport:
    """Stream `root` through normalisation and validation, a batch at a time."""
    started, run_id = time.perf_counter(), uuid.uuid4().hex[:12]
    source_root = str(root.resolve())
    validator = DocumentValidator(params.min_chars, params.max_chars)
    known_docs = lake.document_ids(settings.documents_dir)
    known_quarantine = lake.quarantine_ids(settings.quarantine_dir)
    seen: dict[str, str] = {}
    members: list[pd.DataFrame] = []
    read = accepted = quarantined = new = 0
    reasons: Counter[str] = Counter()
    records = iter_records(root, max_file_bytes=params.max_file_bytes, text_field=params.text_field)
    for chunk in batched(tqdm(records, desc="ingest", unit="doc"), params.batch_size):
        batch = prepare_batch(chunk, seen, run_id)
        good = _validate(batch, validator, run_id)
        read += len(chunk)
        accepted += len(good)
        quarantined += len(batch.quarantined)
        reasons.update(reason_kind(r) for q in batch.quarantined for r in q["reasons"])
        for q in batch.quarantined:
            q["source_root"] = source_root
        lake.append_quarantine(
            settings.quarantine_dir,
            [q for q in batch.quarantined if q["quarantine_id"] not in known_quarantine],
        )
        if good.empty:
            continue
        good["source_root"] = source_root
        good["event_timestamp"] = datetime.now(UTC)
        fresh = good[~good["doc_id"].isin(known_docs)]
        new += lake.append_documents(settings.documents_dir, fresh)
        known_docs.update(fresh["doc_id"])
        members.append(good[["doc_id", "source", "source_root"]])
    # Written even when empty: a folder with no valid document left is a real state to sync.
    snapshot = pd.concat(members) if members else pd.DataFrame(columns=lake.SNAPSHOT_SCHEMA.names)
    snapshot_id = lake.write_snapshot(settings.snapshots_dir, snapshot)
    return IngestReport(
        run_id=run_id,
        source_root=source_root,
        snapshot_id=snapshot_id,
        read=read,
        accepted=accepted,
        quarantined=quarantined,
        new_documents=new,
        reasons=dict(reasons),
        seconds=round(time.perf_counter() - started, 3),
    )


@task
def resolve_source(params: IngestParams) -> Path:
    """The folder to ingest: the given one, or the Python docs demo corpus written out now."""
    if params.source_dir:
        return Path(params.source_dir)
    dest = get_settings().corpus_dir / "python-docs"
    return write_python_docs(dest, params.demo_topics, params.demo_modules)


@stage_task(ingest_key)
def ingest_source(root: Path, params: IngestParams) -> IngestReport:
    report = ingest_folder(root, params, get_settings())
    if not report.reconciles:  # a bug, never a data problem: stop before anything builds on it
        raise RuntimeError(f"counts do not reconcile: {report}")
    return report


@task
def publish_ingest_report(report: IngestReport) -> None:
    quarantine = lake.read_quarantine(get_settings().quarantine_dir, report.run_id).head(50)
    rows = "\n".join(f"| `{q.source}` | {'; '.join(q.reasons)} |" for q in quarantine.itertuples())
    markdown = (
        f"# Ingest {report.run_id}\n\n"
        f"Source: `{report.source_root}`  \nSnapshot: `{report.snapshot_id}`\n\n"
        "| read | accepted | quarantined | new documents | seconds | docs/s |\n"
        "|---:|---:|---:|---:|---:|---:|\n"
        f"| {report.read} | {report.accepted} | {report.quarantined} | {report.new_documents} "
        f"| {report.seconds} | {report.read / max(report.seconds, 1e-9):.1f} |\n\n"
        f"read = accepted + quarantined: **{report.reconciles}**\n\n"
        "## Quarantine reasons\n\n| reason | rows |\n|---|---:|\n"
        + "".join(f"| {k} | {n} |\n" for k, n in sorted(report.reasons.items()))
        + "\n## Quarantined rows (first 50 of this run)\n\n| source | reasons |\n|---|---|\n"
        + rows
    )
    create_markdown_artifact(markdown, key="ingest-report", description="Ingest counts")
