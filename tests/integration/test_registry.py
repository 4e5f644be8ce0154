import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import torch
from transformers import AutoTokenizer

from tasks.clients import Clients
from tasks.clients.registry import DIGEST_TAG, model_registry
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.promote.params import Candidate
from tasks.promote.registration import (
    alias_history,
    candidate_from_run,
    decide_promotion,
    evaluate_models,
    register_candidate,
    rollback_champion,
)
from tasks.shared.manifest import MANIFEST, manifest_digest, write_manifest
from tasks.shared.models import bits_per_byte, held_out_texts, load_model_folder

from worlds import EVAL_FRACTION, SEQ_LEN, World, compressed, promote, tiny_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with tiny_world(tmp_path_factory.mktemp("registry")) as built:
        yield built


def test_versions_carry_lineage_aliases_move_and_every_change_is_recorded(world: World) -> None:
    name, settings = "assistant", world.settings
    registry = model_registry(settings)

    first = promote(world, compressed(world, "first", steps=10), name)
    assert first.version == "1" and first.promoted and first.parent_version == "none"
    assert first.evaluation.candidate_bpb < first.evaluation.base_bpb
    assert first.evaluation.champion_bpb is None
    assert any("no champion yet" in r for r in first.reasons)
    assert (first.champion, first.challenger) == ("1", None)
    tags = registry.version_tags(name, "1")
    assert tags["data_snapshot"] == world.snapshot and tags["training_run"] == world.training_run
    assert tags["feature_view"] == "document_chunks" and tags["base_model"] == "tiny"
    assert tags["base_model_sha256"] == manifest_digest(world.base_dir)
    assert tags["compression_method"] == "int8-dynamic" and tags["parent_version"] == "none"
    assert tags[DIGEST_TAG] == manifest_digest(settings.models_dir / "compressed" / "first")
    assert tags["decision"] == "promoted"

    # Worse than the champion (fewer steps): registered as challenger, not promoted.
    worse = promote(world, compressed(world, "worse", steps=3), name)
    assert (worse.version, worse.parent_version, worse.promoted) == ("2", "1", False)
    assert worse.evaluation.champion_version == "1"
    assert worse.evaluation.candidate_bpb > worse.evaluation.champion_bpb
    assert any("does not beat the champion v1" in r for r in worse.reasons)
    assert (worse.champion, worse.challenger) == ("1", "2")

    # Better than both, found through the compression run id alone (the UI's way in).
    better = compressed(world, "better", steps=30, quantized=True)
    candidate = candidate_from_run(better.run_id, Clients(settings))
    assert candidate.model_dump(exclude={"folder"}) == Candidate.from_report(better).model_dump(
        exclude={"folder"}
    )
    too_strict = decide_promotion(
        evaluate_models(
            candidate,
            register_candidate(candidate, name, Clients(settings), "test"),
            Clients(settings),
        ),
        True,
        0.9,
    )
    assert not too_strict.promote and "90.00% required" in " ".join(too_strict.reasons)
    third = promote(world, better, name)  # the same files: version 3 again, not a 4th
    assert (third.version, third.parent_version, third.promoted) == ("3", "1", True)
    assert (third.champion, third.challenger) == ("3", None)

    again = promote(world, better, name)  # re-running changes nothing
    assert (again.version, again.promoted, again.changes) == ("3", False, [])
    assert again.reasons == ["v3 is already the champion"]

    # Roll back twice: 3 -> 1, then nothing before 1.
    change = rollback_champion(name, "canary errors", "oncall", Clients(settings))
    assert (change.version, change.previous, change.action) == ("1", "3", "rollback")
    assert registry.aliases(name)[CHAMPION] == "1"
    with pytest.raises(ValueError, match="no previous champion to roll back to"):
        rollback_champion(name, "again", "oncall", Clients(settings))

    history = alias_history(name, Clients(settings))
    assert [(c.alias, c.action, c.previous, c.version) for c in history] == [
        (CHALLENGER, "register", "none", "1"),
        (CHAMPION, "promote", "none", "1"),
        (CHALLENGER, "clear", "1", "none"),
        (CHALLENGER, "register", "none", "2"),
        (CHALLENGER, "register", "2", "3"),
        (CHAMPION, "promote", "1", "3"),
        (CHALLENGER, "clear", "3", "none"),
        (CHAMPION, "rollback", "3", "1"),
    ]
    assert [c.at for c in history] == sorted(c.at for c in history)
    promoted = history[5]
    assert promoted.actor == "test" and "beats the champion v1" in promoted.reason
    assert set(promoted.metrics) == {"candidate_bpb", "base_bpb", "champion_bpb"}
    assert (history[-1].actor, history[-1].reason) == ("oncall", "canary errors")
    runs = mlflow.MlflowClient(settings.tracking_uri).search_runs(
        [
            mlflow.MlflowClient(settings.tracking_uri)
            .get_experiment_by_name("model-aliases")
            .experiment_id
        ],
        filter_string=f"tags.model = '{name}'",
    )
    assert len(runs) == len(history)  # each change is its own MLflow run


def test_with_a_canary_to_come_a_passing_model_stays_challenger(world: World) -> None:
    """The nightly's way: the first model has no champion to face and is promoted; a better
    one later is left as challenger for the canary rollout to decide on live traffic."""
    name = "canaried"
    first = promote(world, compressed(world, "canary-first", steps=3), name, canary=True)
    assert (first.promoted, first.canary_pending, first.champion) == (True, False, "1")
    better = promote(world, compressed(world, "canary-better", steps=30), name, canary=True)
    assert (better.promoted, better.canary_pending) == (False, True)
    assert (better.champion, better.challenger) == ("1", "2")
    assert "canary rollout against v1" in better.reasons[-1]
    assert model_registry(world.settings).version_tags(name, "2")["decision"] == "canary"


def test_a_model_that_failed_the_gate_is_registered_but_never_promoted(world: World) -> None:
    report = promote(world, compressed(world, "ungated", 5, gate_passed=False), "gated")
    assert report.version == "1" and not report.promoted
    assert report.evaluation.candidate_bpb < report.evaluation.base_bpb  # better, yet refused
    assert "did not pass the compression gate" in report.reasons[0]
    assert (report.champion, report.challenger) == (None, "1")
    with pytest.raises(ValueError, match="has no champion"):
        rollback_champion("gated", "why not", "oncall", Clients(world.settings))


def test_tampered_or_replaced_files_are_refused_before_loading(world: World) -> None:
    settings, registry = world.settings, model_registry(world.settings)
    promote(world, compressed(world, "tamper", 1), "tampered")
    digest = registry.version_tags("tampered", "1")[DIGEST_TAG]
    local = settings.model_cache_dir / digest
    assert registry.download_verified("tampered", "1") == local
    (local / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"config\.json: sha256 does not match"):
        registry.download_verified("tampered", "1")
    shutil.rmtree(local)

    # The stored artifact itself: changed files, then a manifest rewritten to match them.
    run_id = registry.client.get_model_version("tampered", "1").run_id
    source_dir = Path(registry.client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    source_dir /= "model"
    assert manifest_digest(source_dir) == registry.version_tags("tampered", "1")[DIGEST_TAG]
    (source_dir / "compression.json").write_text('{"method": "x", "steps": []}')
    with pytest.raises(ValueError, match=r"compression\.json: sha256 does not match"):
        registry.download_verified("tampered", "1")
    assert not local.exists()  # the files that did match wait, unused, for the next fill
    assert not (local.parent / f".{digest}.partial" / "compression.json").exists()
    write_manifest(source_dir)
    shutil.rmtree(settings.model_cache_dir)  # a node that never fetched the registered manifest
    with pytest.raises(ValueError, match="does not match the manifest recorded at registration"):
        registry.download_verified("tampered", "1")
    assert not local.exists()


def test_each_kind_of_model_folder_loads_verified(world: World, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    texts = held_out_texts(world.settings, world.snapshot, EVAL_FRACTION)
    base, tokenizer = load_model_folder(world.base_dir)
    base_bpb = bits_per_byte(base, tokenizer, texts, SEQ_LEN)

    # A LoRA adapter starts as the identity: the same score as its base.
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=2)).save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str(world.base_dir)
    tokenizer.save_pretrained(adapter)
    write_manifest(adapter)
    model, _ = load_model_folder(adapter)
    assert bits_per_byte(model, tokenizer, texts, SEQ_LEN) == pytest.approx(base_bpb)

    # Pickle weights: refused unless allowed, and then read as plain tensors.
    pickled = tmp_path / "pickled"
    shutil.copytree(world.base_dir, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    fresh, _ = load_model_folder(world.base_dir)
    torch.save(fresh.state_dict(), pickled / "pytorch_model.bin")
    write_manifest(pickled)
    with pytest.raises(ValueError, match="pickle format"):
        load_model_folder(pickled)
    model, _ = load_model_folder(pickled, allow_pickle=True)
    assert bits_per_byte(model, tokenizer, texts, SEQ_LEN) == pytest.approx(base_bpb)

    unverified = tmp_path / "unverified"
    shutil.copytree(world.base_dir, unverified)
    (unverified / MANIFEST).unlink()
    with pytest.raises(ValueError, match="no manifest"):
        load_model_folder(unverified)


def test_bits_per_byte_of_a_uniform_model_is_log2_vocab_per_predicted_token(
    world: World,
) -> None:
    model, tokenizer = load_model_folder(world.base_dir)
    with torch.no_grad():  # uniform next-token distribution: every token costs ln(V) nats
        for p in model.lm_head.parameters():
            p.zero_()
    texts = held_out_texts(world.settings, world.snapshot, EVAL_FRACTION)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    tokens = sum(len(x) + 1 for x in ids)  # each text ends with EOS
    full, tail = divmod(tokens, SEQ_LEN)  # the first token of a row has no context: unscored
    predicted = full * (SEQ_LEN - 1) + max(tail - 1, 0)
    expected = predicted * math.log2(len(tokenizer)) / sum(len(t.encode()) for t in texts)
    assert bits_per_byte(model, tokenizer, texts, SEQ_LEN) == pytest.approx(expected, rel=1e-4)
    assert AutoTokenizer.from_pretrained(world.base_dir).eos_token_id == tokenizer.eos_token_id
