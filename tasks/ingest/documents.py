"""Ingest stage: files → normalised, screened, validated documents in the lake; bad rows and
documents holding what the rails quarantine → quarantine."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from tasks.core.documents import Batch, prepare_batch, quarantine_row, reason_kind
from tasks.core.iterables import batched
from tasks.ingest import incremental
from tasks.ingest.incremental import reading_policy
from tasks.ingest.params import SHOWN_QUARANTINE, IngestParams, IngestReport, QuarantinedRow
from tasks.ingest.quality import DocumentValidator
from tasks.ingest.sources import Source
from tasks.ingest.sources.files import file_source
from tasks.shared import lake
from tasks.shared.caching import rails_rules_digest
from tasks.shared.settings import Settings


def _validate(
    batch: Batch, validator: DocumentValidator, run_id: str, at: datetime
) -> pd.DataFrame:
    """Move rows that break an expectation into `batch.quarantined`; return the rest."""
    frame = pd.DataFrame(batch.rows)
    if frame.empty:
        return frame
    failed = validator.failures(frame)
    for i, reasons in failed.items():
        row = frame.iloc[i]
        batch.quarantined.append(quarantine_row(run_id, row["source"], reasons, row["text"], at))
    return frame.drop(index=list(failed)).reset_index(drop=True)


def _reason_kinds(reasons: list[str]) -> list[str]:
    return list(dict.fromkeys(reason_kind(r) for r in reasons))


def findings_by_kind(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{(kind, action): n} as {kind: {action: n}}, the report's shape."""
    nested: dict[str, dict[str, int]] = {}
    for (kind, action), n in sorted(counts.items()):
        nested.setdefault(kind, {})[action] = n
    return nested


def ingest_folder(root: Path | str, params: IngestParams, settings: Settings) -> IngestReport:
    """Ingest the files under a folder or an object-store URL (`s3://bucket/prefix`)."""
    return ingest(file_source(str(root), params, settings), params, settings)


def ingest(source: Source, params: IngestParams, settings: Settings) -> IngestReport:
    """Stream what `source` holds (the items changed since the last run over its root) through
    normalisation, the secrets and personal data rails (`params.rails`) and validation, a
    batch at a time; the snapshot holds the unchanged items' documents too."""
    started, run_id = time.perf_counter(), uuid.uuid4().hex[:12]
    source_root = source.root
    policy = reading_policy(params, rails_rules_digest())
    listed = list(source.list())
    todo = incremental.plan(listed, lake.read_listing(settings.listings_dir, source_root), policy)
    validator = DocumentValidator(params.min_chars, params.max_chars)
    known_docs = lake.document_ids(settings.documents_dir)
    known_quarantine = lake.quarantine_ids(settings.quarantine_dir)
    seen: dict[str, str] = {}
    members: list[pd.DataFrame] = []
    read = accepted = quarantined = new = 0
    reasons: Counter[str] = Counter()
    findings: Counter[tuple[str, str]] = Counter()
    # Kept here, not read back from the lake: a re-run's rows are already there (under the
    # first run's id) and are not written again, so a lookup by this run's id finds none.
    shown: list[QuarantinedRow] = []
    records = source.read(todo.to_read)
    for chunk in batched(tqdm(records, desc="ingest", unit="doc"), params.batch_size):
        at = datetime.now(UTC)
        batch = prepare_batch(chunk, seen, run_id, at, params.rails)
        good = _validate(batch, validator, run_id, at)
        read += len(chunk)
        accepted += len(good)
        quarantined += len(batch.quarantined)
        findings += batch.findings
        # Each row once per kind of reason (a document with two private keys is one row).
        reasons.update(kind for q in batch.quarantined for kind in _reason_kinds(q["reasons"]))
        for q in batch.quarantined:
            q["source_root"] = source_root
        shown += [
            QuarantinedRow(source=q["source"], reasons=q["reasons"])
            for q in batch.quarantined[: SHOWN_QUARANTINE - len(shown)]
        ]
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
    fresh_members = (
        pd.concat(members) if members else pd.DataFrame(columns=lake.SNAPSHOT_SCHEMA.names)
    )
    kept = todo.carried.dropna(subset=["doc_id"]).assign(source_root=source_root)
    # Written even when empty: a folder with no valid document left is a real state to sync.
    snapshot = pd.concat([fresh_members, kept[lake.SNAPSHOT_SCHEMA.names]], ignore_index=True)
    snapshot_id = lake.write_snapshot(settings.snapshots_dir, snapshot)
    listing = incremental.listing(todo, fresh_members, policy)
    lake.write_listing(settings.listings_dir, source_root, listing)
    return IngestReport(
        run_id=run_id,
        source_root=source_root,
        snapshot_id=snapshot_id,
        read=read,
        unchanged=todo.unchanged,
        accepted=accepted,
        quarantined=quarantined,
        new_documents=new,
        reasons=dict(reasons),
        findings=findings_by_kind(findings),
        seconds=round(time.perf_counter() - started, 3),
        quarantined_rows=shown,
    )
