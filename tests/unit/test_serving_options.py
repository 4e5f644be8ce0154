"""How the serving app is placed: replicas per version (fixed or autoscaled on ongoing
requests), their batch, queue and devices, and the label selector that keeps the router and the
retriever on the head (`python -m serving --model-replicas --autoscale --control-labels`)."""

import argparse

import pytest

from serving.__main__ import model_options, parse_autoscaling, parse_labels
from serving.app import build_app, control_options
from serving.options import Autoscaling, ModelOptions
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


def test_options_below_their_bounds_are_refused() -> None:
    for bad in (
        {"model_replicas": 0},
        {"max_batch_size": 0},
        {"max_queue": -1},
        {"model_gpus": 2},  # a replica places its model on one device
        {"engine": "vllm"},
    ):
        with pytest.raises(ValueError):
            ModelOptions(**bad)
    with pytest.raises(ValueError, match="min_replicas <= max_replicas"):
        Autoscaling(min_replicas=3, max_replicas=2)


def test_a_replica_asks_for_its_batch_and_queue_and_a_gpu_when_given() -> None:
    fixed = ModelOptions(max_batch_size=8, max_queue=16, model_replicas=2).deployment()
    assert fixed == {
        "ray_actor_options": {"num_cpus": 1.0},
        "max_ongoing_requests": 8 + 16 + 8,  # beyond the queue: a 429, not a wait in the router
        "num_replicas": 2,
    }
    gpu = ModelOptions(model_gpus=0.5, model_cpus=2).deployment()
    assert gpu["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5}


def test_autoscaling_on_ongoing_requests_from_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    for flag, default in (
        ("--engine", "continuous"),
        ("--max-batch-size", 8),
        ("--batch-wait-ms", 10.0),
        ("--max-queue", 64),
        ("--model-cpus", 1.0),
        ("--model-gpus", 0.0),
        ("--model-replicas", 1),
    ):
        parser.add_argument(flag, type=type(default), default=default)
    parser.add_argument("--autoscale", type=parse_autoscaling)
    args = parser.parse_args(["--autoscale", "1-4", "--max-batch-size", "6"])
    options = model_options(args)
    assert options.autoscaling == Autoscaling(1, 4, 6.0)  # the target defaults to the batch
    deployment = options.deployment()
    assert "num_replicas" not in deployment
    assert deployment["autoscaling_config"]["target_ongoing_requests"] == 6.0
    assert parse_autoscaling("2-8@12") == (2, 8, 12.0)
    with pytest.raises(argparse.ArgumentTypeError, match="1-4@8"):
        parse_autoscaling("some")


def test_the_app_takes_the_options_or_their_fields_as_the_canary_gives_them(tmp_path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ValueError, match="replica"):
        build_app(settings, "m", {"1": 100.0}, model_replicas=0)
    with pytest.raises(ValueError, match="not both"):
        build_app(settings, "m", {"1": 100.0}, options=ModelOptions(), model_cpus=2)
