"""Evaluation sets as versioned data: questions generated from a snapshot's held-out documents
(offline, without an LLM), unanswerable questions, and golden sets a person supplies.

A set is one parquet file under `settings.evalsets_dir`, named by a content hash of its
snapshot and rows: the same snapshot and generator give the same file (a re-run writes
nothing), a new snapshot gives a new set. Sets are read by evaluation only, never for training;
`training_leaks` names any generated question whose source sits on the training side.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.questions import Question, questions_from_document, unanswerable_questions
from tasks.core.scorers import Example
from tasks.core.text import content_id, normalize_text
from tasks.evaluate.golden import GoldenReport, validate_golden
from tasks.shared import lake
from tasks.shared.settings import Settings

EVAL_COLUMNS = (
    "question_id",
    "question",
    "reference",
    "source_doc_ids",
    "source_chunk_id",
    "kind",
    "answerable",
    "origin",
)
ORIGINS = ("generated", "unanswerable", "golden")
EVAL_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("question", pa.string()),
        ("reference", pa.string()),
        ("source_doc_ids", pa.list_(pa.string())),
        ("source_chunk_id", pa.string()),
        ("kind", pa.string()),
        ("answerable", pa.bool_()),
        ("origin", pa.string()),
    ]
)
_META = b"llmops.evalset"
_WORD = re.compile(r"\w+")


def normalize_question(question: str) -> str:
    """What makes two questions the same: Unicode NFC, case and runs of whitespace ignored."""
    return " ".join(normalize_text(question).casefold().split())


def question_id(question: str) -> str:
    return content_id(normalize_question(question))


@dataclass(frozen=True)
class EvalSet:
    """One stored evaluation set; `frame` has the `EVAL_COLUMNS`, one row per question."""

    set_id: str
    snapshot_id: str
    origin: str  # "generated" (with its unanswerables) or "golden"
    path: Path
    frame: pd.DataFrame = field(repr=False, compare=False)
    params: dict = field(default_factory=dict, compare=False)

    def examples(self) -> list[Example]:
        return [
            Example(
                question_id=r.question_id,
                question=r.question,
                reference=r.reference,
                source_doc_ids=tuple(r.source_doc_ids),
                answerable=bool(r.answerable),
            )
            for r in self.frame.itertuples(index=False)
        ]

    def counts(self) -> dict[str, int]:
        """Questions by kind, and how many held-out documents they come from."""
        kinds = self.frame["kind"].value_counts().sort_index()
        docs = {d for ids in self.frame["source_doc_ids"] for d in ids}
        return {"questions": len(self.frame), "documents": len(docs), **kinds.to_dict()}


def load_set(settings: Settings, set_id: str) -> EvalSet:
    path = settings.evalsets_dir / f"{set_id}.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"evaluation set {set_id} not found under {settings.evalsets_dir}: generate it from "
            "a snapshot or load a golden set first"
        )
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(_META, b"{}"))
    frame = table.to_pandas()
    frame["source_doc_ids"] = frame["source_doc_ids"].map(list)
    return EvalSet(set_id, meta["snapshot_id"], meta["origin"], path, frame, meta["params"])


def store_set(
    settings: Settings, snapshot_id: str, origin: str, rows: list[dict], params: dict
) -> EvalSet:
    """Write the rows as a set named by their content hash, unless that set exists already."""
    if not rows:
        raise ValueError(f"snapshot {snapshot_id}: an evaluation set needs at least one question")
    rows = [{c: row[c] for c in EVAL_COLUMNS} for row in rows]
    ids = [r["question_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("an evaluation set holds each question once (duplicate question_id)")
    key = json.dumps({"snapshot_id": snapshot_id, "origin": origin, "rows": rows}, sort_keys=True)
    set_id = content_id(key)[:16]
    path = settings.evalsets_dir / f"{set_id}.parquet"
    if not path.exists():
        meta = {"set_id": set_id, "snapshot_id": snapshot_id, "origin": origin, "params": params}
        table = pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)
        table = table.replace_schema_metadata({_META: json.dumps(meta).encode()})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # readers never see half a set
    return load_set(settings, set_id)


def _squash(text: str) -> str:
    return " ".join(text.split())


def chunk_texts(settings: Settings, doc_ids: Collection[str]) -> dict[str, list[tuple[str, str]]]:
    """The embed stage's current chunks of these documents (those its manifest lists), as
    doc_id -> [(chunk_id, text with whitespace collapsed)] in chunk order; {} before embed."""
    manifest = lake.read_manifest(settings.index_manifest)
    current = manifest.loc[manifest["doc_id"].isin(set(doc_ids)), "chunk_id"]
    if current.empty or not settings.chunks_dir.exists():
        return {}
    dataset = ds.dataset(settings.chunks_dir, format="parquet", schema=lake.CHUNK_SCHEMA)
    table = dataset.to_table(
        columns=["chunk_id", "doc_id", "chunk_index", "text"],
        filter=ds.field("chunk_id").isin(pa.array(sorted(set(current)))),
    )
    frame = table.to_pandas().drop_duplicates("chunk_id").sort_values(["doc_id", "chunk_index"])
    chunks: dict[str, list[tuple[str, str]]] = {}
    for row in frame.itertuples(index=False):
        chunks.setdefault(row.doc_id, []).append((row.chunk_id, _squash(row.text)))
    return chunks


def chunk_holding(
    chunks: dict[str, list[tuple[str, str]]], doc_ids: Iterable[str], reference: str
) -> str | None:
    """The first chunk of the source documents that holds the whole reference, else the first
    that holds its opening words (a reference cut by a chunk boundary); None when none does."""
    wanted = _squash(reference)
    opening = " ".join(wanted.split()[:12])
    candidates = [c for d in doc_ids for c in chunks.get(d, [])]
    for needle in (wanted, opening):
        for chunk_id, text in candidates:
            if needle and needle in text:
                return chunk_id
    return None


def _round_robin(per_document: list[list[Question]], limit: int) -> list[Question]:
    """One question from each document in turn, then a second from each, ...; a question
    already taken (same normalised text, from another document) is skipped."""
    picked: list[Question] = []
    seen: set[str] = set()
    for depth in range(max(map(len, per_document), default=0)):
        for questions in per_document:
            if len(picked) >= limit:
                return picked
            if depth < len(questions) and question_id(questions[depth].question) not in seen:
                seen.add(question_id(questions[depth].question))
                picked.append(questions[depth])
    return picked


def generated_set(
    settings: Settings,
    snapshot_id: str | None,
    eval_fraction: float = 0.1,
    max_questions: int = 200,
    unanswerable_share: float = 0.15,
    per_document: int = 3,
    seed: int = 0,
) -> EvalSet:
    """Questions from the snapshot's held-out documents (the same split, by the same
    `eval_fraction`, as fine-tuning's, so training never saw them), spread over as many of them
    as the budget allows, plus questions on subjects the corpus does not cover (to decline)
    making up about `unanswerable_share` of the set. Stored once per content; see `store_set`."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if not 0 <= unanswerable_share < 1:
        raise ValueError(f"unanswerable_share must be in [0, 1), got {unanswerable_share}")
    if max_questions < 1 or per_document < 1:
        raise ValueError(
            f"max_questions and per_document must be >= 1, got {max_questions}, {per_document}"
        )
    snapshot_id, train, held_out = lake.split_snapshot(
        settings, snapshot_id, eval_fraction, columns=("doc_id", "title", "text")
    )
    per_doc = [
        questions_from_document(d.doc_id, d.title, d.text, per_document)
        for d in held_out.itertuples(index=False)
    ]
    most_unanswerable = round(max_questions * unanswerable_share)
    budget = max_questions - most_unanswerable
    answerable = _round_robin(per_doc, budget)
    if not answerable:
        raise ValueError(
            f"snapshot {snapshot_id}: no question could be generated from its "
            f"{len(held_out)} held-out document(s) (no title, heading or definition with a "
            "prose sentence to answer it); ingest documents with more prose or raise eval_fraction"
        )
    # The declines make up `unanswerable_share` of the set, however many answerable ones came.
    share = round(len(answerable) * unanswerable_share / (1 - unanswerable_share))
    n_unanswerable = most_unanswerable if len(answerable) == budget else max(1, share)
    vocabulary = {w for text in pd.concat([train["text"], held_out["text"]]) for w in _words(text)}
    declines = unanswerable_questions(vocabulary, min(n_unanswerable, most_unanswerable), seed)
    chunks = chunk_texts(settings, {q.source_doc_id for q in answerable})
    rows = [
        _row(q, "generated", chunk_holding(chunks, [q.source_doc_id], q.reference))
        for q in answerable
    ]
    taken = {r["question_id"] for r in rows}
    rows += [
        _row(q, "unanswerable", None) for q in declines if question_id(q.question) not in taken
    ]
    params = {
        "eval_fraction": eval_fraction,
        "max_questions": max_questions,
        "unanswerable_share": unanswerable_share,
        "per_document": per_document,
        "seed": seed,
        "held_out_documents": len(held_out),
        "training_documents": len(train),
    }
    return store_set(settings, snapshot_id, "generated", rows, params)


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _row(q: Question, origin: str, chunk_id: str | None) -> dict:
    return {
        "question_id": question_id(q.question),
        "question": q.question,
        "reference": q.reference,
        "source_doc_ids": [q.source_doc_id] if q.source_doc_id else [],
        "source_chunk_id": chunk_id,
        "kind": q.kind,
        "answerable": q.answerable,
        "origin": origin,
    }


def golden_set(
    settings: Settings, path: Path, snapshot_id: str | None = None
) -> tuple[EvalSet, GoldenReport]:
    """A person's JSONL set ({question, reference, source_ids}, optional "answerable": false
    for a question to decline), validated against the snapshot's documents; rows that fail are
    quarantined with their reasons under `evalsets_dir`/quarantine. Raises ValueError when the
    file is empty or no row passes."""
    snapshot_id = snapshot_id or lake.latest_snapshot(settings.snapshots_dir)
    known = set(lake.read_snapshot(settings.snapshots_dir, snapshot_id)["doc_id"])
    accepted, report = validate_golden(
        Path(path), known, normalize_question, settings.evalsets_dir / "quarantine", snapshot_id
    )
    chunks = chunk_texts(settings, {d for row in accepted for d in row["source_ids"]})
    rows = [
        {
            "question_id": question_id(row["question"]),
            "question": row["question"],
            "reference": row["reference"],
            "source_doc_ids": row["source_ids"],
            "source_chunk_id": chunk_holding(chunks, row["source_ids"], row["reference"]),
            "kind": "golden",
            "answerable": row["answerable"],
            "origin": "golden",
        }
        for row in accepted
    ]
    params = {"source": str(path), "read": report.read, "quarantined": report.quarantined}
    return store_set(settings, snapshot_id, "golden", rows, params), report


def training_leaks(eval_set: EvalSet, training_doc_ids: Collection[str]) -> list[str]:
    """Source documents of generated questions that sit on the training side (must be none:
    the evaluate stage refuses a set that would score a model on what it trained on)."""
    training = set(training_doc_ids)
    generated = eval_set.frame[eval_set.frame["origin"] == "generated"]
    return sorted({d for ids in generated["source_doc_ids"] for d in ids if d in training})
