from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.core.context import INSTRUCTION, build_prompt
from tasks.core.scorers import REFUSAL
from tasks.finetune.instructions import (
    IGNORE,
    document_passages,
    encode_examples,
    instruction_examples,
    read_documents,
)
from tasks.finetune.loop import answer_loss, lm_loss
from tasks.finetune.params import FinetuneParams, InstructionParams
from tasks.finetune.prepare import prepare
from tasks.shared import lake
from tasks.shared.lake import split_snapshot
from tasks.shared.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def plan(training_snapshot: str, settings: Settings):
    params = FinetuneParams(
        snapshot_id=training_snapshot,
        data="instructions",
        instructions=InstructionParams(variants=1),
    )
    return prepare(params, settings)


def _decode(tokenizer, ids: np.ndarray) -> str:
    return tokenizer.decode(ids.tolist(), skip_special_tokens=False)


def test_rows_are_serving_prompts_with_labels_on_the_answer_only(plan) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(plan.base_path)
    rows = plan.data.train
    assert rows.ndim == 3 and rows.shape[1] == 3 and rows.shape[2] == 512
    assert len(rows) >= 40
    assert plan.data.eval.ndim == 2 and plan.data.eval.shape[1] == 128  # perplexity: as before
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    refusals = 0
    for ids, labels, mask in rows[:60]:
        start = int(np.argmax(mask))
        assert not mask[:start].any() and mask[start:].all()  # left padding
        assert (ids[:start] == pad).all()
        answered = labels != IGNORE
        first = int(np.argmax(answered))
        assert answered[first:].all() and not answered[:first].any()  # the answer ends the row
        assert (labels[first:] == ids[first:]).all() and ids[-1] == eos
        prompt = tokenizer.decode(ids[start:first].tolist())
        answer = tokenizer.decode(ids[first:-1].tolist())
        assert prompt.startswith(INSTRUCTION + "\n\nContext:\n[1] (")
        assert prompt.endswith("Answer:") and "\n\nQuestion: " in prompt
        question = prompt.rsplit("\n\nQuestion: ", 1)[1].removesuffix("\nAnswer:")
        assert answer.startswith(" ")
        if answer.strip() == REFUSAL:
            refusals += 1
            continue
        reference, _, cited = answer.strip().rpartition(" [")
        number = int(cited.rstrip("]"))
        passages = prompt.split("\n\nQuestion: ")[0].split("\nContext:\n", 1)[1]
        assert f"[{number}] (" in passages
        cited_text = passages.split(f"[{number}] (", 1)[1].split(f"\n\n[{number + 1}] (")[0]
        assert " ".join(reference.split()) in " ".join(cited_text.split())
        assert question  # the question is there, after the passages
    assert 0 < refusals < 30


def test_examples_use_training_documents_only_and_include_unanswerables(
    training_snapshot: str, settings: Settings
) -> None:
    from transformers import AutoTokenizer

    plan = prepare(FinetuneParams(snapshot_id=training_snapshot, data="text"), settings)
    tokenizer = AutoTokenizer.from_pretrained(plan.base_path)
    _, train, held_out = split_snapshot(
        settings, training_snapshot, FinetuneParams().eval_fraction
    )  # the split fine-tuning makes
    assert len(held_out) > 0
    docs = read_documents(settings, set(train["doc_id"]))
    passages = document_passages(settings, docs, tokenizer)
    assert set(passages) <= set(train["doc_id"])

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    examples = instruction_examples(docs, passages, count, 511, variants=2, seed=0)
    train_ids, held_ids = set(train["doc_id"]), set(held_out["doc_id"])
    held_texts = read_documents(settings, held_ids)["text"].tolist()
    for example in examples:
        assert {c.doc_id for c in example.passages} <= train_ids
        assert not {c.doc_id for c in example.passages} & held_ids
        if example.answerable:
            assert example.question.source_doc_id in train_ids
            source = example.passages[example.source_position - 1]
            assert source.doc_id == example.question.source_doc_id
            assert example.answer == f"{example.question.reference} [{example.source_position}]"
            others = [c for c in example.passages if c is not source]
            assert all(c.doc_id != source.doc_id for c in others)
        else:
            assert example.answer == REFUSAL
            assert example.question.source_doc_id not in {c.doc_id for c in example.passages}
        assert example.prompt == build_prompt(example.question.question, example.passages)
        assert count(example.prompt) + count(" " + example.answer) + 1 <= 511
    for text in held_texts:  # not even a distractor: no held-out chunk reaches any prompt
        head = " ".join(text.split())[:200]
        assert not any(head in " ".join(e.prompt.split()) for e in examples)
    kinds = {e.question.kind for e in examples}
    assert "unanswerable" in kinds  # off-topic questions, answered with the refusal
    missing = [e for e in examples if not e.answerable and e.question.answerable]
    assert missing  # real questions shown without their source: the refusal too
    positions = {e.source_position for e in examples if e.answerable}
    assert positions >= {1, 2}  # the source is not always first
    again = instruction_examples(docs, passages, count, 511, variants=2, seed=0)
    assert [e.prompt for e in again] == [e.prompt for e in examples]  # seeded


def test_the_embed_stages_chunks_are_the_passages_when_it_indexed_a_document(
    training_snapshot: str, settings: Settings
) -> None:
    from transformers import AutoTokenizer

    plan = prepare(FinetuneParams(snapshot_id=training_snapshot, data="text"), settings)
    tokenizer = AutoTokenizer.from_pretrained(plan.base_path)
    _, train, _ = split_snapshot(settings, training_snapshot, FinetuneParams().eval_fraction)
    docs = read_documents(settings, set(train["doc_id"]))
    doc = docs.iloc[0]
    chunks = pd.DataFrame(
        {
            "chunk_id": ["c0", "c1"],
            "doc_id": [doc.doc_id] * 2,
            "source": [doc.source] * 2,
            "chunk_index": [0, 1],
            "text": [doc.text[:300], doc.text[250:600]],
            "n_tokens": [60, 70],
            "language": ["en"] * 2,
            "vector": [[0.0, 1.0]] * 2,
            "event_timestamp": [datetime.now(UTC)] * 2,
        }
    )
    lake.append_chunks(settings.chunks_dir, chunks)
    lake.write_manifest(
        settings.index_manifest, chunks.assign(source_root="x", chunker="minilm|200|32")
    )
    passages = document_passages(settings, docs, tokenizer)
    assert [c.text for c in passages[doc.doc_id]] == [doc.text[:300], doc.text[250:600]]
    other = docs.iloc[1].doc_id  # not indexed: cut here
    assert len(passages[other]) >= 1 and passages[other][0].doc_id == other


def test_the_loss_covers_the_answer_tokens_only(plan) -> None:
    torch.manual_seed(0)
    batch = torch.from_numpy(plan.data.train[:4])
    model = plan.model
    model.eval()
    ids, labels, mask = batch.unbind(1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        reference = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, labels=labels
        ).loss
        ours = answer_loss(model, batch)
        assert torch.allclose(ours, reference, atol=1e-4)
        assert torch.allclose(lm_loss(model, batch), ours)
    changed = batch.clone()  # a prompt token changed moves no label: the loss stays finite
    assert torch.isfinite(answer_loss(model, changed))
    empty = batch.clone()
    empty[:, 1] = IGNORE
    with pytest.raises(ValueError, match="without a single answer token"):
        answer_loss(model, empty)


def test_an_instruction_row_too_short_for_any_prompt_is_refused(
    training_snapshot: str, settings: Settings
) -> None:
    params = FinetuneParams(
        snapshot_id=training_snapshot,
        data="instructions",
        instructions=InstructionParams(max_tokens=64),
    )
    with pytest.raises(ValueError, match="no instruction example fits in 64 tokens"):
        prepare(params, settings)
    too_long = FinetuneParams(
        snapshot_id=training_snapshot,
        data="instructions",
        instructions=InstructionParams(max_tokens=1024),
    )
    with pytest.raises(ValueError, match="exceeds the model's maximum of 512"):
        prepare(too_long, settings)


def test_encoding_puts_the_eos_after_the_answer(plan) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(plan.base_path)
    row = plan.data.train[0]
    assert row[1, -1] == tokenizer.eos_token_id  # the model learns to stop
    assert encode_examples([], tokenizer, 512).shape == (0, 3, 512)


def test_instruction_rows_train_under_ray_train(
    ray_local, training_snapshot: str, settings: Settings
) -> None:
    import mlflow

    from tasks.finetune.trainer import finetune

    params = FinetuneParams(
        snapshot_id=training_snapshot,
        data="instructions",
        instructions=InstructionParams(variants=1),
        max_steps=2,
        checkpoint_every=2,
        batch_size=4,
    )
    report = finetune(params, settings)
    assert report.steps == 2 and report.tokens_per_s > 0
    run = mlflow.MlflowClient(settings.tracking_uri).get_run(report.run_id)
    assert run.data.params["data"] == "instructions"
    assert run.data.params["instructions_passages_per_example"] == "2"
    assert run.data.tags["train_sequence_tokens"] == "512"
