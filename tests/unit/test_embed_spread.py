"""When the embed stage spreads its encoding over Ray, how many actors, and how batches split."""

import pytest

from tasks.embed.params import EmbedParams
from tasks.embed.ray_encoder import actor_count, split_batches, use_ray

pytestmark = pytest.mark.unit


def test_ray_is_used_when_asked_or_when_a_cluster_is_configured() -> None:
    assert use_ray(None, None) is False  # the laptop default stays local
    assert use_ray(None, "ray://10.0.0.1:10001") is True
    assert use_ray(False, "ray://10.0.0.1:10001") is False
    assert use_ray(True, None) is True  # local Ray, on request
    assert EmbedParams().on_ray is None


def test_actor_count_follows_the_cluster_and_refuses_what_does_not_fit() -> None:
    assert actor_count(None, {"CPU": 2.0}, 1.0) == 2
    assert actor_count(None, {"CPU": 4.0}, 2.0) == 2
    assert actor_count(1, {"CPU": 2.0}, 1.0) == 1
    with pytest.raises(ValueError, match=r"3 embedding actors asked for.*room for 2"):
        actor_count(3, {"CPU": 2.0}, 1.0)
    with pytest.raises(ValueError, match="too few for one embedding actor"):
        actor_count(None, {"CPU": 1.0}, 2.0)


def test_batches_cover_every_item_once_in_order() -> None:
    slices = split_batches(130, 64)
    assert [(s.start, s.stop) for s in slices] == [(0, 64), (64, 128), (128, 130)]
    assert split_batches(0, 64) == []
    with pytest.raises(ValueError, match="at least 1"):
        split_batches(10, 0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        EmbedParams(ray_actors=0)
    with pytest.raises(ValueError, match="greater than 0"):
        EmbedParams(cpus_per_actor=0)
