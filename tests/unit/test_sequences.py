import numpy as np
import pytest

from tasks.core.sequences import is_held_out, pack

pytestmark = pytest.mark.unit


def test_pack_concatenates_documents_with_eos_and_drops_the_tail() -> None:
    rows = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4, eos_id=0)
    assert rows.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert rows.dtype == np.int64
    assert pack([[1]], seq_len=4, eos_id=0).shape == (0, 4)
    with pytest.raises(ValueError, match="seq_len"):
        pack([[1]], seq_len=1, eos_id=0)


def test_held_out_documents_are_stable_and_about_the_asked_share() -> None:
    ids = [f"doc-{i}" for i in range(2000)]
    held = [d for d in ids if is_held_out(d, 0.1)]
    assert 150 < len(held) < 250
    assert held == [d for d in ids if is_held_out(d, 0.1)]  # the same on every run
    assert not any(is_held_out(d, 0.0) for d in ids)
