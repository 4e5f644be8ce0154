"""The nightly's form: a few decisions on top, every stage's parameters as one JSON field;
one control per decision (a choice on top wins over `advanced`, empty keeps the default)."""

import re

import pytest
from pydantic import ValidationError

from tasks.canary.params import CanaryParams
from tasks.finetune.params import FinetuneParams
from tasks.ingest.params import IngestParams
from tasks.nightly.params import NightlyParams

pytestmark = pytest.mark.unit


def test_defaults_are_each_stages_defaults_with_the_rollout_on() -> None:
    params = NightlyParams()
    assert params.finetune == FinetuneParams() and params.ingest == IngestParams()
    assert params.rollout == CanaryParams() and params.promote.require_approval is False


def test_a_choice_on_top_wins_over_advanced_and_empty_keeps_it() -> None:
    advanced = {"finetune": {"max_steps": 99, "learning_rate": 0.01}}
    chosen = NightlyParams(training_steps=10, training_data="instructions", advanced=advanced)
    assert (chosen.finetune.max_steps, chosen.finetune.learning_rate) == (10, 0.01)
    assert chosen.finetune.data == "instructions"
    assert NightlyParams(advanced=advanced).finetune.max_steps == 99
    assert NightlyParams(source_dir="/docs").ingest.source_dir == "/docs"
    assert NightlyParams(require_approval=True).promote.require_approval is True
    assert NightlyParams(canary=False).rollout is None


def test_stage_models_from_python_land_in_advanced() -> None:
    params = NightlyParams(
        ingest=IngestParams(demo_topics=["try"]), finetune=FinetuneParams(max_steps=6), canary=None
    )
    # a field with its own choice on top moves there: one control per decision
    assert params.advanced == {"ingest": {"demo_topics": ["try"]}} and params.training_steps == 6
    assert params.rollout is None and params.finetune.max_steps == 6
    later = params.with_stages(
        finetune=params.finetune.model_copy(update={"max_steps": 30}),
        canary=CanaryParams(steps=[25, 100]),
    )
    assert later.finetune.max_steps == 30 and later.ingest.demo_topics == ["try"]
    assert later.rollout is not None and later.rollout.steps == [25, 100]
    assert NightlyParams.model_validate(later.model_dump()) == later  # what a run records


@pytest.mark.parametrize(
    ("advanced", "message"),
    [
        ({"finetun": {}}, "unknown stage(s) ['finetun']"),
        ({"finetune": {"learning_rate": 0}}, "finetune: learning_rate: Input should be greater"),
        ({"compress": {"methods": ["zip"]}}, "compress: methods.0"),
    ],
    ids=["unknown-stage", "bad-value", "bad-choice"],
)
def test_a_wrong_advanced_field_is_refused_with_its_stage(advanced: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        NightlyParams(advanced=advanced)


def test_the_form_asks_a_few_questions_in_words() -> None:
    """Seven fields, none nested: the form fits a screen (the stages' hundred-odd fields are
    behind the one JSON field), and every title is words with a description."""
    schema = NightlyParams.model_json_schema()
    fields = schema["properties"]
    assert len(fields) == 7
    assert all(f.get("description") and " " in f["title"] for f in fields.values()), fields
    assert "$defs" not in schema  # no stage model is rendered as a nested form
