import pytest

from tasks.core.releases import Followed, follow

pytestmark = pytest.mark.unit

BAKE = 600.0


def aliases(champion: str | None, challenger: str | None = None) -> dict[str, str]:
    named = {"champion": champion, "challenger": challenger}
    return {alias: version for alias, version in named.items() if version is not None}


def test_first_reading_keeps_the_deployed_split():
    step = follow(Followed(), aliases("1", "2"), {"2": 0.0, "1": 100.0}, now=0, bake_s=BAKE)
    assert step.state == Followed(champion="1", challenger="2")
    assert (step.load, step.release, step.weights) == ([], [], None)


def test_first_reading_gives_a_starved_champion_all_traffic():
    step = follow(Followed(), aliases("1"), {"2": 100.0, "1": 0.0}, now=0, bake_s=BAKE)
    assert step.weights == {"1": 100.0, "2": 0.0}
    assert step.release == []  # loaded by whoever deployed: not following's to release


def test_promotion_keeps_the_old_champion_warm_for_the_bake():
    state = Followed(champion="1", challenger="2")
    step = follow(state, aliases("2"), {"2": 100.0, "1": 0.0}, now=10, bake_s=BAKE)
    assert step.state == Followed(champion="2", previous="1", bake_until=10 + BAKE)
    assert step.weights == {"2": 100.0, "1": 0.0}
    assert (step.load, step.release) == ([], [])


def test_rollback_during_the_bake_is_a_weight_change():
    state = Followed(champion="2", previous="1", bake_until=10 + BAKE)
    step = follow(state, aliases("1"), {"2": 100.0, "1": 0.0}, now=20, bake_s=BAKE)
    assert step.load == []  # nothing to load: 1 is warm
    assert step.weights == {"1": 100.0, "2": 0.0}
    assert step.state.previous == "2"  # the rolled-back one bakes in turn


def test_rollback_after_the_bake_loads_the_old_champion_first():
    state = Followed(champion="2", previous="1", bake_until=10 + BAKE)
    expired = follow(state, aliases("2"), {"2": 100.0, "1": 0.0}, now=11 + BAKE, bake_s=BAKE)
    assert expired.release == ["1"] and expired.weights == {"2": 100.0}
    step = follow(expired.state, aliases("1"), {"2": 100.0}, now=12 + BAKE, bake_s=BAKE)
    assert step.load == ["1"]
    assert step.weights == {"1": 100.0, "2": 0.0}


def test_the_next_promotion_releases_the_one_baking():
    state = Followed(champion="2", previous="1", bake_until=BAKE)
    live = {"3": 0.0, "2": 100.0, "1": 0.0}
    registered = follow(state, aliases("2", "3"), live, now=5, bake_s=BAKE)
    assert registered.weights is None  # the challenger is loaded already, at 0
    promoted = follow(registered.state, aliases("3"), live, now=6, bake_s=BAKE)
    assert promoted.release == ["1"]
    assert promoted.weights == {"3": 100.0, "2": 0.0}
    assert promoted.state.previous == "2"


def test_a_new_challenger_is_loaded_at_weight_zero_and_the_split_is_kept():
    state = Followed(champion="1")
    step = follow(state, aliases("1", "4"), {"1": 100.0}, now=0, bake_s=BAKE)
    assert step.load == ["4"]
    assert step.weights == {"4": 0.0, "1": 100.0}  # challenger first: routing order


def test_the_canary_split_stands_while_the_aliases_do():
    state = Followed(champion="1", challenger="4")
    step = follow(state, aliases("1", "4"), {"4": 25.0, "1": 75.0}, now=0, bake_s=BAKE)
    assert step.weights is None


def test_a_cleared_challenger_is_released():
    state = Followed(champion="1", challenger="4")
    step = follow(state, aliases("1"), {"4": 0.0, "1": 100.0}, now=0, bake_s=BAKE)
    assert step.release == ["4"] and step.weights == {"1": 100.0}


def test_no_champion_changes_nothing():
    state = Followed(champion="1", challenger="4")
    step = follow(state, {}, {"4": 0.0, "1": 100.0}, now=0, bake_s=BAKE)
    assert step.state == state and step.weights is None and not (step.load or step.release)
