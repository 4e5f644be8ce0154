import subprocess
import sys
from pathlib import Path

import pytest

from tasks.demo_corpus import DEFAULT_MODULES, write_python_docs

pytestmark = pytest.mark.integration


def write_in_new_interpreter(dest: Path) -> Path:
    """As each nightly run does: a fresh process, so objects sit at other addresses."""
    code = "from pathlib import Path; from tasks.demo_corpus import write_python_docs; "
    code += f"write_python_docs(Path({str(dest)!r}), topics=['with', 'try'])"
    subprocess.run([sys.executable, "-c", code], check=True)
    return dest


def test_the_demo_corpus_is_the_same_on_every_run(tmp_path: Path) -> None:
    first = write_in_new_interpreter(tmp_path / "a")
    second = write_in_new_interpreter(tmp_path / "b")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 + len(DEFAULT_MODULES)
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert " at 0x" not in (first / "modules" / "collections.html").read_text()


def test_unknown_topics_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown pydoc topics"):
        write_python_docs(tmp_path / "c", topics=["no-such-topic"])
