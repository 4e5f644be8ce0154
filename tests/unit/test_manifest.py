from pathlib import Path

import pytest

from tasks.shared.manifest import MANIFEST, verify_manifest, write_manifest

pytestmark = pytest.mark.unit


def test_manifest_round_trip_and_tampering(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.json").write_text("{}")
    files = write_manifest(tmp_path)
    assert set(files) == {"model.safetensors", "sub/config.json"}
    assert verify_manifest(tmp_path) == files

    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ValueError, match="sha256 does not match"):
        verify_manifest(tmp_path)


def test_extra_missing_or_pickle_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="no manifest"):
        verify_manifest(tmp_path)
    write_manifest(tmp_path)
    with pytest.raises(ValueError, match="pickle format"):
        verify_manifest(tmp_path)
    assert verify_manifest(tmp_path, allow_pickle=True)
    (tmp_path / "extra.txt").write_text("x")
    with pytest.raises(ValueError, match="extra"):
        verify_manifest(tmp_path)
    assert (tmp_path / MANIFEST).exists()
