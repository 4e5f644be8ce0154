"""Model files moved and read safely: streaming copies checked against the sha256 manifest,
and tensors read from safetensors (pickle only when allowed, and then never executing code).

Nothing here holds a whole file in memory, so a model of any size is copied in a few MB.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.shared.manifest import MANIFEST, PICKLE_SUFFIXES, checked_manifest, sha256_file

if TYPE_CHECKING:
    import torch

BLOCK = 4 << 20  # 4 MiB: large enough for disk throughput, small enough to not matter


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy one file, writing each block on a second thread while this one hashes it (both
    release the GIL): about twice as fast as doing them in turn, two blocks in memory at most."""
    digest = hashlib.sha256()
    with src.open("rb") as fin, dst.open("wb") as fout, ThreadPoolExecutor(1) as writer:
        while block := fin.read(BLOCK):
            written = writer.submit(fout.write, block)
            digest.update(block)
            written.result()
    return digest.hexdigest()


def copy_verified(
    src_dir: Path, dst_dir: Path, allow_pickle: bool = False, expected_digest: str | None = None
) -> dict[str, str]:
    """Copy `src_dir` to `dst_dir` block by block, hashing on the way, and keep the copy only if
    every file matches the manifest (and the manifest itself matches `expected_digest`, the
    digest recorded at registration, when given). On any mismatch nothing is left behind.

    Returns the manifest. `dst_dir` must not exist yet.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if dst_dir.exists():
        raise FileExistsError(f"{dst_dir} exists already: refusing to overwrite it")
    manifest_path = src_dir / MANIFEST
    if not manifest_path.exists():
        raise ValueError(f"{src_dir} has no {MANIFEST}: refusing to copy unverified files")
    if expected_digest is not None and sha256_file(manifest_path) != expected_digest:
        raise ValueError(
            f"{manifest_path} is not the manifest recorded at registration "
            f"(digest {expected_digest[:12]}...): refusing the whole folder"
        )
    expected = checked_manifest(src_dir, allow_pickle)
    dst_dir.parent.mkdir(parents=True, exist_ok=True)
    # Stage beside the destination (same filesystem) so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{dst_dir.name}.", dir=dst_dir.parent))
    try:
        for name, digest in sorted(expected.items()):
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if _copy_hashing(src_dir / name, target) != digest:
                raise ValueError(f"{src_dir / name}: sha256 does not match the manifest")
        shutil.copyfile(manifest_path, staging / MANIFEST)
        try:
            staging.rename(dst_dir)
        except OSError:
            if dst_dir.exists():  # another copy finished first
                raise FileExistsError(f"{dst_dir} appeared while copying") from None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return expected


def load_tensors(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from safetensors; from a pickle format only if allowed, and then only
    through `torch.load(weights_only=True)`, which refuses anything but tensors and plain
    containers (no code runs)."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(path)
    if path.suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"{path}: unknown weights format {path.suffix!r}")
    if not allow_pickle:
        raise ValueError(
            f"{path} is a pickle format, which can run code when loaded: refused "
            "(set LLMOPS_ALLOW_PICKLE=true to read it as plain tensors)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the weights-only unpickler names what it refused
        raise ValueError(f"{path}: refused by the weights-only loader: {exc}") from exc
