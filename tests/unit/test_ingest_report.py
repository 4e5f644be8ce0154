"""The ingest report as a person reads it in the Prefect UI."""

import pytest

from tasks.ingest.params import IngestReport, QuarantinedRow

pytestmark = pytest.mark.unit


def report(**fields: object) -> IngestReport:
    counts = {"read": 3, "accepted": 3, "quarantined": 0, "reasons": {}}
    return IngestReport(
        run_id="r1",
        source_root="/data",
        snapshot_id="s1",
        new_documents=0,
        seconds=0.5,
        **{**counts, **fields},
    )


def table(markdown: str, heading: str) -> list[str]:
    """The rows (below the header and rule) of the table under `heading`."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")][2:]


def test_every_quarantined_row_of_the_run_is_listed() -> None:
    rows = [
        QuarantinedRow(source="empty.txt", reasons=["text length outside 20..99 characters"]),
        QuarantinedRow(source="copy.txt", reasons=["duplicate document: same content as a.txt"]),
    ]
    reasons = {"text length outside 20..99 characters": 1, "duplicate document": 1}
    text = report(read=5, quarantined=2, reasons=reasons, quarantined_rows=rows).markdown()

    listed = table(text, "## Quarantined rows (all)")
    assert listed == [
        "| `empty.txt` | text length outside 20..99 characters |",
        "| `copy.txt` | duplicate document: same content as a.txt |",
    ]
    assert "| duplicate document | 1 |" in table(text, "## Quarantine reasons")
    assert "read = accepted + quarantined: yes" in text


def test_a_long_quarantine_says_how_many_rows_it_shows() -> None:
    rows = [QuarantinedRow(source=f"{i}.txt", reasons=["binary file"]) for i in range(50)]
    text = report(
        read=63, quarantined=60, reasons={"binary file": 60}, quarantined_rows=rows
    ).markdown()
    assert len(table(text, "## Quarantined rows (first 50 of 60)")) == 50


def test_no_quarantine_shows_no_empty_tables() -> None:
    text = report().markdown()
    assert "Nothing was quarantined." in text
    assert "## Quarantine" not in text


def test_a_pipe_in_a_source_or_reason_stays_inside_its_cell() -> None:
    rows = [QuarantinedRow(source="a|b.txt", reasons=["invalid JSON: x | y\nz"])]
    text = report(
        read=1, accepted=0, quarantined=1, reasons={"invalid JSON": 1}, quarantined_rows=rows
    ).markdown()
    [line] = table(text, "## Quarantined rows (all)")
    assert line == "| `a\\|b.txt` | invalid JSON: x \\| y z |"
