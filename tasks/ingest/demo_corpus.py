"""The demo corpus: the documentation that ships with the interpreter, written at run time."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from pydoc_data.topics import topics as PYDOC_TOPICS

# Default values render as `<object object at 0x7f…>`; addresses differ on every run.
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")

DEFAULT_MODULES = [
    "functools",
    "itertools",
    "collections",
    "dataclasses",
    "pathlib",
    "json",
    "re",
    "datetime",
    "contextlib",
    "abc",
    "argparse",
    "logging",
    "subprocess",
    "shutil",
    "csv",
    "heapq",
    "bisect",
    "statistics",
    "textwrap",
    "random",
]


def write_python_docs(
    dest: Path, topics: list[str] | None = None, modules: list[str] | None = None
) -> Path:
    """Write the language reference topics (`pydoc_data`) as text and module docs as HTML.

    `topics=None` writes every topic; `modules=None` the default module list. The folder is
    rewritten, so it always holds exactly what was asked for.
    """
    names = sorted(PYDOC_TOPICS) if topics is None else topics
    unknown = sorted(set(names) - set(PYDOC_TOPICS))
    if unknown:
        raise ValueError(f"unknown pydoc topics: {unknown}")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "topics").mkdir(parents=True)
    for name in names:
        (dest / "topics" / f"{name}.txt").write_text(PYDOC_TOPICS[name], encoding="utf-8")
    mods = DEFAULT_MODULES if modules is None else modules
    if mods:
        _write_module_docs(dest / "modules", mods)
    return dest


def _write_module_docs(dest: Path, modules: list[str]) -> None:
    """`pydoc -w` in a fresh interpreter: pydoc renders default values from live objects (the
    logging handlers of this process, say), so in-process pages would differ from run to run."""
    dest.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pydoc", "-w", *modules], cwd=dest, capture_output=True, text=True
    )
    missing = [m for m in modules if not (dest / f"{m}.html").exists()]
    if missing:
        raise ValueError(f"no documentation found for modules: {missing}")
    if done.returncode:
        raise RuntimeError(f"pydoc -w failed: {done.stdout}{done.stderr}")
    for page in dest.glob("*.html"):
        page.write_text(_ADDRESS.sub("", page.read_text(encoding="utf-8")), encoding="utf-8")
