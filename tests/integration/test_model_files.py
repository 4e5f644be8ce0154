import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tasks.shared.manifest import MANIFEST, manifest_digest, write_manifest
from tasks.shared.model_files import copy_verified, load_tensors
from tasks.shared.settings import REPO_ROOT

pytestmark = pytest.mark.integration

SPARSE_SIZE = 5 << 29  # 2.5 GiB of zeros, held by a sparse file that takes no disk
SPARSE_SHA256 = "9679aa8d70d80446e83955c51d2fe0cbc0af409a5202ee4c977a59a117372cff"


def _folder(root: Path) -> Path:
    root.mkdir()
    save_file({"w": torch.arange(6.0).view(2, 3)}, root / "model.safetensors")
    (root / "tok").mkdir()
    (root / "tok" / "tokenizer.json").write_text("{}")
    write_manifest(root)
    return root


def test_copy_verified_copies_every_file_and_the_manifest(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    files = copy_verified(src, tmp_path / "dst", expected_digest=manifest_digest(src))
    assert set(files) == {"model.safetensors", "tok/tokenizer.json"}
    copied = {p.relative_to(tmp_path / "dst").as_posix() for p in (tmp_path / "dst").rglob("*")}
    assert copied == {"model.safetensors", "tok", "tok/tokenizer.json", MANIFEST}
    weights = load_tensors(tmp_path / "dst" / "model.safetensors")["w"]
    assert torch.equal(weights[1], 3 + torch.arange(3.0))


def test_a_tampered_file_leaves_nothing_behind(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    (src / "tok" / "tokenizer.json").write_text('{"evil": 1}')
    with pytest.raises(ValueError, match=r"tok/tokenizer\.json: sha256 does not match"):
        copy_verified(src, tmp_path / "out" / "dst")
    assert list((tmp_path / "out").iterdir()) == []  # no partial copy, no staging folder


def test_a_replaced_manifest_or_extra_file_is_refused(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    registered = manifest_digest(src)
    (src / "model.safetensors").write_bytes(b"other")
    write_manifest(src)  # consistent with the new files, but not the registered manifest
    with pytest.raises(ValueError, match="not the manifest recorded at registration"):
        copy_verified(src, tmp_path / "dst", expected_digest=registered)
    (src / "extra.py").write_text("print('hi')")
    with pytest.raises(ValueError, match=r"extra \['extra.py'\]"):
        copy_verified(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_pickle_files_are_refused_unless_allowed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"w": torch.ones(2)}, src / "pytorch_model.bin")
    write_manifest(src)
    with pytest.raises(ValueError, match="pickle format"):
        copy_verified(src, tmp_path / "dst")
    copy_verified(src, tmp_path / "dst", allow_pickle=True)
    with pytest.raises(ValueError, match="pickle format, which can run code"):
        load_tensors(tmp_path / "dst" / "pytorch_model.bin")
    allowed = load_tensors(tmp_path / "dst" / "pytorch_model.bin", allow_pickle=True)
    assert torch.equal(allowed["w"], torch.ones(2))


class _Payload:
    """Unpickling this would create the marker file (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_that_runs_code_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    payload = {"w": torch.ones(2), "x": _Payload(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="pickle format"):
        load_tensors(path)
    with pytest.raises(ValueError, match="refused by the weights-only loader"):
        load_tensors(path, allow_pickle=True)
    assert not marker.exists()


def test_unknown_formats_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown weights format"):
        load_tensors(tmp_path / "model.npz")


def test_a_large_file_is_copied_in_bounded_memory(tmp_path: Path) -> None:
    """2.5 GiB through copy_verified in a fresh interpreter whose peak RSS stays small.

    The peak is read from VmHWM (this process image's high-water mark): `ru_maxrss` keeps the
    forking parent's peak across fork+exec, here pytest's with torch loaded."""
    src = tmp_path / "src"
    src.mkdir()
    with (src / "model.safetensors").open("wb") as f:
        f.truncate(SPARSE_SIZE)
    # The digest of 2.5 GiB of zeros, computed independently once.
    (src / MANIFEST).write_text(json.dumps({"model.safetensors": SPARSE_SHA256}))
    script = textwrap.dedent(
        f"""
        import json, re, resource, sys, time
        from pathlib import Path
        from tasks.shared.model_files import copy_verified
        start = time.perf_counter()
        copy_verified(Path({str(src)!r}), Path({str(tmp_path / "dst")!r}))
        status = Path("/proc/self/status").read_text()
        print(json.dumps({{
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": int(re.search(r"VmHWM:\\s+(\\d+)", status)[1]) / 1024,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch_imported": "torch" in sys.modules,
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    copied = tmp_path / "dst" / "model.safetensors"
    try:
        assert copied.stat().st_size == SPARSE_SIZE
        assert result["peak_rss_mb"] < 300, result
        assert not result["torch_imported"]  # copying needs no ML stack
        print(f"\ncopied 2.5 GiB: {result}")
    finally:
        copied.unlink(missing_ok=True)  # pytest keeps recent tmp folders: free the 2.5 GiB now
