"""Questions with reference answers, generated from a document's own structure, without an LLM.

A document's title, its section headings, its definitions ("A *context manager* is an object
that ...") and the sentence that introduces each section give question and answer pairs:

- "title": "What is the "assert" statement?" -> the first sentence of the document's body;
- "definition": "What is a context manager?" -> the sentence that defines it;
- "heading": 'What does the section "Basic customization" describe?' -> the sentence that
  opens that section;
- "api": "What does heapq.heappush() do?" -> the sentence that opens the documentation under a
  function's or class's signature line. The name is qualified by its module and class, since a
  bare name ("register()", "clear()") is shared by many documents and says nothing about which.

References are sentences of the document itself (whitespace collapsed, otherwise verbatim), so
every question is answerable from one passage that holds its sentence. Code, grammar rules,
tables, doctest lines and version notes are never used as references. Unanswerable questions
ask about subjects the corpus does not cover; their reference is the refusal the models are
taught to give. Everything here is deterministic (the unanswerables are drawn with a seed).
"""

from __future__ import annotations

import builtins
import random
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from tasks.core.scorers import REFUSAL

KINDS = ("title", "definition", "heading", "api")


@dataclass(frozen=True)
class Question:
    """A question, the answer expected (`reference`), and the document it was written from."""

    question: str
    reference: str
    source_doc_id: str
    kind: str  # "title" | "definition" | "heading" | "api" | "unanswerable"
    answerable: bool = True


# -- reading the structure ----------------------------------------------------------------------

_UNDERLINE = re.compile(r"^([*=\-~^+#])\1{2,}$")  # reST: a heading's line of one repeated mark
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$")
# "heappush(heap, item, /)", "class Fraction(numbers.Rational)", "object.__exit__(self, ...)"
_SIGNATURE = re.compile(
    r"^(?:class\s+)?(?P<name>[A-Za-z_][\w.]*)\((?:[^()]|\([^()]*\))*\)"
    r"(?:\s*->\s*[\w.\[\], |]+)?(?:\s+from\s+[\w.]+)?$"
)
_CODE_HINTS = ("::=", ">>>", "...", "{", "}", "=", "->", "<-", "$ ", "#!", "://", "\\")
_NOTES = ("new in version", "changed in version", "deprecated", "see also", "note:", "warning:")
_TITLE_PREFIX = re.compile(r"^(?:[\w .-]+:\s*)?(?:built-in\s+)?(module|package|class)\s+([\w.]+)$")
_SUMMARY_LINE = re.compile(r"^([\w.]+?)(?:\.py)?\s+-\s+(\S.*)$")  # "heapq.py - Heap queue ..."
# A sentence ends at . ! ? or : followed by space and a capital (or an opening quote/mark).
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[\"“*(]?[A-Z])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|a\.k\.a|etc|vs|cf|resp|approx|Mr|Dr|No)\.|\b[A-Z]\.)$"
)
# "A *suite* is a ...", "Heaps are arrays ...", 'The "if" statement is used ...': an optional
# article, a term of up to five words (an aside in parentheses or a <link> may follow it), then
# "is a/an/the/used" or "are" and a plural noun (not an adverb such as "always").
_DEFINITION = re.compile(
    r"^(?:(?P<article>An?|The)\s+)?"
    r"(?P<term>[*\"“]?[A-Za-z_][\w.\-]*(?:\s+[\w.\-]+){0,4}?[*\"”]?)"
    r"(?:\s+\([^)]{1,60}\))?(?:\s+<[^>]{1,80}>)?\s+"
    r"(?:(?P<verb>is)\s+(?:an?|the|used)\b"
    r"|(?P<plural>are)\s+(?:an?|the|used|(?!always|also|thus|sometimes|perhaps|less|unless)[a-z]+s)\b)"
)
_FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "be",
        "not",
        "if",
        "when",
        "where",
        "that",
        "which",
        "of",
        "for",
        "in",
        "on",
        "with",
        "to",
        "by",
        "as",
        "at",
        "from",
        "or",
        "and",
        "note",
    ]
)
# "The X statement is ...": a definition that names its subject without its paragraph.
_KIND_NOUNS = frozenset(
    [
        "statement",
        "statements",
        "operator",
        "operators",
        "expression",
        "expressions",
        "keyword",
        "keywords",
        "module",
        "function",
        "functions",
        "class",
        "classes",
        "method",
        "methods",
        "decorator",
        "protocol",
        "exception",
    ]
)
_VAGUE_TERMS = frozenset(
    [
        "this",
        "that",
        "these",
        "those",
        "it",
        "there",
        "which",
        "what",
        "here",
        "result",
        "value",
        "default",
        "following",
        "latter",
        "former",
        "other",
        "one",
        "each",
        "rest",
        "first",
        "second",
        "last",
        "same",
        "name",
        "argument",
        "return",
    ]
)


def _is_heading_text(line: str) -> bool:
    text = line.strip()
    return (
        0 < len(text) <= 80
        and (text[0].isupper() or text[0].isdigit() or text[0] in '"“')
        and not any(mark in text for mark in ("*", ":", ";", "#", "="))
        and text == line.rstrip()  # not indented
        and not text.endswith((".", ",", ";", ":"))
        and sum(ch.isalpha() for ch in text) >= 0.6 * len(text)
    )


@dataclass
class _Block:
    """A run of prose lines (a paragraph, its hard wraps joined), a heading, or the signature
    line of a documented function or class ("heappush(heap, item, /)")."""

    text: str
    heading: bool = False
    level: str = ""
    signature: str = ""  # the documented name, for a signature line


def _is_prose_line(line: str) -> bool:
    text = line.strip()
    if not text or line.startswith(("    ", "\t")):  # code and indented examples
        return False
    if any(hint in text for hint in (">>>", "::=")) or _UNDERLINE.match(text):
        return False
    if re.search(r"[^\s.!?:] {2,}\S", text):  # table columns, aligned comments
        return False
    letters = sum(ch.isalpha() or ch == " " for ch in text)
    return letters >= 0.75 * len(text)


def _blocks(text: str) -> list[_Block]:
    """Headings and prose paragraphs in document order. Lines that are neither (code, tables,
    grammar, doctests) end a paragraph. A blank line ends one too, unless the text before it
    stops mid-sentence and the next line goes on in lower case (HTML renders hard wraps of
    docstrings as blank-line-separated lines)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[_Block] = []
    current: list[str] = []
    pending_blank = False

    def close() -> None:
        nonlocal current
        if current:
            blocks.append(_Block(" ".join(current)))
        current = []

    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        stripped = line.strip()
        if not stripped:
            pending_blank = True
            i += 1
            continue
        # A heading: a line underlined by a run of one mark (blank lines between allowed).
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        under = lines[j].strip() if j < len(lines) else ""
        if (
            _is_heading_text(line)
            and _UNDERLINE.match(under)
            and len(under) >= max(3, int(0.6 * len(stripped)))
        ):
            close()
            blocks.append(_Block(stripped, heading=True, level=under[0]))
            pending_blank, i = False, j + 1
            continue
        markdown = _MARKDOWN_HEADING.match(stripped)
        if markdown and line.startswith("#") and _is_heading_text(markdown.group(1)):
            close()
            blocks.append(_Block(markdown.group(1), heading=True, level="#"))
            pending_blank, i = False, i + 1
            continue
        signature = _SIGNATURE.match(stripped)
        if signature:
            close()
            blocks.append(_Block(stripped, signature=signature.group("name")))
        elif _is_prose_line(line):
            wrapped = not pending_blank or (
                stripped[0].islower() and not current[-1:][0].endswith((".", "!", "?", ":"))
                if current
                else False
            )
            if not wrapped:
                close()
            current.append(stripped)
        else:
            close()
        pending_blank = False
        i += 1
    close()
    return blocks


def _sentences(paragraph: str) -> Iterator[str]:
    parts = _SENTENCE_END.split(paragraph)
    buffer = ""
    for part in parts:
        buffer = f"{buffer} {part}".strip() if buffer else part.strip()
        if _ABBREVIATION.search(buffer):
            continue
        yield buffer
        buffer = ""
    if buffer:
        yield buffer


def is_reference_sentence(sentence: str, min_words: int = 6, max_words: int = 45) -> bool:
    """Prose fit to be a reference answer: a whole sentence of ordinary words, not code, not
    a grammar rule or table, not a version note."""
    words = sentence.split()
    if not min_words <= len(words) <= max_words:
        return False
    if not sentence.endswith((".", ":", "!", "?")):
        return False
    first = sentence.lstrip('"“*(')
    if not first or not first[0].isupper():
        return False
    if sentence.lower().startswith(_NOTES) or any(h in sentence for h in _CODE_HINTS):
        return False
    plain = sum(1 for w in words if re.fullmatch(r"[\"“*(]*[A-Za-z][a-z'’-]*[\"”*),.;:!?]*", w))
    return plain >= 0.7 * len(words)


def _first_sentence(blocks: list[_Block], start: int, max_paragraphs: int) -> str | None:
    """The first reference-fit sentence of the prose that follows `blocks[start]`, before the
    next heading, looking at most `max_paragraphs` paragraphs in. With one paragraph, only
    its first sentence counts: the sentence that introduces a section, or nothing."""
    for block in blocks[start + 1 : start + 1 + max_paragraphs]:
        if block.heading or block.signature:
            return None
        sentences = list(_sentences(block.text))
        for sentence in sentences[:1] if max_paragraphs == 1 else sentences:
            if is_reference_sentence(sentence):
                return sentence
    return None


def _summary_line(text: str, subject: str, within: int = 20) -> str | None:
    """A module's one-line summary as pydoc renders it ("heapq.py - Heap queue algorithm"),
    among the first `within` lines."""
    for line in text.split("\n")[:within]:
        line = " ".join(line.split())
        match = _SUMMARY_LINE.match(line)
        if match and match.group(1).split(".")[-1] == subject and len(line.split()) >= 5:
            return line
    return None


# -- phrasing -----------------------------------------------------------------------------------


def _plural(phrase: str) -> bool:
    last = re.sub(r"[^\w]", "", phrase.split()[-1]).lower() if phrase.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "us", "is", "ics"))


def _lower_first(phrase: str) -> str:
    words = phrase.split()
    # "Dictionary displays" -> "dictionary displays"; keep "JSON", "Python", "With Statement ...".
    title_case = len(words) > 1 and all(w[:1].isupper() for w in words if w[:1].isalpha())
    if not words:
        return ""
    article = words[0] in ("The", "A", "An")
    common = (
        re.fullmatch(r"[A-Z][a-z]+", words[0]) is not None
        and not title_case
        and words[0] not in ("Python", "Unicode", "Boolean")
    )
    if article or common:
        words[0] = words[0].lower()
    return " ".join(words)


def _subject_of_title(title: str) -> str:
    match = _TITLE_PREFIX.match(title.strip())
    if match:
        return f"the {match.group(2)} {match.group(1)}"
    return _lower_first(title.strip())


def _what_is(subject: str) -> str:
    first = subject.split()[0] if subject.split() else ""
    if first.endswith("ing") and first.lower() not in ("string", "thing"):  # "customizing ..."
        return f"What does {subject} involve?"
    verb = "are" if _plural(subject) else "is"
    return f"What {verb} {subject}?"


def _definition(sentence: str) -> tuple[str, str] | None:
    """(question, term) when the sentence defines something that needs no context to name:
    "A *mapping* is a container ...", "Heaps are arrays ...", 'The "if" statement is used ...'.
    "The token is ..." names something only its paragraph explains, so it is not used."""
    match = _DEFINITION.match(sentence)
    if not match:
        return None
    raw = match.group("term")
    marked = raw[:1] in '*"“'
    term = raw.strip('*"“” ')
    words = term.split()
    if not 1 <= len(words) <= 5 or words[0].lower() in _VAGUE_TERMS:
        return None
    if term in ("None", "True", "False") or any(w.lower() in _FUNCTION_WORDS for w in words):
        return None
    article = match.group("article")
    if article == "The" and not (marked or (len(words) > 1 and words[-1].lower() in _KIND_NOUNS)):
        return None
    if not article and not (marked or words[0][:1].isupper()):
        return None
    if article:
        subject = f"{article.lower()} {term}"
    else:
        subject = _lower_first(term) if len(words) > 1 else term
    return f"What {match.group('verb') or match.group('plural')} {subject}?", term


def _heading_question(heading: str) -> str:
    return f'What does the section "{heading}" describe?'


# Names every document may call in an example ("len(d)", "print()"); exit/quit come from site.
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"exit", "quit"}
_FIRST_PARAMETER = re.compile(r"\(\s*(\w+)")


def _api_name(signature: str, name: str, module: str, owner: str) -> str | None:
    """The name a question about this signature should use, so that it singles out its
    document: "heapq.heappush", "pathlib.Path.glob", "dict.clear". None for a builtin used in
    an example of a document that is not a module's page ("list(d)" under dict)."""
    if "." in name:
        return name  # already qualified: "object.__exit__", "str.capitalize", "pdb.run"
    is_class = signature.startswith("class ")
    first = _FIRST_PARAMETER.search(signature)
    method = first is not None and first.group(1) in ("self", "cls")
    if not module and not is_class and name in _BUILTIN_NAMES:
        return None
    if owner and not is_class and (method or not module):
        name = f"{owner}.{name}"
    return f"{module}.{name}" if module else name


def _api_question(signature: str, name: str) -> str:
    if signature.startswith("class "):
        return f"What is the {name} class?"
    return f"What does {name}() do?"


# -- the generators ---------------------------------------------------------------------------


def questions_from_document(
    doc_id: str, title: str | None, text: str, max_questions: int = 3
) -> list[Question]:
    """Up to `max_questions` questions about one document, from its structure: its title, its
    definitions, its section headings and its documented functions (the kinds taken in turn:
    the title, a definition, a heading, a function, the next definition, ...), each answered
    by one sentence of the document. Deterministic; an empty list when the document has no
    usable structure."""
    if max_questions < 1:
        return []
    blocks = _blocks(text)
    by_kind: dict[str, list[Question]] = {kind: [] for kind in KINDS}
    used: set[str] = set()

    def add(kind: str, question: str, reference: str) -> None:
        if reference in used or question in {q.question for qs in by_kind.values() for q in qs}:
            return
        used.add(reference)
        by_kind[kind].append(Question(question, reference, doc_id, kind))

    # The title: the document's first heading when it opens with one, else the given title.
    first_heading = next(
        (i for i, b in enumerate(blocks[:2]) if b.heading), None
    )  # a heading after at most one line (a pydoc page's module name)
    if first_heading is not None:
        subject, start = _lower_first(blocks[first_heading].text), first_heading
    elif title and title.strip():
        subject, start = _subject_of_title(title), -1
    else:
        subject, start = "", -1
    if subject:
        module = _TITLE_PREFIX.match((title or "").strip())
        reference = _first_sentence(blocks, start, max_paragraphs=3)
        if module and first_heading is None:
            reference = _summary_line(text, module.group(2).split(".")[-1]) or reference
        if reference:
            add("title", _what_is(subject), reference)

    for block in blocks:
        if block.heading or block.signature:
            continue
        for sentence in _sentences(block.text):
            if not is_reference_sentence(sentence):
                continue
            found = _definition(sentence)
            if found:
                add("definition", found[0], sentence)

    for index, block in enumerate(blocks):
        if block.heading and index != first_heading:
            reference = _first_sentence(blocks, index, max_paragraphs=1)
            if reference:
                add("heading", _heading_question(block.text), reference)

    page = _TITLE_PREFIX.match((title or "").strip())
    module = page.group(2) if page and page.group(1) != "class" else ""
    owner = ""  # the class whose methods follow, until the next class
    for index, block in enumerate(blocks):
        if not block.signature:
            continue
        name = block.signature
        if block.text.startswith("class "):
            owner = name
        if name.count(".") > 1 or ("." not in name and name.startswith("__")) or len(name) < 3:
            continue  # code in an example ("f()"), or a method no question could single out
        qualified = _api_name(block.text, name, module, owner)
        if qualified and index + 1 < len(blocks):
            reference = _first_sentence(blocks, index, max_paragraphs=1)
            if reference:
                add("api", _api_question(block.text, qualified), reference)

    chosen: list[Question] = []
    queues = [list(by_kind[kind]) for kind in KINDS]
    while len(chosen) < max_questions and any(queues):
        for queue in queues:
            if queue and len(chosen) < max_questions:
                chosen.append(queue.pop(0))
    return chosen


# Subjects a documentation corpus about software is unlikely to cover: (question, the words
# that name its subject). A question is dropped when any of its subject words is in the corpus.
OFF_TOPIC: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("How long should spaghetti be boiled to be al dente?", ("spaghetti", "boiled")),
    ("What temperature is best for baking sourdough bread?", ("sourdough", "baking")),
    ("Which spices go into a classic garam masala?", ("spices", "masala")),
    ("How do you make a French omelette?", ("omelette", "french")),
    ("Which club won the first football World Cup?", ("football", "club")),
    ("How many players are on a rugby union team?", ("rugby", "players")),
    ("Who holds the record for the marathon?", ("marathon", "record")),
    ("What is the offside rule in ice hockey?", ("offside", "hockey")),
    ("What is the capital city of Australia?", ("australia", "capital")),
    ("Which river flows through Budapest?", ("river", "budapest")),
    ("What is the highest mountain in Africa?", ("mountain", "africa")),
    ("How deep is the Mariana Trench?", ("mariana", "trench")),
    ("What are the symptoms of measles?", ("symptoms", "measles")),
    ("How does a vaccine train the immune system?", ("vaccine", "immune")),
    ("What is a normal resting heart rate for adults?", ("heart", "resting")),
    ("Which vitamin does sunlight help the body produce?", ("vitamin", "sunlight")),
    ("Who painted the ceiling of the Sistine Chapel?", ("painted", "sistine")),
    ("In which year did the Roman Empire fall in the west?", ("roman", "empire")),
    ("Who wrote the novel Pride and Prejudice?", ("novel", "prejudice")),
    ("What causes the northern lights?", ("northern", "lights")),
    ("How often should a lawn be watered in summer?", ("lawn", "watered")),
    ("When should tomato seedlings be planted outdoors?", ("tomato", "seedlings")),
    ("What is the gestation period of an elephant?", ("gestation", "elephant")),
    ("How do bees make honey?", ("bees", "honey")),
    ("What is the best way to remove a red wine stain?", ("wine", "stain")),
    ("How much should a mortgage deposit be?", ("mortgage", "deposit")),
    ("What is the boiling point of water on Mount Everest?", ("everest", "boiling")),
    ("Which planet has the most moons?", ("planet", "moons")),
    ("How do you tune a guitar to drop D?", ("guitar", "tune")),
    ("Which grape is used in Chianti wine?", ("grape", "chianti")),
    ("How long does it take to fly from London to Tokyo?", ("london", "tokyo")),
    ("What is the tallest breed of dog?", ("breed", "dog")),
)


def unanswerable_questions(corpus_tokens: Collection[str], n: int, seed: int = 0) -> list[Question]:
    """Up to `n` questions on subjects the corpus does not cover, drawn with `seed` from a
    built-in list (cooking, sport, geography, medicine, ...). A question is dropped when any
    of its subject words occurs in `corpus_tokens` (the corpus's lowercased words). The
    reference is the refusal (`tasks.core.scorers.REFUSAL`), with no source document."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    vocabulary = {t.lower() for t in corpus_tokens}
    usable = [q for q, words in OFF_TOPIC if not any(w in vocabulary for w in words)]
    picked = random.Random(seed).sample(usable, min(n, len(usable)))
    return [Question(q, REFUSAL, "", "unanswerable", answerable=False) for q in picked]
