import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.rails import IngestRails
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared import lake
from tasks.shared.settings import Settings

pytestmark = pytest.mark.integration

GOOD = "Context managers define what happens on entering and leaving a with block."


def build_messy_folder(root: Path) -> None:
    root.mkdir()
    (root / "good.txt").write_text(GOOD)
    (root / "guide.md").write_text("# Loops\n\nA for loop iterates over the items of any sequence.")
    (root / "page.html").write_text(
        "<html><head><title>T</title><script>x()</script></head>"
        "<body><p>The try statement specifies exception handlers.</p></body></html>"
    )
    (root / "good_copy.txt").write_text(GOOD + "\n")  # same content once normalised
    (root / "empty.txt").write_text("")
    (root / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    (root / "photo.png").write_bytes(b"\x89PNG")
    (root / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    (root / "huge.txt").write_text("word " * 5000)  # 25 kB, over the limit set below
    lines = [
        json.dumps({"text": "Generators yield values lazily, one at a time.", "title": "gen"}),
        json.dumps({"text": "Lambda expressions create small anonymous functions."}),
        "{not json",
        json.dumps({"body": "no text field here"}),
    ]
    (root / "notes.jsonl").write_text("\n".join(lines) + "\n")
    table = pa.table(
        {
            "text": ["Sets hold unique hashable elements.", None, "Dicts map keys to values."],
            "title": ["sets", "null", "dicts"],
        }
    )
    pq.write_table(table, root / "table.parquet")
    pq.write_table(table, root / "broken.parquet")
    data = (root / "broken.parquet").read_bytes()
    (root / "broken.parquet").write_bytes(data[: len(data) // 2])


def test_messy_folder_completes_and_every_file_is_accounted_for(
    tmp_path: Path, settings: Settings
) -> None:
    root = tmp_path / "messy"
    build_messy_folder(root)
    params = IngestParams(source_dir=str(root), min_chars=10, max_file_bytes=10_000)

    report = ingest_folder(root, params, settings)

    assert (report.read, report.accepted, report.quarantined) == (17, 7, 10)
    assert report.reconciles and report.new_documents == 7
    snapshot = lake.read_snapshot(settings.snapshots_dir, report.snapshot_id)
    quarantine = lake.read_quarantine(settings.quarantine_dir)
    seen = set(snapshot["source"]) | set(quarantine["source"])
    for path in root.iterdir():
        assert any(s.split("#")[0] == path.name for s in seen), f"{path.name} vanished"

    reasons = {q.source: " | ".join(q.reasons) for q in quarantine.itertuples()}
    assert reasons["good_copy.txt"] == "duplicate document: same content as good.txt"
    assert report.reasons["duplicate document"] == 1
    assert "length outside 10..2000000" in reasons["empty.txt"]
    assert "binary file" in reasons["image.txt"]
    assert "unsupported file type: '.png'" in reasons["photo.png"]
    assert "not valid UTF-8" in reasons["latin1.txt"]
    assert "over the 10000 limit" in reasons["huge.txt"]
    assert "invalid JSON" in reasons["notes.jsonl#L3"]
    assert "no string field 'text'" in reasons["notes.jsonl#L4"]
    assert "text is missing" in reasons["table.parquet#R2"]
    assert "unreadable parquet" in reasons["broken.parquet"]

    docs = pd.read_parquet(settings.documents_dir)
    html = docs[docs["source"] == "page.html"].iloc[0]
    assert html["text"] == "The try statement specifies exception handlers."
    assert html["title"] == "T"
    assert docs["event_timestamp"].notna().all()


def test_reingesting_the_same_content_is_a_no_op(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "messy"
    build_messy_folder(root)
    params = IngestParams(source_dir=str(root), min_chars=10, max_file_bytes=10_000)
    first = ingest_folder(root, params, settings)
    second = ingest_folder(root, params, settings)
    # Nothing changed: nothing is read again, and the snapshot is the same.
    assert (second.read, second.unchanged, second.new_documents) == (0, 12, 0)
    assert second.snapshot_id == first.snapshot_id

    os.utime(root / "good.txt")  # a new modification time, the same bytes: read, not new
    touched = ingest_folder(root, params, settings)
    assert (touched.read, touched.unchanged, touched.new_documents) == (1, 11, 0)
    assert touched.snapshot_id == first.snapshot_id

    # Another policy reads everything again; the lake gets no copies of the same rows.
    policy = IngestRails(kinds={"ip_address": "allow"})  # none here: the same outcome
    again = ingest_folder(root, params.model_copy(update={"rails": policy}), settings)
    assert (again.read, again.accepted, again.quarantined, again.unchanged) == (17, 7, 10, 0)
    assert again.new_documents == 0 and again.snapshot_id == first.snapshot_id
    assert len(pd.read_parquet(settings.documents_dir)) == 7
    assert len(lake.read_quarantine(settings.quarantine_dir)) == 10  # no copies of old rows
    assert len(lake.read_quarantine(settings.quarantine_dir, first.run_id)) == 10
    assert len(lake.read_quarantine(settings.quarantine_dir, again.run_id)) == 0
    # The lake has none of the re-run's rows under its id; its report still lists them all.
    assert [q.source for q in again.quarantined_rows] == [q.source for q in first.quarantined_rows]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest_folder(tmp_path / "nope", IngestParams(), settings)
