"""A node's cache of registered model files, keyed by the digest recorded at registration.

`<root>/<digest>/` holds one version's files once they all matched their manifest. Filling it
is done once per node: a file lock makes a second replica wait for the first one's copy
instead of downloading again; files are fetched in parallel into `<root>/.<digest>.partial/`,
which survives an interrupted fill, so the next one fetches only the files still missing or
wrong. The same files registered twice (another name, another version) are one entry.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tasks.shared.manifest import MANIFEST, PICKLE_SUFFIXES, checked_manifest, sha256_file

# fetch(relative path, destination file): writes one file of the version's folder there.
Fetch = Callable[[str, Path], None]


class NodeCache:
    def __init__(self, root: Path, workers: int = 8) -> None:
        self.root = Path(root)
        self.workers = workers

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"{digest!r} is not a sha256 digest")
        return self.root / digest

    def get(self, digest: str, fetch: Fetch, allow_pickle: bool = False) -> tuple[Path, int]:
        """The cached folder for `digest`, filled with `fetch` first if it is not there, and the
        number of files this call fetched (0: it was cached, by this or another process)."""
        folder = self.path(digest)
        if folder.is_dir():
            return folder, 0
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / f".{digest}.lock"):
            if folder.is_dir():  # filled by the process that held the lock before us
                return folder, 0
            staging = self.root / f".{digest}.partial"
            fetched = self._fill(staging, digest, fetch, allow_pickle)
            staging.rename(folder)
        return folder, fetched

    def _fill(self, staging: Path, digest: str, fetch: Fetch, allow_pickle: bool) -> int:
        staging.mkdir(exist_ok=True)
        manifest = staging / MANIFEST
        fetched = 0
        if not manifest.exists() or sha256_file(manifest) != digest:
            _fetch_checked(fetch, MANIFEST, digest, staging)
            fetched += 1
        expected: dict[str, str] = json.loads(manifest.read_text())
        for name in expected:  # checked before anything is fetched
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{name!r}: the manifest names a file outside its folder")
            if name.endswith(PICKLE_SUFFIXES) and not allow_pickle:
                raise ValueError(f"{name}: pickle weights; only safetensors are loaded")
        missing = [
            (name, sha)
            for name, sha in sorted(expected.items())
            if not (staging / name).is_file() or sha256_file(staging / name) != sha
        ]
        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(lambda item: _fetch_checked(fetch, *item, staging), missing))
        keep = {MANIFEST, *expected}
        for stray in [p for p in staging.rglob("*") if p.is_file()]:  # an interrupted fetch's
            if stray.relative_to(staging).as_posix() not in keep:
                stray.unlink()
        checked_manifest(staging, allow_pickle)  # the file list is exactly the manifest's
        return fetched + len(missing)


def _fetch_checked(fetch: Fetch, name: str, sha: str, staging: Path) -> None:
    """One file fetched beside its place and moved there only when its hash is right."""
    target = staging / name
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    fetch(name, part)
    if sha256_file(part) != sha:
        part.unlink()
        what = "the manifest recorded at registration" if name == MANIFEST else "its manifest"
        raise ValueError(f"{name}: sha256 does not match {what} (as fetched; not cached)")
    part.replace(target)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
