from pathlib import Path
from pydoc_data.topics import topics

import pytest

from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.settings import Settings


@pytest.fixture
def training_snapshot(tmp_path: Path, settings: Settings) -> str:
    """A snapshot of 40 pydoc topics to train on."""
    root = tmp_path / "train-docs"
    root.mkdir()
    for name in sorted(topics)[:40]:
        (root / f"{name}.txt").write_text(topics[name])
    return ingest_folder(root, IngestParams(), settings).snapshot_id
