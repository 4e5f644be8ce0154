"""The release record kept in a version's tags, and the instruction it names in the prompt."""

import json

import pytest

from tasks.core.context import INSTRUCTION, Chunk, build_prompt
from tasks.core.rails import RailsPolicy, ServingRails
from tasks.core.release import Release
from tasks.promote.params import ReleaseParams
from tasks.shared.generation import Limits, fit_prompt

pytestmark = pytest.mark.unit

RELEASE = Release(
    prompt="prompts:/llmops-instruction/3",
    top_k=4,
    embedding_model="sentence-transformers/all-MiniLM-L6-v2",
    index="document_chunks",
    max_prompt_tokens=2048,
    max_tokens=256,
)


def test_the_record_round_trips_through_version_tags() -> None:
    tags = {**RELEASE.tags(), "manifest_digest": "ab" * 32, "parent_version": "1"}
    assert tags["release.top_k"] == "4" and tags["release.prompt"].endswith("/3")
    assert Release.from_tags(tags) == RELEASE
    assert Release.from_tags({"parent_version": "1"}) is None  # registered before releases


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({"release.top_k": "4"}, "release.prompt: Field required"),
        ({**RELEASE.tags(), "release.top_k": "0"}, "release.top_k"),
        ({**RELEASE.tags(), "release.prompt": "llmops-instruction"}, "release.prompt"),
        ({**RELEASE.tags(), "release.temperature": "2"}, "release.temperature"),
    ],
)
def test_a_broken_record_is_refused_naming_the_field(tags: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=f"a broken release record: .*{problem}"):
        Release.from_tags(tags)


def test_changes_say_what_moved() -> None:
    other = RELEASE.model_copy(update={"top_k": 2, "prompt": "prompts:/llmops-instruction/4"})
    assert other.changes(RELEASE) == [
        "prompt: prompts:/llmops-instruction/3 -> prompts:/llmops-instruction/4",
        "top_k: 4 -> 2",
    ]
    assert RELEASE.changes(RELEASE) == []
    everything = RELEASE.changes(None)
    assert everything[0] == "prompt: prompts:/llmops-instruction/3"
    assert "rails.serving.retrieval: neutralise" in everything


def test_the_rails_travel_in_one_tag_and_a_version_without_them_gets_the_defaults() -> None:
    strict = RELEASE.model_copy(
        update={"rails": RailsPolicy(serving=ServingRails(retrieval="drop", echo_words=5))}
    )
    tags = strict.tags()
    assert json.loads(tags["release.rails"])["serving"]["retrieval"] == "drop"
    assert Release.from_tags(tags) == strict
    before_rails = {k: v for k, v in tags.items() if k != "release.rails"}
    assert Release.from_tags(before_rails).rails == RailsPolicy()  # registered before rails
    assert strict.changes(RELEASE) == [
        "rails.serving.retrieval: neutralise -> drop",
        "rails.serving.echo_words: 8 -> 5",
    ]
    for broken, problem in (("{", "release.rails: Expecting"), ('{"serving": {"x": 1}}', "x")):
        with pytest.raises(ValueError, match=f"a broken release record: .*{problem}"):
            Release.from_tags({**tags, "release.rails": broken})


def test_the_release_instruction_replaces_the_default_in_the_prompt() -> None:
    chunk = Chunk(text="with opens a context.", tokens=5, doc_id="d", source="with.txt", score=1)
    default = build_prompt("What does with do?", [chunk])
    assert default.startswith(INSTRUCTION + "\n\nContext:\n[1] (with.txt)")
    mine = build_prompt("What does with do?", [chunk], "Answer in one sentence.\n")
    assert mine.startswith("Answer in one sentence.\n\nContext:\n[1] (with.txt)")
    assert mine.endswith("Question: What does with do?\nAnswer:")

    encode = lambda text: list(text.encode())  # noqa: E731 - one token per byte
    limits = Limits(window=4096, max_prompt_tokens=4096, max_tokens=16)
    fitted = fit_prompt(encode, "Q?", limits, 8, [chunk], lambda c, n: 0, "Be brief.")
    assert bytes(fitted.ids).decode().startswith("Be brief.\n\nContext:")


def test_release_params_name_only_what_changes() -> None:
    params = ReleaseParams(instruction="Be brief.", top_k=2)
    assert params.changes() == {"top_k": 2}
    drop = RailsPolicy(serving=ServingRails(retrieval="drop"))
    assert ReleaseParams(rails=drop).changes() == {"rails": drop}
    assert ReleaseParams.model_validate({"rails": {"serving": {"retrieval": "drop"}}}).rails == drop
    with pytest.raises(ValueError):
        ReleaseParams(from_version="v2")
    with pytest.raises(ValueError):
        ReleaseParams.model_validate({"rails": {"serving": {"retrieval": "ignore"}}})
