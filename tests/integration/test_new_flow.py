"""`llmops new-flow` in a copy of the repository: what it writes is lint-clean, its test
passes, its entrypoint loads as a flow with a described form, and its deployment entry parses
with the shared work pool; a second run refuses to overwrite."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmops.scaffold import create

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUFF = str(Path(sys.executable).with_name("ruff"))
NEW = {"score_texts": "stage", "ingest_tickets": "source"}

LOAD_FLOWS = """
import json, sys, yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

out = {}
for d in yaml.safe_load(open("prefect.yaml"))["deployments"]:
    if d["entrypoint"].rsplit(":", 1)[1] in sys.argv[1:]:
        flow = load_flow_from_entrypoint(d["entrypoint"])
        schema = parameter_schema(flow).model_dump_for_openapi()
        model = next(iter(schema["definitions"].values()))
        out[flow.name] = {
            "is_flow": isinstance(flow, Flow),
            "undescribed": [f for f, p in model["properties"].items() if not p.get("description")],
        }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a flow needs from the repository: the packages, prefect.yaml, the lint config and
    the test fixtures (whatever else other people are adding to it stays out)."""
    root = tmp_path_factory.mktemp("repo")
    skip = shutil.ignore_patterns("__pycache__")
    for package in ("flows", "tasks", "llmops"):
        shutil.copytree(REPO / package, root / package, ignore=skip)
    for name in ("prefect.yaml", "pyproject.toml", "tests/conftest.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    (root / "tests" / "unit").mkdir()
    return root


def run(args: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "LLMOPS_HOME": str(root / "state")}
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def new_flow(root: Path, name: str, kind: str) -> subprocess.CompletedProcess[str]:
    cli = [sys.executable, "-m", "llmops.cli", "new-flow", name, "--kind", kind]
    return run([*cli, "--description", f"The {kind} {name}: an example."], root)


@pytest.fixture(scope="module")
def generated(copy: Path) -> Path:
    for name, kind in NEW.items():
        done = new_flow(copy, name, kind)
        assert done.returncode == 0, done.stderr
        assert f"prefect.yaml: {name}/{name.replace('_', '-')}" in done.stdout
    return copy


def test_generated_files_are_lint_clean(generated: Path) -> None:
    files = [f"flows/{n}.py" for n in NEW] + [f"tasks/{n}" for n in NEW]
    files += [f"tests/unit/test_{n}.py" for n in NEW]
    for args in (["check"], ["format", "--check"]):
        done = run([RUFF, *args, *files], generated)
        assert done.returncode == 0, done.stdout + done.stderr


def test_generated_tests_pass(generated: Path) -> None:
    tests = [f"tests/unit/test_{n}.py" for n in NEW]
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], generated)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_entrypoints_load_as_flows_with_described_forms(generated: Path) -> None:
    done = run([sys.executable, "-c", LOAD_FLOWS, *NEW], generated)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert loaded == {n: {"is_flow": True, "undescribed": []} for n in NEW}


def test_deployment_entries_parse_with_the_shared_pool(generated: Path) -> None:
    config = yaml.safe_load((generated / "prefect.yaml").read_text())
    pool = config["definitions"]["work_pools"]["local_process"]
    entries = {d["entrypoint"]: d for d in config["deployments"]}
    for name, kind in NEW.items():
        entry = entries[f"flows/{name}.py:{name}"]
        assert entry["work_pool"] is pool and entry["name"] == name.replace("_", "-")
        assert entry["description"] == f"The {kind} {name}: an example."
    before = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert config["deployments"][: len(before)] == before  # appended, nothing else changed


def test_nothing_is_overwritten(generated: Path) -> None:
    (generated / "tests" / "e2e").mkdir(exist_ok=True)
    (generated / "tests" / "e2e" / "test_rank_answers.py").write_text("")
    before = {p: p.read_text() for p in [generated / "prefect.yaml", *generated.rglob("*.py")]}
    with pytest.raises(FileExistsError, match=r"already there: flows/score_texts\.py"):
        create(generated, "score_texts", "source")
    with pytest.raises(FileExistsError, match="exists already"):
        create(generated, "ingest_documents")  # an existing flow's name, in another module
    with pytest.raises(FileExistsError, match=r"tests/e2e/test_rank_answers\.py"):
        create(generated, "rank_answers")  # test module basenames must stay unique
    assert before == {p: p.read_text() for p in before}


STAGES = ("ingest", "embed", "finetune", "compress", "promote", "canary", "monitor")


def test_generated_and_hand_written_stages_have_one_shape(generated: Path) -> None:
    """A package per stage: its params (form and result), plain modules, its Prefect tasks."""
    files = {p.name for p in (generated / "tasks" / "score_texts").glob("*.py")}
    assert files == {"__init__.py", "params.py", "score.py", "tasks.py"}
    # A source is a `list` and a `read` (tasks.ingest.sources); ingest's tasks do the rest.
    source = {p.name for p in (generated / "tasks" / "ingest_tickets").glob("*.py")}
    assert source == {"__init__.py", "params.py", "source.py"}
    for stage in STAGES:
        package = REPO / "tasks" / stage
        assert {"__init__.py", "params.py", "tasks.py"} <= {p.name for p in package.glob("*.py")}
