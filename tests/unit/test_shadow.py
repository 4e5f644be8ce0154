import pytest

from serving.shadow import checked_shadow
from tasks.canary.params import CanaryParams, StepResult

pytestmark = pytest.mark.unit


def test_shadow_shares_are_percentages_of_served_versions():
    assert checked_shadow({4: 50}, {"4": object(), "3": object()}) == {"4": 50.0}
    assert checked_shadow({}, {"3": object()}) == {}
    with pytest.raises(ValueError, match="percentages"):
        checked_shadow({"4": 150}, {"4": object()})
    with pytest.raises(ValueError, match="not served"):
        checked_shadow({"5": 10}, {"4": object()})


def test_a_shadow_step_is_named_for_its_share():
    step = StepResult(
        percent=0, shadow=50, action="rollback", reasons=[], stats={}, replayed=0, seconds=1
    )
    assert step.label == "shadow 50%"
    assert step.model_copy(update={"shadow": 0, "percent": 5}).label == "5%"


def test_the_shadow_step_is_off_by_default_and_bounded():
    assert CanaryParams().shadow_percent == 0
    with pytest.raises(ValueError):
        CanaryParams(shadow_percent=101)
