import pytest

from tasks.core.citations import Location, cite, locate
from tasks.core.context import Chunk, build_prompt

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("source", "location", "citation"),
    [
        ("handbook.pdf#page=12", Location("handbook.pdf", page=12), "handbook.pdf, page 12"),
        (
            "s3://docs/guide.docx#section=Install%20it",
            Location("s3://docs/guide.docx", section="Install it"),
            "s3://docs/guide.docx, section Install it",
        ),
        ("notes.jsonl#L3", Location("notes.jsonl#L3"), "notes.jsonl#L3"),
        ("a.pdf#page=x", Location("a.pdf#page=x"), "a.pdf#page=x"),
        (
            "https://intra.example/faq",
            Location("https://intra.example/faq"),
            "https://intra.example/faq",
        ),
        ("try.txt", Location("try.txt"), "try.txt"),
    ],
)
def test_a_source_says_where_in_its_document_a_passage_is(
    source: str, location: Location, citation: str
) -> None:
    assert locate(source) == location and cite(source) == citation


def test_the_prompt_names_each_passage_by_its_citation() -> None:
    chunks = [
        Chunk("Class 4 records are kept for 40 days.", 9, "d1", "handbook.pdf#page=4", 0.9),
        Chunk("The for statement iterates.", 5, "d2", "for.txt", 0.5),
    ]
    prompt = build_prompt("How long are class 4 records kept?", chunks)
    assert "[1] (handbook.pdf, page 4) Class 4 records" in prompt
    assert "[2] (for.txt) The for statement" in prompt
