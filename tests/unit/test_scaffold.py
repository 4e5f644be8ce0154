"""`llmops new-flow`'s rules, without writing a repository (the whole run: integration)."""

import pytest
import yaml

from llmops.scaffold import check_description, check_name, insert_deployment

pytestmark = pytest.mark.unit

PREFECT_YAML = """\
definitions:
  work_pools:
    local_process: &local_process
      name: local-process

deployments:
  - name: on-demand
    entrypoint: flows/ingest.py:ingest_documents
    work_pool: *local_process

# a comment that must survive
triggers_later: {}
"""
ENTRY = """
  - name: score-texts
    entrypoint: flows/score_texts.py:score_texts
    description: "Score texts: by length."
    work_pool: *local_process
"""


@pytest.mark.parametrize("name", ["score_texts", "ingest_help_desk_tickets", "sync2_docs"])
def test_verb_noun_names_pass(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "score",
        "ScoreTexts",
        "score-texts",
        "_score",
        "import_from",
        "score__texts",
        "a_" + "b" * 40,
    ],
)
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="verb_noun"):
        check_name(name)


@pytest.mark.parametrize("text", ['say "hi"', "two\nlines", "back\\slash", " "])
def test_descriptions_that_break_docstrings_or_yaml_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="one line"):
        check_description(text)


def test_the_entry_joins_the_deployments_list_and_keeps_anchors_and_comments() -> None:
    updated = insert_deployment(PREFECT_YAML, ENTRY)
    config = yaml.safe_load(updated)
    first, added = config["deployments"]
    assert added["entrypoint"] == "flows/score_texts.py:score_texts"
    assert added["description"] == "Score texts: by length."
    assert added["work_pool"] is first["work_pool"]  # the same anchor
    assert "# a comment that must survive" in updated and config["triggers_later"] == {}


def test_the_entry_is_appended_when_deployments_come_last() -> None:
    text = PREFECT_YAML.split("# a comment")[0]
    entries = yaml.safe_load(insert_deployment(text, ENTRY))["deployments"]
    assert [d["entrypoint"].split(":")[1] for d in entries] == ["ingest_documents", "score_texts"]


def test_a_file_without_the_pool_anchor_is_refused() -> None:
    with pytest.raises(ValueError, match="anchor"):
        insert_deployment(PREFECT_YAML.replace("&local_process", ""), ENTRY)
