import logging
from pathlib import Path

import pytest

from tasks.ingest.demo_corpus import DEFAULT_MODULES, write_python_docs

pytestmark = pytest.mark.integration


def test_the_demo_corpus_is_the_same_on_every_run(tmp_path: Path) -> None:
    first = write_python_docs(tmp_path / "a", topics=["with", "try"])
    # Process state that pydoc would render (logging.shutdown's default lists live handlers).
    logging.getLogger("demo-corpus-test").addHandler(logging.StreamHandler())
    second = write_python_docs(tmp_path / "b", topics=["with", "try"])
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 + len(DEFAULT_MODULES)
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert " at 0x" not in (first / "modules" / "collections.html").read_text()


def test_unknown_topics_or_modules_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown pydoc topics"):
        write_python_docs(tmp_path / "c", topics=["no-such-topic"])
    with pytest.raises(ValueError, match="no documentation found for modules"):
        write_python_docs(tmp_path / "d", topics=[], modules=["json", "no_such_module"])
