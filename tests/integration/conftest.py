from pathlib import Path
from pydoc_data.topics import topics

import pytest

from tasks.ingest import IngestParams, ingest_folder
from tasks.settings import Settings


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (it takes ~5 s to start)."""
    import ray

    ray.init(include_dashboard=False, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def training_snapshot(tmp_path: Path, settings: Settings) -> str:
    """A snapshot of 40 pydoc topics to train on."""
    root = tmp_path / "train-docs"
    root.mkdir()
    for name in sorted(topics)[:40]:
        (root / f"{name}.txt").write_text(topics[name])
    return ingest_folder(root, IngestParams(), settings).snapshot_id
