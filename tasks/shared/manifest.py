"""sha256 manifests of model folders, written on save and verified before every load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.sha256.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> dict[str, str]:
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True))
    return files


def manifest_digest(folder: Path) -> str:
    """One hash for the whole folder: the hash of its manifest."""
    return sha256_file(folder / MANIFEST)


def folder_digest(folder: Path) -> str:
    """The manifest's digest; for a folder without one (a pretrained model as downloaded), the
    hash of its first safetensors file, else "unknown"."""
    if (folder / MANIFEST).exists():
        return manifest_digest(folder)
    weights = sorted(folder.glob("*.safetensors"))
    return sha256_file(weights[0]) if weights else "unknown"


def checked_manifest(folder: Path, allow_pickle: bool = False) -> dict[str, str]:
    """The folder's manifest, once its file list matches the folder's and it names no pickle
    weights (unless allowed); the hashes are for the caller to check."""
    path = folder / MANIFEST
    if not path.exists():
        raise ValueError(f"{folder} has no {MANIFEST}: refusing to load unverified files")
    expected: dict[str, str] = json.loads(path.read_text())
    present = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    if present != set(expected):
        raise ValueError(
            f"{folder}: files differ from the manifest (extra {sorted(present - set(expected))}, "
            f"missing {sorted(set(expected) - present)})"
        )
    pickles = [name for name in expected if name.endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        raise ValueError(f"{folder}: {pickles} in pickle format; only safetensors are loaded")
    return expected


def verify_manifest(folder: Path, allow_pickle: bool = False) -> dict[str, str]:
    """Refuse a folder whose files differ from its manifest, or that holds pickle weights."""
    expected = checked_manifest(folder, allow_pickle)
    for name, digest in expected.items():
        if sha256_file(folder / name) != digest:
            raise ValueError(f"{folder / name}: sha256 does not match the manifest")
    return expected
