"""Instruction data for fine-tuning, in the serving prompt's own format.

Each example is what the serving app shows the model (`tasks.core.context.build_prompt`: the
instruction, numbered passages, the question) followed by the answer it should give: the
reference sentence with a citation of the passage that holds it ("... [2]"), or, when no
passage holds the answer, the refusal (`tasks.core.scorers.REFUSAL`). Questions come from the
documents' own structure (`tasks.core.questions`); passages are the embed stage's chunks of
those documents (or, before the embed stage ran, chunks cut here the same way), the source's
chunk among distractor chunks of other documents at a seeded random position.

Only the documents given are used, questions and distractors alike: fine-tuning passes its
training side of the snapshot, so no held-out document ever reaches the weights. The same
functions build evaluation examples when given the held-out documents.

Rows for training hold the prompt and answer ids left-padded to `seq_len` (so every answer ends
at the row's end, and the loss needs the logits of the last positions only), the labels (-100
on the prompt and the padding: the loss covers the answer and the EOS after it, so the model
learns to stop) and the attention mask.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.chunking import chunk_tokens
from tasks.core.context import Chunk, build_prompt
from tasks.core.questions import Question, questions_from_document, unanswerable_questions
from tasks.core.scorers import REFUSAL
from tasks.shared import lake
from tasks.shared.settings import Settings

IGNORE = -100  # label of positions the loss skips (PyTorch's cross-entropy default)
CHANNELS = 3  # a row: input ids, labels, attention mask
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class InstructionExample:
    """One prompt in the serving format and the answer the model should give to it."""

    question: Question
    passages: tuple[Chunk, ...]
    prompt: str
    answer: str  # "<reference> [n]" citing the source passage, or REFUSAL
    source_position: int | None  # 1-based number of the passage holding the answer

    @property
    def answerable(self) -> bool:
        return self.source_position is not None


def _squash(text: str) -> str:
    return " ".join(text.split())


def answer_text(reference: str, position: int | None) -> str:
    """The target answer: the reference citing its passage, or the refusal."""
    return REFUSAL if position is None else f"{reference} [{position}]"


def read_documents(settings: Settings, doc_ids: set[str]) -> pd.DataFrame:
    """doc_id, source, title and text of the given documents, from the lake, sorted by id."""
    frames = list(lake.iter_documents(settings.documents_dir, doc_ids))
    if not frames:
        return pd.DataFrame(columns=["doc_id", "source", "title", "text"])
    docs = pd.concat(frames, ignore_index=True)[["doc_id", "source", "title", "text"]]
    return docs.sort_values("doc_id", ignore_index=True)


def _embedded_chunks(settings: Settings, doc_ids: set[str]) -> pd.DataFrame:
    """The embed stage's current chunks of these documents (those its index manifest lists)."""
    import pyarrow.dataset as ds

    manifest = lake.read_manifest(settings.index_manifest)
    if manifest.empty or not settings.chunks_dir.exists():
        return pd.DataFrame(columns=["chunk_id", "doc_id", "source", "chunk_index", "text"])
    current = set(manifest.loc[manifest["doc_id"].isin(doc_ids), "chunk_id"])
    if not current:
        return pd.DataFrame(columns=["chunk_id", "doc_id", "source", "chunk_index", "text"])
    table = ds.dataset(settings.chunks_dir, format="parquet").to_table(
        columns=["chunk_id", "doc_id", "source", "chunk_index", "text"],
        filter=ds.field("chunk_id").isin(sorted(current)),
    )
    chunks = table.to_pandas().drop_duplicates("chunk_id")
    return chunks.sort_values(["doc_id", "chunk_index"], ignore_index=True)


def document_passages(
    settings: Settings,
    docs: pd.DataFrame,
    tokenizer: Any,
    chunk_size: int = 200,
    overlap: int = 32,
) -> dict[str, list[Chunk]]:
    """Each document's passages as the retriever would return them: the embed stage's chunks
    where it indexed the document, else chunks cut here with `tokenizer` (`chunk_size` and
    `overlap` tokens, the embed stage's defaults). Token counts are the tokenizer's own."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text.strip(), add_special_tokens=False))

    embedded = _embedded_chunks(settings, set(docs["doc_id"]))
    passages: dict[str, list[Chunk]] = {}
    for row in embedded.itertuples():
        chunk = Chunk(row.text, count(row.text), row.doc_id, row.source, 1.0)
        passages.setdefault(row.doc_id, []).append(chunk)
    for doc in docs.itertuples():
        if doc.doc_id in passages or not doc.text:
            continue
        offsets = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        passages[doc.doc_id] = [
            Chunk(c.text, count(c.text), doc.doc_id, doc.source, 1.0)
            for c in chunk_tokens(doc.text, offsets, chunk_size, overlap, count)
        ]
    return passages


def _holding(chunks: Sequence[Chunk], reference: str) -> Chunk | None:
    wanted = _squash(reference)
    return next((c for c in chunks if wanted in _squash(c.text)), None)


def build_examples(
    questions: Sequence[Question],
    passages: dict[str, list[Chunk]],
    count_tokens: Callable[[str], int],
    max_tokens: int,
    passages_per_example: int = 2,
    missing_fraction: float = 0.15,
    seed: int = 0,
) -> list[InstructionExample]:
    """Examples for `questions`, each prompt plus answer within `max_tokens` (the answer's
    tokens and its EOS included). An answerable question gets its source's chunk that holds
    the reference and up to `passages_per_example - 1` distractors (chunks of other documents
    that do not hold the reference), the source at a random position; distractors are dropped
    from the end until the example fits, and a question whose chunk alone does not fit is left
    out. An unanswerable question, and a `missing_fraction` share of the answerable ones (their
    source left out: the passages do not contain the answer), get distractors only and the
    refusal as their answer. Passages come only from `passages`, so only from its documents."""
    if passages_per_example < 1:
        raise ValueError(f"passages_per_example must be >= 1, got {passages_per_example}")
    rng = random.Random(seed)
    pool = [c for doc_id in sorted(passages) for c in passages[doc_id]]
    examples: list[InstructionExample] = []
    for question in questions:
        source = (
            _holding(passages.get(question.source_doc_id, []), question.reference)
            if question.answerable
            else None
        )
        if question.answerable and source is None:
            continue  # its sentence is cut between two chunks: no passage holds it
        missing = question.answerable and rng.random() < missing_fraction
        wanted = _squash(question.reference) if question.answerable else None
        distractors: list[Chunk] = []
        n_distractors = (
            passages_per_example if (missing or source is None) else (passages_per_example - 1)
        )
        for _ in range(n_distractors * 4):  # a few tries to find passages that qualify
            if len(distractors) >= n_distractors or not pool:
                break
            chunk = rng.choice(pool)
            if chunk.doc_id == question.source_doc_id or chunk in distractors:
                continue
            if wanted and wanted in _squash(chunk.text):
                continue
            distractors.append(chunk)
        chosen = list(distractors)
        shown = None if missing else source
        if shown is not None:
            chosen.insert(rng.randint(0, len(chosen)), shown)
        example = _fitted(question, chosen, shown, count_tokens, max_tokens)
        if example is not None:
            examples.append(example)
    return examples


def _fitted(
    question: Question,  # the example, with distractors dropped from the end until it fits
    chosen: list[Chunk],
    source: Chunk | None,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> InstructionExample | None:
    chosen = list(chosen)
    while True:
        position = chosen.index(source) + 1 if source is not None else None
        answer = answer_text(question.reference, position)
        prompt = build_prompt(question.question, chosen)
        if count_tokens(prompt) + count_tokens(" " + answer) + 1 <= max_tokens:
            return InstructionExample(question, tuple(chosen), prompt, answer, position)
        drop = next((i for i in range(len(chosen) - 1, -1, -1) if chosen[i] is not source), None)
        if drop is None or (source is None and len(chosen) == 1):
            return None
        chosen.pop(drop)


def corpus_vocabulary(texts: Sequence[str]) -> set[str]:
    """The lowercased words of the texts (what `unanswerable_questions` checks against)."""
    return {w.lower() for text in texts for w in _WORDS.findall(text)}


def instruction_examples(
    docs: pd.DataFrame,
    passages: dict[str, list[Chunk]],
    count_tokens: Callable[[str], int],
    max_tokens: int,
    questions_per_document: int = 8,
    passages_per_example: int = 2,
    unanswerable_fraction: float = 0.1,
    missing_fraction: float = 0.15,
    variants: int = 1,
    seed: int = 0,
) -> list[InstructionExample]:
    """Examples from `docs` (doc_id, title, text): their structural questions, each in
    `variants` prompts (other distractors and positions), plus off-topic questions (about an
    `unanswerable_fraction` share of the answerable ones) answered with the refusal; shuffled
    with `seed`. Everything comes from `docs` and `passages` alone."""
    questions: list[Question] = []
    for doc in docs.itertuples():
        title = doc.title if isinstance(getattr(doc, "title", None), str) else None
        questions += questions_from_document(doc.doc_id, title, doc.text, questions_per_document)
    vocabulary = corpus_vocabulary(docs["text"].tolist())
    off_topic = unanswerable_questions(
        vocabulary, max(1, round(unanswerable_fraction * len(questions))), seed
    )
    examples: list[InstructionExample] = []
    for variant in range(variants):
        examples += build_examples(
            questions + off_topic,
            passages,
            count_tokens,
            max_tokens,
            passages_per_example,
            missing_fraction,
            seed * 1000 + variant,
        )
    random.Random(seed).shuffle(examples)
    return examples


def encode_examples(
    examples: Sequence[InstructionExample], tokenizer: Any, seq_len: int
) -> np.ndarray:
    """Rows of shape (len(examples), 3, seq_len): input ids, labels and attention mask, each
    example left-padded so its answer and EOS end the row. Labels are -100 except on the
    answer's tokens and the EOS. The prompt is encoded as the serving app encodes it."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad is None:
        pad = eos
    rows = np.zeros((len(examples), CHANNELS, seq_len), dtype=np.int64)
    for i, example in enumerate(examples):
        prompt = tokenizer.encode(example.prompt, add_special_tokens=True)
        answer = [*tokenizer.encode(" " + example.answer, add_special_tokens=False), eos]
        ids = prompt + answer
        if len(ids) > seq_len:
            raise ValueError(f"example {i} has {len(ids)} tokens, more than seq_len {seq_len}")
        start = seq_len - len(ids)
        rows[i, 0, :start] = pad
        rows[i, 0, start:] = ids
        rows[i, 1, :] = IGNORE
        rows[i, 1, seq_len - len(answer) :] = answer
        rows[i, 2, start:] = 1
    return rows


def training_rows(
    settings: Settings,
    train_docs: pd.DataFrame,
    tokenizer: Any,
    max_tokens: int,
    questions_per_document: int = 40,
    passages_per_example: int = 2,
    variants: int = 2,
    unanswerable_fraction: float = 0.1,
    missing_fraction: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Instruction rows of `max_tokens` from the training documents only (`train_docs`' ids:
    their questions, their chunks as passages and distractors); see the module's docstring."""
    docs = read_documents(settings, set(train_docs["doc_id"]))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    passages = document_passages(settings, docs, tokenizer)
    examples = instruction_examples(
        docs,
        passages,
        count,
        max_tokens - 1,  # room for a BOS the tokenizer may add
        questions_per_document=questions_per_document,
        passages_per_example=passages_per_example,
        unanswerable_fraction=unanswerable_fraction,
        missing_fraction=missing_fraction,
        variants=variants,
        seed=seed,
    )
    if not examples:
        raise ValueError(
            f"no instruction example fits in {max_tokens} tokens, or the training documents "
            "hold no question (no title, heading, definition or documented function): raise "
            "instructions.max_tokens, or use data text"
        )
    return encode_examples(examples, tokenizer, max_tokens)
