from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

import pytest

from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.settings import Settings

from worlds import Service, World, serving_app, serving_world


@pytest.fixture
def training_snapshot(tmp_path: Path, settings: Settings) -> str:
    """A snapshot of 40 pydoc topics to train on."""
    root = tmp_path / "train-docs"
    root.mkdir()
    for name in sorted(topics)[:40]:
        (root / f"{name}.txt").write_text(topics[name])
    return ingest_folder(root, IngestParams(), settings).snapshot_id


# Module-scoped, not session-scoped: the app holds both Ray CPUs until its module ends, and the
# modules after it train and embed on that Ray.
@pytest.fixture(scope="module")
def served_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving_world(tmp_path_factory.mktemp("serving")) as world:
        yield world


@pytest.fixture(scope="module")
def service(ray_local, served_world: World, embedder) -> Iterator[Service]:
    """The Serve app of `worlds.serving_app` on the module's world."""
    with serving_app(served_world, embedder) as running:
        yield running
