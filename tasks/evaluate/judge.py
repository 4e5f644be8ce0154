"""The optional LLM judge in an evaluation: faithfulness and relevance graded by any
OpenAI-compatible endpoint (`tasks.clients.judge`), next to the code scorers, never instead.

The judge is asked once per answer before the record is written; its grades go into MLflow's
GenAI evaluation as two more scorers (`judge_faithfulness`, `judge_relevance`: a value with the
judge's reply as rationale, or no value and the reason it is missing), into the run's metrics
and the report. The prompt version is linked to the run. Judged metrics are reported, never
used by a gate: the quality contract's code scorers decide (their names are the only ones a
gate's `ContractParams` accepts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.core.judging import JUDGE_METRICS, Judged
from tasks.core.scorers import Answer, Example

if TYPE_CHECKING:
    from tasks.clients import Clients
    from tasks.clients.judge import Judge, JudgePrompt
    from tasks.clients.tracking import TrackedRun

NOTE = (
    "judge_* rows: an LLM judge's grades (0..5 scaled to 0..1), reported next to the code "
    "scorers and never used by a gate."
)


def judge_for(clients: Clients, wanted: bool) -> Judge | None:
    """The judge when an evaluation asks for one, its prompt checked (and registered on first
    use). Asked for and not configured, or a prompt it cannot fill: refused, so an evaluation
    calls this before producing any answer."""
    if not wanted:
        return None
    judge = clients.judge
    if judge is None:
        raise ValueError(
            "the evaluation asks for an LLM judge (judge=true) but none is configured: set "
            "LLMOPS_JUDGE_URL to an OpenAI-compatible endpoint (and LLMOPS_JUDGE_MODEL, "
            "LLMOPS_JUDGE_API_KEY as it needs), or run without the judge"
        )
    judge.prompt()
    return judge


@dataclass(frozen=True)
class Judgements:
    """Each question's judged metrics (in the set's order) and who judged them with what."""

    prompt: JudgePrompt
    judge: str  # "model at url"
    question_ids: tuple[str, ...]
    rows: tuple[dict[str, Judged], ...]

    def scores(self) -> list[dict[str, float | None]]:
        return [{m: j.value for m, j in row.items()} for row in self.rows]

    def missing(self) -> dict[str, int]:
        """Why judged values are missing, with how many (each question counts per metric)."""
        reasons = Counter(j.error for row in self.rows for j in row.values() if j.error)
        return dict(reasons.most_common())

    def scorers(self) -> list[Any]:
        """One MLflow scorer per judged metric, giving the grade already asked for."""
        from mlflow.entities import AssessmentSource, Feedback
        from mlflow.genai.scorers import scorer

        by_question = dict(zip(self.question_ids, self.rows, strict=True))
        source = AssessmentSource(source_type="LLM_JUDGE", source_id=self.judge)
        metadata = {"judge_prompt": self.prompt.uri}

        def make(metric: str) -> Any:
            def run(expectations: dict) -> Any:
                judged = by_question[expectations["question_id"]][metric]
                return Feedback(
                    value=judged.value,
                    error=judged.error,
                    rationale=judged.reply or None,
                    source=source,
                    metadata=metadata,
                )

            return scorer(name=metric)(run)

        return [make(metric) for metric in JUDGE_METRICS]

    def record(self, run: TrackedRun) -> None:
        """The judge and its prompt version on the run (the version linked, as MLflow shows)."""
        run.set_tags(
            {
                "judge": self.judge,
                "judge_prompt": self.prompt.uri,
                "judge_prompt_version": self.prompt.version,
            }
        )
        run.client.link_prompt_version_to_run(run.run_id, self.prompt.raw)


def judge_answers(
    judge: Judge, examples: Sequence[Example], answers: Sequence[Answer]
) -> Judgements:
    """Ask the judge about every answer with the latest registered prompt."""
    if len(examples) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(examples)} questions")
    prompt = judge.prompt()
    rows = judge.judge(prompt, examples, answers)
    return Judgements(prompt, judge.label, tuple(e.question_id for e in examples), tuple(rows))
