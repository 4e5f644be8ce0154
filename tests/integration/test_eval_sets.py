"""Evaluation sets as versioned data: generated from the held-out documents of a real ingest
snapshot of the demo corpus, unanswerables, and golden sets with bad rows quarantined."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pandas as pd
import pytest

from tasks.core.questions import KINDS
from tasks.core.scorers import REFUSAL, Example
from tasks.core.sync import chunker_key
from tasks.embed.index import chunk_documents
from tasks.embed.params import EmbedParams
from tasks.evaluate.golden import QUARANTINE_SCHEMA
from tasks.evaluate.sets import (
    EVAL_COLUMNS,
    generated_set,
    golden_set,
    load_set,
    question_id,
    training_leaks,
)
from tasks.ingest.demo_corpus import write_python_docs
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared import lake
from tasks.shared.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """The whole demo corpus (every pydoc topic, the default module pages) ingested once."""
    base = tmp_path_factory.mktemp("demo")
    settings = Settings(home=base / "state", milvus_uri=None)
    root = write_python_docs(base / "corpus")
    report = ingest_folder(root, IngestParams(), settings)
    assert report.accepted > 90
    return settings, report.snapshot_id


def _files(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_generated_set_asks_about_held_out_documents_only(demo: tuple[Settings, str]) -> None:
    settings, snapshot_id = demo
    _, train, held_out = lake.split_snapshot(settings, snapshot_id, 0.1)

    eval_set = generated_set(settings, snapshot_id)

    frame = eval_set.frame
    counts = eval_set.counts()
    print(f"\ndemo corpus, eval_fraction 0.1: {eval_set.params} -> {counts}")
    assert list(frame.columns) == list(EVAL_COLUMNS)
    assert (eval_set.snapshot_id, eval_set.origin) == (snapshot_id, "generated")
    assert (len(train), len(held_out)) == (92, 6)
    # Every held-out document gives a question: 14 answerable ones (at most 3 a document) and
    # 2 to decline (15% of the set).
    assert (counts["questions"], counts["documents"], counts["unanswerable"]) == (16, 6, 2)
    assert set(counts) - {"questions", "documents"} <= {*KINDS, "unanswerable"}
    answerable = frame[frame["answerable"]]
    assert (answerable["origin"] == "generated").all()
    assert all(len(ids) == 1 for ids in answerable["source_doc_ids"])
    sources = {ids[0] for ids in answerable["source_doc_ids"]}
    assert sources <= set(held_out["doc_id"]) and not sources & set(train["doc_id"])
    assert training_leaks(eval_set, train["doc_id"]) == []
    # The detector does see a leak: the whole snapshot as "training" documents.
    assert training_leaks(eval_set, [*train["doc_id"], *held_out["doc_id"]]) == sorted(sources)
    # The reference is a sentence of its own document.
    texts = dict(zip(held_out["doc_id"], held_out["text"], strict=True))
    for row in answerable.itertuples():
        assert row.reference in " ".join(texts[row.source_doc_ids[0]].split())
    declines = frame[~frame["answerable"]]
    assert (declines["origin"] == "unanswerable").all() and (declines["reference"] == REFUSAL).all()
    assert all(len(ids) == 0 for ids in declines["source_doc_ids"])
    assert frame["source_chunk_id"].isna().all()  # nothing embedded in this lake
    assert frame["question_id"].tolist() == [question_id(q) for q in frame["question"]]
    examples = eval_set.examples()
    assert len(examples) == 16 and all(isinstance(e, Example) for e in examples)
    assert sum(not e.answerable for e in examples) == 2


def test_questions_are_spread_over_the_held_out_documents(demo: tuple[Settings, str]) -> None:
    settings, snapshot_id = demo
    _, train, held_out = lake.split_snapshot(settings, snapshot_id, 0.3)

    wide = generated_set(settings, snapshot_id, eval_fraction=0.3)
    small = generated_set(settings, snapshot_id, eval_fraction=0.3, max_questions=10)

    print(f"\ndemo corpus, eval_fraction 0.3: {wide.params} -> {wide.counts()}")
    print(f"the same, at most 10 questions: {small.counts()}")
    assert (len(train), len(held_out)) == (69, 29)
    counts = wide.counts()
    assert (counts["questions"], counts["unanswerable"]) == (59, 9)  # 50 answerable, 9 declines
    assert counts["documents"] == len(held_out)  # every held-out document is asked about
    # Round robin: 8 answerable questions (10 less 15% to decline) from 8 documents.
    assert small.counts()["documents"] == 8 and (small.frame["answerable"]).sum() == 8
    assert (~small.frame["answerable"]).sum() == 2
    assert training_leaks(wide, train["doc_id"]) == []


def test_a_rerun_reuses_the_set_and_a_new_snapshot_makes_a_new_one(
    tmp_path: Path, settings: Settings, training_snapshot: str
) -> None:
    first = generated_set(settings, training_snapshot)
    written = _files(settings.evalsets_dir)

    again = generated_set(settings, training_snapshot)

    assert again.set_id == first.set_id and _files(settings.evalsets_dir) == written
    pd.testing.assert_frame_equal(again.frame, first.frame)
    assert generated_set(settings, training_snapshot, seed=1).set_id != first.set_id

    root = tmp_path / "more-docs"
    root.mkdir()
    for name in sorted(topics)[:41]:
        (root / f"{name}.txt").write_text(topics[name])
    newer = ingest_folder(root, IngestParams(), settings).snapshot_id
    assert newer != training_snapshot

    changed = generated_set(settings, None)  # the latest snapshot

    assert changed.snapshot_id == newer and changed.set_id != first.set_id
    assert load_set(settings, first.set_id).frame.equals(first.frame)  # the old version stays
    with pytest.raises(FileNotFoundError, match="evaluation set nope not found"):
        load_set(settings, "nope")


def test_each_question_names_the_embedded_chunk_holding_its_reference(
    settings: Settings, training_snapshot: str, embedder
) -> None:
    snapshot = lake.read_snapshot(settings.snapshots_dir, training_snapshot)
    docs = pd.concat(lake.iter_documents(settings.documents_dir, set(snapshot["doc_id"])))
    params = EmbedParams()
    chunker = chunker_key(params.model, params.chunk_tokens, params.overlap_tokens)
    chunks = chunk_documents(docs, embedder, params, chunker)  # the embed stage's own cut
    chunks["vector"] = [np.zeros(4, dtype="float32")] * len(chunks)
    chunks["event_timestamp"] = datetime.now(UTC)
    lake.append_chunks(settings.chunks_dir, chunks)
    lake.write_manifest(settings.index_manifest, chunks)

    eval_set = generated_set(settings, training_snapshot, eval_fraction=0.5)

    text = dict(
        zip(chunks["chunk_id"], chunks["text"].map(lambda t: " ".join(t.split())), strict=True)
    )
    owner = dict(zip(chunks["chunk_id"], chunks["doc_id"], strict=True))
    answerable = eval_set.frame[eval_set.frame["answerable"]]
    print(f"\n40 topics: {eval_set.counts()}, {len(chunks)} chunks")
    assert len(answerable) >= 20 and answerable["source_chunk_id"].notna().all()
    for row in answerable.itertuples():
        assert owner[row.source_chunk_id] == row.source_doc_ids[0]
        assert " ".join(row.reference.split()[:12]) in text[row.source_chunk_id]


def test_nothing_to_ask_is_refused_with_a_message(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "code-only"
    root.mkdir()
    for i in range(3):
        (root / f"snippet{i}.txt").write_text("\n".join(f"x{j} = {i} * {j}" for j in range(9)))
    snapshot_id = ingest_folder(root, IngestParams(), settings).snapshot_id

    with pytest.raises(ValueError, match="no question could be generated from its 1 held-out"):
        generated_set(settings, snapshot_id)


def _jsonl(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_golden_set_quarantines_bad_rows_with_reasons(
    tmp_path: Path, demo: tuple[Settings, str]
) -> None:
    settings, snapshot_id = demo
    doc_a, doc_b = sorted(lake.read_snapshot(settings.snapshots_dir, snapshot_id)["doc_id"])[:2]
    ask = "What does the with statement do?"
    path = _jsonl(
        tmp_path / "golden.jsonl",
        [
            {"question": ask, "reference": "It wraps a block.", "source_ids": [doc_a]},
            {"question": "What is the capital of Mars?", "answerable": False},
            {"reference": "no question here", "source_ids": [doc_a]},  # 3
            {"question": "Where is the reference?", "source_ids": [doc_b]},  # 4
            {"question": "   ", "reference": "blank question", "source_ids": [doc_a]},  # 5
            {"question": "Q6?", "reference": "r", "source_ids": [doc_a, "no-such-doc"]},  # 6
            {
                "question": "  what DOES the with   statement do? ",
                "reference": "x",
                "source_ids": [doc_b],
            },
            "{not json",  # 8
            "",  # a blank line is not a row
            {"question": "Which sources?", "reference": "none given"},  # 10
            {"question": "Q11?", "reference": "r", "source_ids": doc_a},  # 11: not a list
            "[1, 2]",  # 12: not an object
            {"question": "Q13?", "source_ids": ["gone"]},  # 13: two reasons
        ],
    )

    eval_set, report = golden_set(settings, path, snapshot_id)

    print(f"\ngolden: {report}")
    assert (report.read, report.accepted, report.quarantined) == (12, 2, 10)
    assert report.reconciles
    assert report.reasons == {
        "missing question (absent, empty or not text)": 2,
        "missing reference (absent, empty or not text)": 2,
        "unknown source id": 2,
        "duplicate question": 1,
        "invalid JSON line": 2,
        "missing source ids (an answerable question needs one)": 1,
        "malformed field": 1,
    }
    quarantine = pd.read_parquet(report.quarantine_path)
    assert list(quarantine.columns) == QUARANTINE_SCHEMA.names
    assert quarantine["line"].tolist() == [3, 4, 5, 6, 7, 8, 10, 11, 12, 13]
    reasons = {r.line: " | ".join(r.reasons) for r in quarantine.itertuples()}
    assert reasons[3].startswith("missing question")
    assert reasons[4].startswith("missing reference")
    assert "unknown source id: no-such-doc (not in snapshot" in reasons[6]
    assert reasons[7] == "duplicate question: same question as line 1"
    assert reasons[8].startswith("invalid JSON line: Expecting property name")
    assert "missing source ids" in reasons[10]
    assert "source_ids must be a list" in reasons[11]
    assert reasons[12] == "invalid JSON line: a row is a JSON object, got list"
    assert "missing reference" in reasons[13] and "unknown source id: gone" in reasons[13]
    assert quarantine.set_index("line").loc[8, "raw"] == "{not json"

    frame = eval_set.frame
    assert (eval_set.origin, eval_set.snapshot_id) == ("golden", snapshot_id)
    assert frame["question"].tolist() == [ask, "What is the capital of Mars?"]
    assert frame["answerable"].tolist() == [True, False]
    assert frame["reference"].tolist()[1] == REFUSAL
    assert [list(ids) for ids in frame["source_doc_ids"]] == [[doc_a], []]
    assert (frame["origin"] == "golden").all()

    written = _files(settings.evalsets_dir)
    again, _ = golden_set(settings, path, snapshot_id)
    assert again.set_id == eval_set.set_id and _files(settings.evalsets_dir) == written


def test_empty_or_all_bad_golden_sets_are_refused(
    tmp_path: Path, demo: tuple[Settings, str]
) -> None:
    settings, snapshot_id = demo
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n")
    for path in (empty, blank):
        with pytest.raises(ValueError, match=r"golden set .* is empty"):
            golden_set(settings, path, snapshot_id)

    bad = _jsonl(tmp_path / "bad.jsonl", ["{oops", {"question": "Q?", "source_ids": ["x"]}])
    with pytest.raises(ValueError, match="none of its 2 rows passed validation") as refused:
        golden_set(settings, bad, snapshot_id)
    quarantine = Path(re.search(r"reasons are in (\S+\.parquet)", str(refused.value)).group(1))
    assert quarantine.parent == settings.evalsets_dir / "quarantine"
    assert pd.read_parquet(quarantine)["line"].tolist() == [1, 2]
    with pytest.raises(FileNotFoundError, match="not found"):
        golden_set(settings, tmp_path / "missing.jsonl", snapshot_id)
