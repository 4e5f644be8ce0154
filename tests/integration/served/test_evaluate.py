"""The evaluation stage on a tiny served world: a registered version answers held-out questions
in-process and is recorded through MLflow's GenAI evaluation; the served app is evaluated over
HTTP with a pinned version; an endpoint that is down and a version that cannot load give
reasons, not scores; a canary step whose answers are inconclusive asks for more."""

import json
import shutil

import mlflow
import pytest
import torch
from transformers import LlamaForCausalLM

from tasks.canary.answers import pinned_questions
from tasks.canary.params import CanaryParams
from tasks.canary.rollout import run_step
from tasks.clients import Clients
from tasks.compress.methods.quantize import quantize_dynamic_int8
from tasks.compress.params import AnswerGateParams
from tasks.core.gate import Gate, Measured, choose
from tasks.core.scorers import METRICS, summarize
from tasks.evaluate.answer import ModelLoadError
from tasks.evaluate.evaluation import (
    answers_of_folder,
    choose_set,
    fetch_passages,
    record_evaluation,
    target_answers,
)
from tasks.evaluate.params import AnswerParams, EvalSetParams, EvaluateParams
from tasks.evaluate.record import score_answers
from tasks.shared.candidates import save_candidate
from tasks.shared.manifest import write_manifest
from tasks.shared.models import load_model_folder, perplexity

from worlds import APP, EVAL_FRACTION, MODEL, WEIGHTS, free_port

pytestmark = pytest.mark.integration

HOW = AnswerParams(max_tokens=8, top_k=3)


def params_for(world, **target) -> EvaluateParams:
    questions = EvalSetParams(
        snapshot_id=world.snapshot, eval_fraction=EVAL_FRACTION, max_questions=10
    )
    return EvaluateParams(model_name=MODEL, eval_set=questions, answers=HOW, **target)


def test_a_registered_version_is_answered_scored_and_recorded(service, served_world) -> None:
    clients = Clients(served_world.settings)
    params = params_for(served_world, version="1")
    chosen, golden = choose_set(clients, params.eval_set)
    examples = chosen.examples()
    assert golden is None and 5 <= len(examples) <= 10
    assert any(not e.answerable for e in examples)  # the unanswerables come along
    answers = target_answers(clients, params, examples)
    assert len(answers) == len(examples)
    assert all(a.error is None and a.completion_tokens <= 8 for a in answers)
    assert all(a.passages and len(a.passages) == len(a.passage_doc_ids) for a in answers)
    scores = score_answers(examples, answers, HOW.top_k)
    report = record_evaluation(clients, params.target, chosen, examples, answers, scores, HOW.top_k)
    assert report.questions == len(examples) and set(report.metrics) == set(METRICS)
    assert report.metrics["refusal_correct"].n == len(examples)

    # MLflow holds a trace per question (answer, passages, scores) and the set as the input.
    mlflow.set_tracking_uri(served_world.settings.tracking_uri)
    run = mlflow.MlflowClient().get_run(report.mlflow_run_id)
    traces = mlflow.search_traces(
        locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list"
    )
    assert len(traces) == len(examples)
    assert f"evalset-{chosen.set_id}" in {d.dataset.name for d in run.inputs.dataset_inputs}
    assert run.data.metrics["eval_refusal_correct"] == pytest.approx(
        report.metrics["refusal_correct"].mean
    )
    assert run.data.tags["target"] == f"{MODEL}@1"


def test_the_served_app_is_evaluated_over_http_with_a_pinned_version(service, served_world):
    clients = Clients(service.settings)  # carries the app's API key
    params = params_for(served_world, endpoint=service.url, pin_version="2", endpoint_model=MODEL)
    examples = choose_set(clients, params.eval_set)[0].examples()
    answers = target_answers(clients, params, examples)
    assert all(a.error is None for a in answers), [a.error for a in answers]
    # The app retrieved: its sources (with their text) are the passages scored against.
    assert all(a.passages and all(a.passages) for a in answers)
    assert all(a.prompt_tokens > 0 for a in answers)


def test_an_endpoint_that_is_down_leaves_every_metric_missing_with_its_reason(
    service, served_world
) -> None:
    clients = Clients(served_world.settings)
    down = f"http://127.0.0.1:{free_port()}"
    params = params_for(served_world, endpoint=down, endpoint_retrieval=False)
    chosen = choose_set(clients, params.eval_set)[0]
    examples = chosen.examples()
    answers = target_answers(clients, params, examples)
    assert all(a.error and "ConnectError" in a.error for a in answers)
    scores = score_answers(examples, answers, HOW.top_k)
    assert all(row["token_f1"] is None and row["refusal_correct"] is None for row in scores)
    report = record_evaluation(clients, params.target, chosen, examples, answers, scores, 3)
    assert sum(report.missing.values()) == len(examples)
    assert report.metrics["token_f1"].mean is None


def test_a_version_that_fails_to_load_names_itself_and_why(service, served_world, tmp_path):
    clients = Clients(served_world.settings)
    folder = clients.registry.download_verified(MODEL, "1")
    broken = shutil.copytree(folder, tmp_path / "broken")
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-16])  # truncated: its digest no longer matches
    examples = choose_set(clients, params_for(served_world).eval_set)[0].examples()[:2]
    passages = fetch_passages(clients, examples, 2)
    with pytest.raises(ModelLoadError, match=r"v9 could not be loaded from .*broken"):
        answers_of_folder(clients, broken, "v9", examples, passages, HOW)


def test_an_inconclusive_canary_step_asks_more_questions_then_ends_inconclusive(
    service, served_world
) -> None:
    """Both tiny versions answer the pinned questions about equally badly: the paired verdict is
    inconclusive, so the step adds rounds of pinned questions (more evidence) up to its bound
    and ends neither promoted nor rolled back."""
    clients = Clients(service.settings)
    versions = {"champion": "1", "challenger": "2"}
    params = CanaryParams(
        model_name=MODEL,
        app_name=APP,
        router_url=service.url,
        pinned_questions=4,
        max_extensions=1,
        max_wait_s=30,
        thresholds={"min_requests": 4, "max_p95_ratio": 100.0},
        answers=HOW,
        contract={"min_samples": 2},
    )
    pinned = pinned_questions(clients, MODEL, versions["challenger"], 8)
    assert len(pinned) == 8
    try:
        step = run_step(clients, params, versions, 30.0, False, None, ["hello"], pinned)
    finally:
        clients.serve.set_weights(WEIGHTS, APP)
    assert step.action == "extend", step.reasons
    assert (step.pinned, step.extensions) == (8, 1)  # one round added, then the bound
    assert any("inconclusive" in r for r in step.reasons)
    assert step.stats["challenger"]["pinned_token_f1"] is not None


def test_the_compression_gate_refuses_a_candidate_that_keeps_its_perplexity_but_loses_answers(
    service, served_world, tmp_path
) -> None:
    """Two candidates of one model with its very weights: int8 (answers as before) and one
    whose config ends a sequence at any token (a broken packaging: every answer is empty).
    Both keep the perplexity; only the answers tell them apart, and the gate sees it. (The
    tiny world's untrained model is the one: the only one here that says anything at all.)"""
    clients = Clients(served_world.settings)
    torch.manual_seed(0)
    model = LlamaForCausalLM(served_world.config)  # a window of 512: room for the passages
    reference = save_candidate(
        model, tmp_path / "uncompressed", {"method": "none", "steps": []}, served_world.base_dir
    )
    rows = served_world.rows[:8]
    baseline_ppl = perplexity(model, rows)
    step = quantize_dynamic_int8(model)
    recipe = {"method": "int8_dynamic", "steps": [step]}
    good = save_candidate(model, tmp_path / "int8", recipe, served_world.base_dir)
    mute = shutil.copytree(reference, tmp_path / "mute")
    config = json.loads((mute / "config.json").read_text())
    config["eos_token_id"] = list(range(served_world.config.vocab_size))
    (mute / "config.json").write_text(json.dumps(config))
    write_manifest(mute)

    examples = choose_set(clients, params_for(served_world).eval_set)[0].examples()
    passages = fetch_passages(clients, examples, HOW.top_k)
    measured = []
    for name, folder in (("uncompressed", reference), ("int8", good), ("mute", mute)):
        loaded, _ = load_model_folder(folder)
        answers = answers_of_folder(clients, folder, name, examples, passages, HOW)
        means = {m: s.mean for m, s in summarize(score_answers(examples, answers, 3)).items()}
        measured.append(Measured(name, 1000, 1.0, perplexity(loaded, rows), means))
    baseline, int8, muted = measured
    assert muted.perplexity == pytest.approx(baseline_ppl)  # the same weights
    assert int8.perplexity == pytest.approx(baseline_ppl, rel=0.03)
    assert baseline.answers["empty"] < 0.5 and muted.answers["empty"] == 1.0

    gate = Gate(min_size_reduction=None, max_answer_drop=AnswerGateParams().max_answer_drop)
    chosen, broken = choose(baseline, [int8, muted], gate)
    assert chosen == "int8" and broken["int8"] == []
    assert any(b.startswith("empty 1.000") for b in broken["mute"]), broken["mute"]
    # Perplexity alone would have let it through.
    assert choose(baseline, [muted], Gate(min_size_reduction=None))[0] == "mute"
