"""promote_model pauses for a person: run it in a thread under Prefect's test server, wait for
the Paused state, answer as the UI would, and check what was recorded. The tiny world's models
answer nothing, so these runs decide on bits per byte alone (`answer_gate=False`)."""

import threading
import time
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import resume_flow_run
from prefect.input.actions import read_flow_run_input

from flows.promote import promote_model
from flows.release import release_model
from flows.rollback import rollback_model
from tasks.clients import Clients
from tasks.clients.registry import DIGEST_TAG, model_registry
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.promote.params import PromoteParams, PromoteReport, ReleaseParams, RollbackParams
from tasks.promote.registration import alias_history
from tasks.shared.settings import get_settings

from worlds import compressed, tiny_world

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def make_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Builds compression runs of a tiny model trained for more or fewer steps."""
    with tiny_world(tmp_path_factory.mktemp("approval")) as world:
        yield lambda name, steps: compressed(world, name, steps)


def paused_run_id(started: float, timeout: float = 60) -> UUID:
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    while time.monotonic() - started < timeout:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["promote_model"])),
                flow_run_filter=FlowRunFilter(state=state),
            )
        if runs:
            return runs[0].id
        time.sleep(0.5)
    raise TimeoutError("the promote_model run never paused")


def run_and_answer(
    params: PromoteParams, answer: dict[str, object] | None
) -> PromoteReport | BaseException:
    """The flow in a thread; answer its pause as the Prefect UI does (None: never answer)."""
    outcome: list[PromoteReport | BaseException] = []

    def target() -> None:
        try:
            outcome.append(promote_model(params))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    flow_run_id = paused_run_id(time.monotonic())
    with get_client(sync_client=True) as client:  # what the UI shows: the question and form
        state = client.read_flow_run(flow_run_id).state
    assert state and state.state_details.run_input_keyset
    keys = state.state_details.run_input_keyset
    assert "to champion?" in read_flow_run_input(keys["description"], flow_run_id)
    schema = read_flow_run_input(keys["schema"], flow_run_id)
    assert {"approve", "reviewer", "reason"} <= set(schema["properties"])
    if answer is not None:
        resume_flow_run(flow_run_id, run_input=answer)
    thread.join(timeout=120)
    assert not thread.is_alive()
    return outcome[0]


def test_a_person_approves_or_rejects_and_the_decision_is_recorded(
    prefect_harness, make_report
) -> None:
    name, settings = "reviewed", get_settings()
    # The tiny world's models answer nothing, so the rule decides on bits per byte alone here.
    params = dict(model_name=name, require_approval=True, approval_poll_s=1, answer_gate=False)

    approved = run_and_answer(
        PromoteParams(compress_report=make_report("first", 8), **params),
        {"approve": True, "reviewer": "ada", "reason": "lower bits/byte, samples read well"},
    )
    assert isinstance(approved, PromoteReport), approved
    assert approved.promoted and approved.champion == approved.version == "1"
    assert approved.approval and approved.approval.reviewer == "ada"
    assert approved.approval.reason == "lower bits/byte, samples read well"
    assert "approved by ada: lower bits/byte, samples read well" in approved.reasons

    rejected = run_and_answer(
        PromoteParams(compress_report=make_report("second", 30), **params),
        {"approve": False, "reviewer": "grace", "reason": "wait for the canary"},
    )
    assert isinstance(rejected, PromoteReport), rejected
    assert rejected.approval and not rejected.approval.approve
    assert not rejected.promoted and (rejected.champion, rejected.challenger) == ("1", "2")
    assert rejected.reasons[-1] == "rejected by grace: wait for the canary"

    registry = model_registry(settings)
    assert registry.version_tags(name, "1")["reviewer"] == "ada"
    tags = registry.version_tags(name, "2")
    assert (tags["approval"], tags["reviewer"], tags["review_reason"]) == (
        "rejected",
        "grace",
        "wait for the canary",
    )
    promoted = [c for c in alias_history(name, Clients(settings)) if c.alias == CHAMPION]
    assert [(c.version, c.actor) for c in promoted] == [("1", "ada")]

    # Nobody answers in time: the run fails saying so, and the champion stays.
    unanswered = run_and_answer(
        PromoteParams(
            compress_report=make_report("third", 30), **{**params, "approval_timeout_s": 2}
        ),
        None,
    )
    assert isinstance(unanswered, FlowPauseTimeout)
    assert "v3 stays challenger and the champion is unchanged" in str(unanswered)
    assert registry.aliases(name) == {CHAMPION: "1", CHALLENGER: "3"}
    assert registry.version_tags(name, "3")["approval"] == "no decision"

    with get_client(sync_client=True) as client:
        keys = ArtifactFilterKey(any_=["promotion-report", f"alias-history-{name}"])
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=keys))
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["promote_model"])),
            sort=FlowRunSort.START_TIME_ASC,
        )
    assert {a.key for a in found} == {"promotion-report", f"alias-history-{name}"}
    assert [r.state.type for r in runs if r.state] == [StateType.COMPLETED] * 2 + [StateType.FAILED]


def test_rollback_flow_puts_the_previous_champion_back(prefect_harness, make_report) -> None:
    name, settings = "rolled", get_settings()
    for steps in (8, 30):  # two champions, the second better
        report = promote_model(
            PromoteParams(
                compress_report=make_report(f"r{steps}", steps), model_name=name, answer_gate=False
            )
        )
        assert report.promoted
    change = rollback_model(
        RollbackParams(model_name=name, reason="p99 latency", requested_by="bob")
    )
    assert (change.version, change.previous, change.actor) == ("1", "2", "bob")
    assert model_registry(settings).aliases(name)[CHAMPION] == "1"
    with pytest.raises(ValueError, match="no previous champion"):
        rollback_model(RollbackParams(model_name=name))
    assert [c.action for c in alias_history(name, Clients(settings))][-1] == "rollback"


def test_a_run_id_is_enough_to_promote(prefect_harness, make_report) -> None:
    report = make_report("by-id", 8)
    promoted = promote_model(
        PromoteParams(compress_run_id=report.run_id, model_name="by-id", answer_gate=False)
    )
    assert promoted.promoted and promoted.version == "1"
    digest = model_registry(get_settings()).version_tags("by-id", "1")[DIGEST_TAG]
    assert (get_settings().model_cache_dir / digest).is_dir()  # fetched and verified


def test_a_prompt_change_is_released_as_the_challenger(prefect_harness, make_report) -> None:
    name = "reprompted"
    report = make_report("reprompt", 8)
    promote_model(PromoteParams(compress_report=report, model_name=name, answer_gate=False))
    released = release_model(
        ReleaseParams(model_name=name, instruction="Be brief; cite [n].", requested_by="carol")
    )
    assert (released.version, released.from_version) == ("2", "1")
    assert [c.split(":")[0] for c in released.changes] == ["prompt"]
    aliases = model_registry(get_settings()).aliases(name)
    assert (aliases[CHAMPION], aliases[CHALLENGER]) == ("1", "2")  # the canary's to roll out
    with pytest.raises(ValueError, match="must not be empty"):
        release_model(ReleaseParams(model_name=name, instruction="  "))
