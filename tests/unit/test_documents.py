from datetime import UTC, datetime

import pytest

from tasks.core.documents import prepare_batch, quarantine_row, reason_kind
from tasks.ingest.records import RawRecord

pytestmark = pytest.mark.unit

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_prepare_batch_normalises_ids_and_marks_later_copies() -> None:
    seen: dict[str, str] = {}
    batch = prepare_batch(
        [
            RawRecord("a.txt", "a", "Hello   world, this is text."),
            RawRecord("b.txt", "b", "Hello world, this is text.\n"),  # same after normalising
            RawRecord("c.bin", problem="binary file: NUL bytes in the first 8 KiB"),
            RawRecord("d.parquet#R1", "d", None),
        ],
        seen,
        run_id="r1",
        at=AT,
    )
    a, b, d = batch.rows
    assert a["doc_id"] == b["doc_id"] and a["duplicate_of"] is None
    assert b["duplicate_of"] == "a.txt"
    assert a["text"] == "Hello world, this is text." and a["language"] == "en"
    assert d["text"] is None and d["doc_id"] is None
    [q] = batch.quarantined
    assert q["source"] == "c.bin" and q["reasons"] == ["binary file: NUL bytes in the first 8 KiB"]
    # A later batch of the same run still sees the first copy.
    later = prepare_batch([RawRecord("e.md", "e", "Hello world, this is text.")], seen, "r1", AT)
    assert later.rows[0]["duplicate_of"] == "a.txt"


def test_quarantine_ids_are_stable_across_runs() -> None:
    first = quarantine_row("run-1", "x.txt", ["empty"], "", AT)
    second = quarantine_row("run-2", "x.txt", ["empty"], "", AT)
    assert first["quarantine_id"] == second["quarantine_id"]
    assert (
        first["quarantine_id"]
        != quarantine_row("run-1", "y.txt", ["empty"], "", AT)["quarantine_id"]
    )


def test_reasons_count_by_rule_or_by_kind_of_read_problem() -> None:
    rule = "text length outside 20..2000000 characters"
    assert reason_kind(rule) == rule
    assert reason_kind("duplicate document: same content as a.txt") == "duplicate document"
    assert reason_kind("too large: file is 25000 bytes, over the 10000 limit") == "too large"
    assert reason_kind("unreadable parquet: after 0 rows: bad footer") == "unreadable parquet"
