"""`llmops new-flow`: a new stage or ingestion source with its parameter model, plain function,
task, flow, unit test and `prefect.yaml` deployment, in the shape the rest of the platform has."""

from __future__ import annotations

import json
import keyword
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from string import Template

from llmops.scaffold_templates import DEPLOYMENT, TEMPLATES

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")  # verb_noun, like embed_documents
MAX_NAME = 40  # longer names would break the generated code's line length
KINDS = tuple(TEMPLATES)
POOL_ANCHOR = "&local_process"  # defined once under `definitions:`; entries use *local_process


@dataclass(frozen=True)
class NewFlow:
    """What `create` wrote, relative to the repository root."""

    flow: str
    package: str  # tasks/<flow>/
    test: str
    deployment: str  # "<flow>/<flow-with-hyphens>": each title in the UI says what it runs


def check_name(name: str) -> None:
    words = name.split("_")
    if len(name) > MAX_NAME or not NAME.match(name) or any(keyword.iskeyword(w) for w in words):
        raise ValueError(
            f"{name!r}: use verb_noun in snake_case, like 'ingest_tickets' (<= {MAX_NAME} chars)"
        )


def check_description(text: str) -> None:
    """It lands in docstrings and YAML: one plain line."""
    if not text.strip() or any(c in text for c in '"\\\n'):
        raise ValueError("the description must be one line without double quotes or backslashes")


def placeholders(name: str, kind: str, description: str) -> dict[str, str]:
    camel = "".join(part.capitalize() for part in name.split("_"))
    tags = ["source", "ingest", name] if kind == "source" else ["stage", name]
    return {
        "name": name,
        "camel": camel,
        "title": name.replace("_", " ").capitalize(),
        "key": name.replace("_", "-"),
        "doc_module": textwrap.fill(f"{name.replace('_', ' ').capitalize()}: {description}", 96),
        "doc_indented": textwrap.fill(description, 92, subsequent_indent="    "),
        "quoted": json.dumps(description),  # a JSON string is a valid YAML scalar
        "tags": ", ".join(tags),
        "verb": name.split("_")[0],  # the module that does the work: score_texts -> score.py
    }


def target_paths(root: Path, name: str, kind: str) -> dict[str, Path]:
    """Each file of the kind's template, by its path under `root`."""
    values = {"name": name, "verb": name.split("_")[0]}
    return {template: root / Template(template).substitute(values) for template in TEMPLATES[kind]}


def check_free(root: Path, name: str, paths: dict[str, Path]) -> None:
    """Nothing overwritten; test module basenames stay unique across tests/ (pytest needs it
    without __init__.py files); no second deployment for the flow."""
    test = next(p for p in paths.values() if p.parts[-2:-1] == ("unit",))
    package = next(p for p in paths.values() if p.name == "__init__.py").parent
    taken = [str(p.relative_to(root)) for p in [*paths.values(), package] if p.exists()]
    taken += [str(p.relative_to(root)) for p in (root / "tests").rglob(test.name) if p.is_file()]
    if taken:
        raise FileExistsError(f"already there: {', '.join(sorted(set(taken)))}")
    flows = "".join(p.read_text() for p in (root / "flows").glob("*.py"))
    if f":{name}\n" in (root / "prefect.yaml").read_text() or f'name="{name}"' in flows:
        raise FileExistsError(f"a flow named {name} exists already")


def insert_deployment(prefect_yaml: str, entry: str) -> str:
    """`entry` appended to the `deployments:` list, before any top-level key that follows it;
    text, not a YAML round trip, so comments and the `definitions:` anchors survive."""
    if POOL_ANCHOR not in prefect_yaml:
        raise ValueError(f"prefect.yaml defines no work pool anchor {POOL_ANCHOR}")
    lines = prefect_yaml.splitlines()
    try:
        start = lines.index("deployments:")
    except ValueError:
        raise ValueError("prefect.yaml has no top-level `deployments:` list") from None
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), len(lines)
    )
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # the entry goes right after the last one, before blank lines
    head, tail = lines[:end], lines[end:]
    return "\n".join([*head, *entry.rstrip("\n").split("\n"), *tail]) + "\n"


def tidy(root: Path, files: list[Path]) -> None:
    """Imports sorted and lines wrapped as `make lint` wants them (names vary in length); a
    no-op where ruff is not installed."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff:
        names = [str(f) for f in files]
        for args in (["check", "--fix-only"], ["format"]):
            subprocess.run([ruff, *args, "--quiet", *names], cwd=root, check=False)


def create(root: Path, name: str, kind: str = "stage", description: str = "") -> NewFlow:
    """Write the new flow's files and its deployment entry; refuse to overwrite anything."""
    if kind not in TEMPLATES:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    check_name(name)
    description = description or f"TODO: what {name.replace('_', ' ')} does, in one sentence."
    check_description(description)
    paths = target_paths(root, name, kind)
    check_free(root, name, paths)
    values = placeholders(name, kind, description)
    prefect_yaml = root / "prefect.yaml"
    updated = insert_deployment(prefect_yaml.read_text(), Template(DEPLOYMENT).substitute(values))
    for template, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(TEMPLATES[kind][template]).substitute(values))
    prefect_yaml.write_text(updated)
    tidy(root, list(paths.values()))
    return NewFlow(
        flow=f"flows/{name}.py",
        package=f"tasks/{name}/",
        test=f"tests/unit/test_{name}.py",
        deployment=f"{name}/{name.replace('_', '-')}",
    )
