"""`feast apply` in `feature_repo/`, as a user runs it, on a copy of the repository."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

FEATURE_REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def test_feast_apply_works_in_the_feature_repo(tmp_path: Path) -> None:
    repo = tmp_path / "checkout" / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    feast = str(Path(sys.executable).with_name("feast"))

    applied = subprocess.run([feast, "apply"], cwd=repo, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # The yaml's relative paths put the state next to the checkout, as `.llmops/` does.
    assert (tmp_path / "checkout" / ".llmops" / "feast" / "registry.db").exists()

    listed = subprocess.run(
        [feast, "feature-views", "list"], cwd=repo, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "document_chunks" in listed.stdout and "documents" in listed.stdout
