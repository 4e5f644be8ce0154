import pandas as pd
import pytest

from tasks.ingest.quality import DocumentValidator

pytestmark = pytest.mark.integration


def frame(*rows: dict) -> pd.DataFrame:
    base = {"doc_id": "id", "source": "s", "text": "long enough text", "n_chars": 16}
    return pd.DataFrame([{**base, "utf8_valid": True, "duplicate_of": None, **r} for r in rows])


def test_planted_bad_rows_fail_exactly_their_expectations() -> None:
    validator = DocumentValidator(min_chars=5, max_chars=40)
    failures = validator.failures(
        frame(
            {"doc_id": "good", "source": "good.txt"},
            {"doc_id": "empty", "text": ""},
            {"doc_id": "long", "text": "x" * 41},
            {"doc_id": None, "text": None},
            {"doc_id": "bad-utf8", "utf8_valid": False},
            {"doc_id": "dupe", "duplicate_of": "good.txt"},
            {"doc_id": "nosource", "source": None},
        )
    )
    assert 0 not in failures
    assert failures[1] == ["text length outside 5..40 characters"]
    assert failures[2] == failures[1]
    assert failures[3] == ["doc_id is missing", "text is missing"]
    assert failures[4] == ["text is not valid UTF-8"]
    # Named as a duplicate, of which source; not as the null check on `duplicate_of` it is.
    assert failures[5] == ["duplicate document: same content as good.txt"]
    assert failures[6] == ["source is missing"]


def test_a_batch_without_required_columns_fails_every_row() -> None:
    validator = DocumentValidator(min_chars=1, max_chars=100)
    broken = frame({}, {}).drop(columns=["utf8_valid"])
    failures = validator.failures(broken)
    assert set(failures) == {0, 1}
    assert all(any("required fields" in r for r in reasons) for reasons in failures.values())


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="min_chars"):
        DocumentValidator(min_chars=10, max_chars=5)
