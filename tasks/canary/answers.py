"""The quality contract at each canary step: both versions answer the same pinned questions
through the live app (each request pinned to its version), and the paired verdict joins the
operational checks; live answers sampled from the step's traffic are scored for groundedness."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from tasks.canary.params import CanaryParams
from tasks.clients import Clients
from tasks.core.paired import Verdict
from tasks.core.scorers import Example, live_scores
from tasks.evaluate.answer import answer_with_endpoint
from tasks.evaluate.compare import compare_scores
from tasks.evaluate.evaluation import choose_set
from tasks.evaluate.params import EvalSetParams
from tasks.evaluate.record import score_answers

Scores = list[dict[str, float | None]]


def pinned_questions(clients: Clients, name: str, version: str, limit: int) -> list[Example]:
    """The challenger's held-out questions (its training run's split), answerable and not."""
    tags = clients.registry.version_tags(name, version)
    if not {"training_run", "data_snapshot"} <= set(tags):
        raise ValueError(f"{name} v{version} lacks its training_run/data_snapshot tags")
    run = clients.registry.client.get_run(tags["training_run"]).data.params
    params = EvalSetParams(
        snapshot_id=tags["data_snapshot"],
        eval_fraction=float(run["eval_fraction"]),
        max_questions=limit,
    )
    return choose_set(clients, params)[0].examples()


def answer_pinned(
    clients: Clients, params: CanaryParams, versions: dict[str, str], examples: Sequence[Example]
) -> dict[str, Scores]:
    """Each role's scores on `examples`, answered by its version through the serving app."""
    from tasks.clients.secrets import with_serving_key

    key = with_serving_key(clients.settings).serving_api_key
    scores = {}
    for role, version in versions.items():
        answers = answer_with_endpoint(
            params.router_url,
            examples,
            None,  # the app retrieves, as for any user
            params.answers.max_tokens,
            api_key=key.get_secret_value() if key else None,
            model=params.model_name,
            version=version,
            top_k=None,  # each version retrieves as its release says, as for live traffic
        )
        scores[role] = score_answers(examples, answers, params.answers.top_k)
    return scores


def pinned_verdict(scores: dict[str, Scores], params: CanaryParams) -> tuple[Verdict, list[str]]:
    verdict, _, reasons = compare_scores(
        scores["challenger"], scores["champion"], params.contract, "champion"
    )
    return verdict, reasons


def live_groundedness(
    frame: pd.DataFrame, versions: dict[str, str], pinned: set[str]
) -> dict[str, float | None]:
    """Mean groundedness of each version's live answers that carried passages (the pinned
    questions left out), and None where there were none; refusals are not scored."""
    out: dict[str, float | None] = {}
    for role, version in versions.items():
        rows = frame[(frame["version"] == version) & (frame["status"] == 200)]
        values = []
        for prompt, response, sources in zip(
            rows["prompt"], rows["response"], rows["sources"], strict=True
        ):
            value = live_scores(response, sources, miss_score=0.0)["groundedness"]
            if prompt not in pinned and value is not None:
                values.append(value)
        out[role] = sum(values) / len(values) if values else None
    return out
