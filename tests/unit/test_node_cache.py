"""The node cache of model files: keyed by the registered digest, filled once per node (a
second process waits for the first one's copy), resumed after an interruption, verified."""

import json
import multiprocessing
import shutil
import time
from pathlib import Path

import pytest

from tasks.shared.manifest import MANIFEST, manifest_digest, write_manifest
from tasks.shared.node_cache import NodeCache

pytestmark = pytest.mark.unit


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A registered version's folder: a few files and their manifest."""
    folder = tmp_path / "artifacts"
    (folder / "sub").mkdir(parents=True)
    for i in range(6):
        (folder / f"shard-{i}.safetensors").write_bytes(bytes([i]) * 50_000)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "sub" / "tokenizer.json").write_text("{}")
    write_manifest(folder)
    return folder


class Copier:
    """Fetches by copying from the source folder, counting, optionally failing on one file."""

    def __init__(self, source: Path, fail_on: str | None = None, delay_s: float = 0.0) -> None:
        self.source, self.fail_on, self.delay_s = source, fail_on, delay_s
        self.fetched: list[str] = []

    def __call__(self, name: str, target: Path) -> None:
        if name == self.fail_on:
            raise ConnectionError(f"{name}: connection reset")
        time.sleep(self.delay_s)
        shutil.copyfile(self.source / name, target)
        self.fetched.append(name)


def test_a_version_is_fetched_once_then_served_from_the_cache(source, tmp_path) -> None:
    cache, fetch = NodeCache(tmp_path / "cache"), Copier(source)
    digest = manifest_digest(source)
    folder, fetched = cache.get(digest, fetch)
    assert folder == tmp_path / "cache" / digest and fetched == 9  # manifest + 8 files
    assert {p.name for p in folder.rglob("*") if p.is_file()} == {
        p.name for p in source.rglob("*") if p.is_file()
    }
    again = Copier(source)
    assert cache.get(digest, again) == (folder, 0) and again.fetched == []
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == [
        digest
    ]


def test_an_interrupted_fill_resumes_with_the_missing_files_only(source, tmp_path) -> None:
    cache, digest = NodeCache(tmp_path / "cache", workers=1), manifest_digest(source)
    first = Copier(source, fail_on="shard-4.safetensors")
    with pytest.raises(ConnectionError):
        cache.get(digest, first)
    assert not cache.path(digest).exists()  # nothing half-filled is ever served
    partial = tmp_path / "cache" / f".{digest}.partial"
    (partial / "shard-0.safetensors").write_bytes(b"torn")  # a file cut short
    (partial / "shard-1.safetensors.part").write_bytes(b"x")  # an interrupted fetch
    resumed = Copier(source)
    folder, fetched = cache.get(digest, resumed)
    every = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    intact = set(first.fetched) - {"shard-0.safetensors"}
    assert "shard-4.safetensors" not in intact and len(intact) >= 2
    assert sorted(resumed.fetched) == sorted(every - intact)
    assert fetched == len(every - intact) and not (folder / "shard-1.safetensors.part").exists()
    assert (folder / "shard-0.safetensors").read_bytes() == bytes([0]) * 50_000


def test_files_that_do_not_match_are_never_cached(source, tmp_path) -> None:
    cache, digest = NodeCache(tmp_path / "cache"), manifest_digest(source)
    (source / "config.json").write_text("{}")  # changed after registration
    with pytest.raises(ValueError, match=r"config\.json: sha256 does not match its manifest"):
        cache.get(digest, Copier(source))
    assert not cache.path(digest).exists()
    write_manifest(source)  # and a manifest rewritten to match it
    with pytest.raises(ValueError, match="manifest recorded at registration"):
        NodeCache(tmp_path / "another-node").get(digest, Copier(source))
    with pytest.raises(ValueError, match="not a sha256 digest"):
        cache.get("../../etc", Copier(source))


def test_pickles_and_paths_outside_the_folder_are_refused_before_any_fetch(tmp_path) -> None:
    for name, error in [("model.bin", "pickle weights"), ("../evil.json", "outside its folder")]:
        folder = tmp_path / name.replace("/", "_")
        folder.mkdir()
        (folder / MANIFEST).write_text(json.dumps({name: "0" * 64}))
        fetch = Copier(folder)
        with pytest.raises(ValueError, match=error):
            NodeCache(tmp_path / "cache").get(manifest_digest(folder), fetch)
        assert fetch.fetched == [MANIFEST]


def _replica(root: str, source: str, digest: str, results) -> None:
    fetch = Copier(Path(source), delay_s=0.05)
    folder, fetched = NodeCache(Path(root)).get(digest, fetch)
    results.put((str(folder), fetched))


def test_replicas_starting_together_on_one_node_fetch_once(source, tmp_path) -> None:
    digest, root = manifest_digest(source), str(tmp_path / "cache")
    results = multiprocessing.get_context("spawn").Queue()
    replicas = [
        multiprocessing.get_context("spawn").Process(
            target=_replica, args=(root, str(source), digest, results)
        )
        for _ in range(3)
    ]
    for p in replicas:
        p.start()
    for p in replicas:
        p.join(60)
    got = sorted(results.get(timeout=5) for _ in replicas)
    assert {folder for folder, _ in got} == {str(Path(root) / digest)}
    assert sorted(fetched for _, fetched in got) == [0, 0, 9]
