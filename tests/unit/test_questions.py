import pytest

from tasks.core.questions import (
    OFF_TOPIC,
    Question,
    is_reference_sentence,
    questions_from_document,
    unanswerable_questions,
)
from tasks.core.scorers import REFUSAL

pytestmark = pytest.mark.unit

ASSERT_TOPIC = """The "assert" statement
**********************

Assert statements are a convenient way to insert debugging assertions
into a program:

assert_stmt ::= "assert" expression ["," expression]

The simple form, "assert expression", is equivalent to

if __debug__:
if not expression: raise AssertionError
"""

CONTEXT_MANAGERS = """With Statement Context Managers
*******************************

A *context manager* is an object that defines the runtime context to
be established when executing a "with" statement. The context manager
handles the entry into, and the exit from, the desired runtime context.

Customizing the exit
====================

The exit method decides whether an exception is suppressed or raised
again. It returns a true value to suppress it.

>>> with open("x") as f:
... pass
"""

HEAPQ_MODULE = """heapq
index
/usr/lib/python3.11/heapq.py
Module Reference

heapq.py - Heap queue algorithm (a.k.a. priority queue).

Functions

heappush(heap, item, /)
Push item onto heap, maintaining the heap invariant.

heappop(heap, /)
Pop the smallest item off the heap, maintaining the heap invariant.

__init__(self, /)
Initialize self and its whole state in one place.
"""

MARKDOWN = """# Vector stores

A vector store is a database that answers nearest-neighbour queries over embeddings.

## Flushing

Rows written to the store are searched slowly until the memtable is flushed to disk.
"""


def _pairs(questions: list[Question]) -> list[tuple[str, str, str]]:
    return [(q.kind, q.question, q.reference) for q in questions]


@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        (
            "assert",
            ASSERT_TOPIC,
            [
                (
                    "title",
                    'What is the "assert" statement?',
                    "Assert statements are a convenient way to insert debugging assertions "
                    "into a program:",
                ),
            ],
        ),
        (
            "context-managers",
            CONTEXT_MANAGERS,
            [
                (
                    "title",
                    "What are With Statement Context Managers?",
                    "A *context manager* is an object that defines the runtime context to be "
                    'established when executing a "with" statement.',
                ),
                (
                    "heading",
                    'What does the section "Customizing the exit" describe?',
                    "The exit method decides whether an exception is suppressed or raised again.",
                ),
            ],
        ),
        (
            "Python: module heapq",
            HEAPQ_MODULE,
            [
                (
                    "title",
                    "What is the heapq module?",
                    "heapq.py - Heap queue algorithm (a.k.a. priority queue).",
                ),
                (
                    "api",
                    "What does heapq.heappush() do?",
                    "Push item onto heap, maintaining the heap invariant.",
                ),
                (
                    "api",
                    "What does heapq.heappop() do?",
                    "Pop the smallest item off the heap, maintaining the heap invariant.",
                ),
            ],
        ),
        (
            None,
            MARKDOWN,
            [
                (
                    "title",
                    "What are vector stores?",
                    "A vector store is a database that answers nearest-neighbour queries over "
                    "embeddings.",
                ),
                (
                    "heading",
                    'What does the section "Flushing" describe?',
                    "Rows written to the store are searched slowly until the memtable is flushed "
                    "to disk.",
                ),
            ],
        ),
    ],
    ids=["rest-topic", "definition-and-section", "pydoc-module", "markdown"],
)
def test_questions_come_from_the_documents_structure(
    title: str | None, text: str, expected: list[tuple[str, str, str]]
) -> None:
    questions = questions_from_document("doc-1", title, text, max_questions=10)
    assert _pairs(questions) == expected
    assert all(q.source_doc_id == "doc-1" and q.answerable for q in questions)


def test_a_definition_asks_for_its_term() -> None:
    text = (
        "Scopes\n======\n\nNames live in scopes, and every scope belongs to one block.\n\n"
        "A *suite* is a group of statements controlled by a clause.\n\n"
        "Heaps are arrays for which every parent is smaller than its children.\n\n"
        "The token is an opaque object that only its paragraph explains.\n"
    )
    definitions = [
        (q.question, q.reference)
        for q in questions_from_document("d", None, text, max_questions=10)
        if q.kind == "definition"
    ]
    assert definitions == [
        ("What is a suite?", "A *suite* is a group of statements controlled by a clause."),
        (
            "What are Heaps?",
            "Heaps are arrays for which every parent is smaller than its children.",
        ),
    ]  # "The token is ..." names nothing without its paragraph


def test_references_are_sentences_of_the_text_never_code_or_tables() -> None:
    for title, text in [
        ("assert", ASSERT_TOPIC),
        ("context-managers", CONTEXT_MANAGERS),
        ("Python: module heapq", HEAPQ_MODULE),
        (None, MARKDOWN),
    ]:
        flat = " ".join(text.split())
        for q in questions_from_document("d", title, text, max_questions=20):
            assert q.reference in flat
            assert "::=" not in q.reference and ">>>" not in q.reference


@pytest.mark.parametrize(
    ("sentence", "fit"),
    [
        ("A suite is a group of statements controlled by a clause.", True),
        ('assert_stmt ::= "assert" expression ["," expression]', False),
        (">>> heapq.heappush(heap, 3) and then some more words.", False),
        ("mean Arithmetic mean (average) of data and more words here.", False),
        ("Changed in version 3.8: the order of evaluation is now defined.", False),
        ("Too short.", False),
        ("x = y + 1 is how the value gets its new binding here.", False),
    ],
)
def test_which_sentences_can_be_references(sentence: str, fit: bool) -> None:
    assert is_reference_sentence(sentence) is fit


def test_kinds_are_taken_in_turn_and_capped() -> None:
    questions = questions_from_document("d", "Python: module heapq", HEAPQ_MODULE, 2)
    assert [q.kind for q in questions] == ["title", "api"]
    assert questions_from_document("d", "Python: module heapq", HEAPQ_MODULE, 0) == []


def test_generation_is_deterministic_and_empty_without_structure() -> None:
    first = questions_from_document("d", "context-managers", CONTEXT_MANAGERS)
    assert first == questions_from_document("d", "context-managers", CONTEXT_MANAGERS)
    assert questions_from_document("d", None, "") == []
    assert questions_from_document("d", None, "x = 1\ny = 2\n>>> print(x)\n") == []


def test_dunder_methods_without_their_class_are_not_asked_about() -> None:
    questions = questions_from_document("d", "Python: module heapq", HEAPQ_MODULE, 10)
    assert not any("__init__" in q.question for q in questions)


def test_unanswerable_questions_avoid_the_corpus_subjects() -> None:
    vocabulary = {"python", "football", "pasta", "heap"}
    questions = unanswerable_questions(vocabulary, 5, seed=3)
    assert len(questions) == 5
    assert all(
        q.reference == REFUSAL
        and not q.answerable
        and q.source_doc_id == ""
        and q.kind == "unanswerable"
        for q in questions
    )
    subjects = {q: words for q, words in OFF_TOPIC}
    for q in questions:
        assert not set(subjects[q.question]) & vocabulary
    assert "Which club won the first football World Cup?" not in {q.question for q in questions}
    assert questions == unanswerable_questions(vocabulary, 5, seed=3)
    assert questions != unanswerable_questions(vocabulary, 5, seed=4)


def test_unanswerable_questions_are_capped_by_what_is_left() -> None:
    every_subject = {w for _, words in OFF_TOPIC for w in words}
    assert unanswerable_questions(every_subject, 10) == []
    assert len(unanswerable_questions(set(), 1000)) == len(OFF_TOPIC)
    assert unanswerable_questions(set(), 0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        unanswerable_questions(set(), -1)


MAPPING_TOPIC = """Mapping Types
*************

class dict(**kwargs)

Return a new dictionary initialized from an optional positional argument.

list(d)

Return a list of all the keys used in the dictionary d, in their order.

clear()

Remove all items from the dictionary, leaving it empty for the next use.
"""

PATH_MODULE = """Python: module pathlib

class Path(PurePath)

PurePath subclass that can make system calls on the files it names.

glob(self, pattern)

Iterate over this subtree and yield all existing files of any kind matching the pattern.

def_function(path)

Return the path of the function named by this module for its callers here.
"""


@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        (
            "typesmapping",
            MAPPING_TOPIC,
            ["What is the dict class?", "What does dict.clear() do?"],
        ),
        (
            "Python: module pathlib",
            PATH_MODULE,
            [
                "What is the pathlib.Path class?",
                "What does pathlib.Path.glob() do?",
                "What does pathlib.def_function() do?",
            ],
        ),
    ],
    ids=["topic-methods-under-their-class", "module-functions-and-methods"],
)
def test_api_questions_name_the_module_and_class(
    title: str, text: str, expected: list[str]
) -> None:
    """A bare name ("clear()") is shared by many documents: the question names its module and
    class; a builtin used in an example ("list(d)") is not asked about."""
    questions = questions_from_document("d", title, text, max_questions=10)
    assert [q.question for q in questions if q.kind == "api"] == expected
