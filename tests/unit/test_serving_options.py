"""How the serving app is placed: replicas per version, and the label selector that keeps the
router and the retriever on the head (`python -m serving --model-replicas --control-labels`)."""

import argparse

import pytest

from serving.__main__ import parse_labels
from serving.app import build_app, control_options
from tasks.shared.settings import Settings

pytestmark = pytest.mark.unit


def test_labels_parse_as_key_value_pairs() -> None:
    assert parse_labels("llmops.io/role=control") == {"llmops.io/role": "control"}
    assert parse_labels(" a=1, b=x=y ") == {"a": "1", "b": "x=y"}


@pytest.mark.parametrize("text", ["", "role", "=control", ",,"])
def test_bad_labels_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"llmops\.io/role=control"):
        parse_labels(text)


def test_control_deployments_take_no_cpu_and_follow_the_labels() -> None:
    assert control_options(None) == {"num_cpus": 0}
    assert control_options({"llmops.io/role": "control"}) == {
        "num_cpus": 0,
        "label_selector": {"llmops.io/role": "control"},
    }


def test_replicas_below_one_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="replica"):
        build_app(Settings(home=tmp_path), "m", {"1": 100.0}, model_replicas=0)
