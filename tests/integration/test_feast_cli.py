"""`feast apply` in `feature_repo/`, as a user runs it, on a copy of the repository."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def fresh_checkout(dest: Path) -> Path:
    """The committed files of feature_repo/ and of the state folder, as a fresh clone has them."""
    tracked = subprocess.run(
        ["git", "ls-files", "feature_repo", ".llmops"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert "feature_repo/feature_store.yaml" in tracked
    for name in tracked:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, dest / name)
    return dest / "feature_repo"


def test_feast_apply_works_in_the_feature_repo_of_a_fresh_clone(tmp_path: Path) -> None:
    repo = fresh_checkout(tmp_path / "checkout")
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
