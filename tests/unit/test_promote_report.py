"""The promotion report's wording, as a person reads it in the Prefect UI."""

import pytest

from tasks.promote.params import Evaluation, PromoteReport

pytestmark = pytest.mark.unit

EVALUATION = Evaluation(
    snapshot_id="s1",
    texts=4,
    utf8_bytes=4000,
    seq_len=64,
    version="1",
    candidate_bpb=2.5,
    base_model_path="/base",
    base_bpb=2.75,
)


def report(**fields: object) -> PromoteReport:
    base = {"version": "1", "parent_version": "none", "promoted": True}
    aliases = {"champion": "1", "challenger": None}
    return PromoteReport(
        model_name="m", evaluation=EVALUATION, reasons=["r"], **{**base, **aliases, **fields}
    )


def test_a_missing_version_is_said_in_words_never_as_vnone() -> None:
    first = report()
    assert first.aliases_line() == (
        "Champion now: v1; challenger: none; parent: none (no champion when it was registered)"
    )
    assert "vnone" not in first.markdown()
    # The registry may hand a missing holder back as None or as its "none" marker.
    assert "challenger: none" in report(challenger="none").aliases_line()
    assert "Champion now: none" in report(champion=None, promoted=False).aliases_line()


def test_versions_that_exist_are_named() -> None:
    later = report(version="3", parent_version="2", champion="2", challenger="3", promoted=False)
    assert later.aliases_line() == "Champion now: v2; challenger: v3; parent: v2"
    assert later.markdown().startswith("# m v3: not promoted\n")


def test_a_model_left_for_the_canary_is_not_called_rejected() -> None:
    pending = report(promoted=False, canary_pending=True, champion="1", challenger="2")
    assert pending.verdict == "challenger, for a canary rollout to decide"
    assert report().verdict == "promoted to champion"


def test_the_bits_per_byte_table_names_models_not_metric_keys() -> None:
    scores = report(version="2").model_copy(
        update={
            "evaluation": EVALUATION.model_copy(
                update={"version": "2", "champion_version": "1", "champion_bpb": 2.6}
            )
        }
    )
    text = scores.markdown()
    assert "| candidate v2 | 2.5000 |" in text and "| champion v1 | 2.6000 |" in text
    assert "| base model | 2.7500 |" in text and "_bpb" not in text
