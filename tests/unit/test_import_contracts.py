"""The import contracts in pyproject.toml hold on the tree, and fail on a planted violation."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "serving", "llmops", "tasks")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def copy_of_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def plant(root: Path, module: str, line: str) -> None:
    path = root / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("tasks/canary/rollout.py", "import serving.app", "tasks never import them"),
        ("tasks/clients/serve.py", "import tasks.canary.rollout", "Stages over evaluation"),
        ("tasks/monitor/drift.py", "import tasks.promote.registration", "Stages over evaluation"),
        ("tasks/evaluate/answer.py", "import tasks.compress.measure", "Stages over evaluation"),
        ("tasks/core/canary.py", "import prefect", "Core is pure"),
        ("tasks/shared/lake.py", "import tasks.shared.models", "No import cycles"),
    ],
)
def test_a_planted_violation_fails_the_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = copy_of_tree(tmp_path)
    plant(root, module, line)
    result = lint(root)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout[-3000:]
