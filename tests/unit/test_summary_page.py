"""The nightly summary page: a picture first, then one row per stage."""

import base64

import pytest

from tasks.core.cost import Cost, StageUsage, Usage
from tasks.core.paired import Verdict
from tasks.promote.params import AnswerEvaluation, Evaluation, PromoteReport
from tasks.promote.summary_page import model_scores, stage_table, summary_figure, summary_markdown

pytestmark = pytest.mark.unit


def usage(stage: str, wall_s: float, cost: float) -> StageUsage:
    part = Usage(part="flow process", wall_s=wall_s, cores=1, cpu_s=wall_s, peak_memory_bytes=1)
    return StageUsage(
        stage=stage, wall_s=wall_s, parts=[part], cost=Cost(cpu=cost, memory=0, gpu=0)
    )


USAGE = [usage("ingest", 3.2, 0.0001), usage("finetune", 67.0, 0.0021)]
ANSWERS = AnswerEvaluation(
    set_id="s",
    questions=67,
    means={
        "base": {"token_f1": 0.0, "groundedness": 0.0, "empty": 0.1},
        "candidate": {"token_f1": 0.2, "groundedness": None, "empty": 0.0},
    },
    mlflow_runs={},
    comparisons=[],
    vs_base=Verdict.BETTER,
)
PROMOTED = PromoteReport(
    model_name="m",
    version="2",
    parent_version="1",
    promoted=True,
    champion="2",
    challenger=None,
    reasons=[],
    evaluation=Evaluation(
        snapshot_id="s",
        texts=4,
        utf8_bytes=4000,
        seq_len=64,
        version="2",
        candidate_bpb=2.5,
        base_model_path="/base",
        base_bpb=2.75,
        champion_version="1",
        champion_bpb=2.6,
        answers=ANSWERS,
    ),
)


def test_stage_table_has_a_row_per_stage_and_the_total() -> None:
    outcomes = {"ingest": "read 3 | 1 quarantined", "finetune": "6 steps", "canary": "promoted"}
    assert stage_table(outcomes, USAGE).splitlines() == [
        "| stage | outcome | wall s | cost USD |",
        "|---|---|---:|---:|",
        "| ingest | read 3 / 1 quarantined | 3 | 0.0001 |",
        "| finetune | 6 steps | 67 | 0.0021 |",
        "| canary | promoted |  |  |",  # a stage without usage: no made-up figures
        "| **total** |  | 70 | 0.0022 |",
    ]


def test_model_scores_leave_out_what_was_not_measured() -> None:
    assert model_scores(PROMOTED) == {
        "bits per byte (lower is better)": {"candidate": 2.5, "base": 2.75, "champion": 2.6},
        "token_f1": {"base": 0.0, "candidate": 0.2},
        "groundedness": {"base": 0.0},
        "empty": {"base": 0.1, "candidate": 0.0},
    }
    without = PROMOTED.evaluation.model_copy(update={"answers": None, "champion_bpb": None})
    assert model_scores(PROMOTED.model_copy(update={"evaluation": without})) == {
        "bits per byte (lower is better)": {"candidate": 2.5, "base": 2.75}
    }


def test_the_page_leads_with_the_picture() -> None:
    png = summary_figure(USAGE, model_scores(PROMOTED))
    assert base64.b64decode(png).startswith(b"\x89PNG")
    page = summary_markdown("the line", png, "| stage |\n")
    assert page.index("data:image/png;base64,") < page.index("| stage |") < page.index("the line")
