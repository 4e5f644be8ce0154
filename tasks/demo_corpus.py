"""The demo corpus: the documentation that ships with the interpreter, written at run time."""

from __future__ import annotations

import importlib
import pydoc
import re
import shutil
from pathlib import Path
from pydoc_data.topics import topics as PYDOC_TOPICS

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
        (dest / "modules").mkdir()
    for name in mods:
        module = importlib.import_module(name)
        page = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
        # Default values render as `<object object at 0x7f…>`: drop the addresses, or every run
        # would produce "changed" documents and re-embed them.
        page = _ADDRESS.sub("", page)
        (dest / "modules" / f"{name}.html").write_text(page, encoding="utf-8")
    return dest
