"""The PDF and Word readers on real files written by reportlab and python-docx."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from docx import Document

from tasks.ingest.formats.docx import read_docx
from tasks.ingest.formats.pdf import read_pdf
from tasks.ingest.records import RawRecord

from document_files import (
    GUIDE_TABLE,
    HANDBOOK_TITLE,
    HEADER,
    HYPHENATED_PAGE,
    TABLE_PAGE,
    TABLE_ROWS,
    corrupt_pdf,
    damaged_docx,
    empty_pdf,
    encrypted_pdf,
    fake_docx,
    guide_docx,
    handbook_pdf,
    many_pages_pdf,
    mixed_pdf,
    scanned_pdf,
    unique_sentence,
)

pytestmark = pytest.mark.integration

PAGES = 5


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("documents")


@pytest.fixture(scope="module")
def handbook(files: Path) -> list[RawRecord]:
    path = handbook_pdf(files / "handbook.pdf", pages=PAGES)
    return list(read_pdf("policies/handbook.pdf", path.read_bytes()))


@pytest.fixture(scope="module")
def guide(files: Path) -> list[RawRecord]:
    return list(read_docx("docs/guide.docx", guide_docx(files / "guide.docx").read_bytes()))


def test_each_pdf_page_is_a_record_citing_its_page(handbook: list[RawRecord]) -> None:
    assert [r.source for r in handbook] == [f"policies/handbook.pdf#page={n}" for n in range(1, 6)]
    for n, record in enumerate(handbook, 1):
        assert record.problem is None and record.title == HANDBOOK_TITLE
        assert unique_sentence(n) in record.text
        others = [unique_sentence(m) for m in range(1, PAGES + 1) if m != n]
        assert not any(sentence in record.text for sentence in others)


def test_running_headers_and_footers_are_absent_from_every_page(
    handbook: list[RawRecord],
) -> None:
    for record in handbook:
        assert HEADER not in record.text and "Confidential" not in record.text
        assert f" of {PAGES}" not in record.text


def test_a_word_broken_across_lines_is_joined(handbook: list[RawRecord]) -> None:
    text = handbook[HYPHENATED_PAGE - 1].text
    assert "kept ready for examination by the auditors." in text
    assert "exam-" not in text and "\x02" not in text and "\ufffe" not in text


def test_pdf_paragraphs_read_as_sentences_on_lines_of_their_own(
    handbook: list[RawRecord],
) -> None:
    lines = handbook[0].text.split("\n")
    assert lines[0] == "Records retention (1)"
    assert unique_sentence(1) in lines
    assert lines[-1] == "This closes the records retention part, number 1."


def test_pdf_table_rows_read_as_lines_of_text(handbook: list[RawRecord]) -> None:
    lines = handbook[TABLE_PAGE - 1].text.split("\n")
    for row in TABLE_ROWS:
        assert " ".join(row) in lines


def test_a_pdf_without_a_title_is_named_after_its_file(files: Path) -> None:
    untitled = handbook_pdf(files / "untitled.pdf", pages=3, title="").read_bytes()
    records = list(read_pdf("https://example.com/docs/leave-policy.pdf?v=2", untitled))
    assert {r.title for r in records} == {"leave-policy"}
    # reportlab writes "untitled" when no title is given: a placeholder, not a title
    mixed = mixed_pdf(files / "mixed-titles.pdf").read_bytes()
    assert {r.title for r in read_pdf("mixed.pdf", mixed) if r.text} == {"mixed"}


def test_a_scanned_pdf_is_quarantined_as_needing_ocr(files: Path) -> None:
    data = scanned_pdf(files / "scan.pdf").read_bytes()
    assert list(read_pdf("scan.pdf", data)) == [
        RawRecord("scan.pdf", problem="no text layer: needs OCR")
    ]


def test_only_the_scanned_page_of_a_mixed_pdf_is_quarantined(files: Path) -> None:
    data = mixed_pdf(files / "mixed.pdf").read_bytes()
    records = list(read_pdf("mixed.pdf", data))
    assert [(r.source, r.problem) for r in records] == [
        ("mixed.pdf#page=1", None),
        ("mixed.pdf#page=2", "no text layer: needs OCR"),
        ("mixed.pdf#page=4", None),  # page 3 is blank: nothing to record
    ]
    assert records[0].text == unique_sentence(1) and records[2].text == unique_sentence(4)


def test_an_encrypted_pdf_is_quarantined_as_needing_a_password(files: Path) -> None:
    data = encrypted_pdf(files / "locked.pdf").read_bytes()
    [record] = read_pdf("locked.pdf", data)
    assert record.source == "locked.pdf" and record.text is None
    assert record.problem.startswith("encrypted PDF: needs a password")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_a_damaged_pdf_is_quarantined_as_unreadable(files: Path, kind: str) -> None:
    data = {
        "truncated": corrupt_pdf(files / "corrupt.pdf").read_bytes(),
        "garbage": b"%PDF-1.7\n" + bytes(range(256)) * 4,
        "empty": b"",
    }[kind]
    [record] = read_pdf("broken.pdf", data)
    assert record == RawRecord("broken.pdf", problem="unreadable PDF: damaged or not a PDF")


def test_a_pdf_without_pages_is_quarantined(files: Path) -> None:
    data = empty_pdf(files / "no-pages.pdf").read_bytes()
    # after a failed load, so that an error PDFium left behind cannot be taken for this one
    list(read_pdf("broken.pdf", b"garbage"))
    assert list(read_pdf("no-pages.pdf", data)) == [
        RawRecord("no-pages.pdf", problem="unreadable PDF: no pages")
    ]


def test_pdfs_read_from_many_threads_give_the_same_records(files: Path) -> None:
    inputs = [
        ("handbook.pdf", handbook_pdf(files / "threads.pdf", pages=PAGES).read_bytes()),
        ("mixed.pdf", mixed_pdf(files / "threads-mixed.pdf").read_bytes()),
        ("locked.pdf", encrypted_pdf(files / "threads-locked.pdf").read_bytes()),
    ] * 8
    alone = [list(read_pdf(source, data)) for source, data in inputs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda item: list(read_pdf(*item)), inputs))
    assert together == alone


def test_a_long_pdf_cites_every_page_without_its_running_lines(files: Path) -> None:
    data = many_pages_pdf(files / "long.pdf", pages=120).read_bytes()
    records = list(read_pdf("long.pdf", data))
    assert [r.source for r in records] == [f"long.pdf#page={n}" for n in range(1, 121)]
    for n, record in enumerate(records, 1):
        assert record.text.startswith(unique_sentence(n))
        assert HEADER not in record.text and "Page " not in record.text


def test_each_docx_section_is_a_record_citing_its_heading(guide: list[RawRecord]) -> None:
    assert [(r.source, r.title) for r in guide] == [
        ("docs/guide.docx", "Install Guide"),
        ("docs/guide.docx#section=Install", "Install Guide — Install"),
        ("docs/guide.docx#section=Configure", "Install Guide — Configure"),
        ("docs/guide.docx#section=Ports%20%26%20firewalls", "Install Guide — Ports & firewalls"),
    ]
    assert all(r.problem is None for r in guide)


def test_text_before_the_first_heading_is_its_own_record(guide: list[RawRecord]) -> None:
    assert guide[0].text == (
        "This guide is for operators who run the service on their own machines."
    )


def test_a_section_is_its_heading_then_its_paragraphs(guide: list[RawRecord]) -> None:
    assert guide[3].text == (
        "Ports & firewalls\n\nOpen the port in the firewall so that clients can reach the service."
    )


def test_a_heading_with_nothing_under_it_opens_the_next_section(guide: list[RawRecord]) -> None:
    assert guide[1].text == (
        "Install Guide\n\n"
        "Install\n\n"
        "Download the package and unpack it into a folder of your choice.\n\n"
        "Run the installer as an ordinary user, never as root."
    )


def test_docx_table_rows_read_in_place_as_cells_joined_by_bars(guide: list[RawRecord]) -> None:
    rows = "\n".join(" | ".join(row) for row in GUIDE_TABLE)
    assert guide[2].text == (
        "Configure\n\n"
        "Settings live in one file; these are the ones most people change:\n\n"
        f"{rows}\n\n"
        "Restart the service after changing a setting."
    )


def test_a_docx_without_a_title_is_named_after_its_file(files: Path) -> None:
    data = guide_docx(files / "untitled.docx", title="").read_bytes()
    records = list(read_docx("docs/setup.docx", data))
    assert records[0].title == "setup"
    assert records[1].title == "setup — Install"


def test_a_zip_of_other_files_is_not_a_word_document(files: Path) -> None:
    data = fake_docx(files / "fake.docx").read_bytes()
    [record] = read_docx("fake.docx", data)
    assert record.source == "fake.docx" and record.text is None
    assert record.problem.startswith("not a Word document: ")
    assert "[Content_Types].xml" in record.problem


def test_a_pdf_named_docx_is_not_a_word_document(files: Path) -> None:
    data = scanned_pdf(files / "scan-as-docx.pdf").read_bytes()
    assert list(read_docx("report.docx", data)) == [
        RawRecord("report.docx", problem="not a Word document: File is not a zip file")
    ]


def test_a_docx_with_damaged_xml_is_not_a_word_document(files: Path) -> None:
    data = damaged_docx(files / "damaged.docx").read_bytes()
    [record] = read_docx("damaged.docx", data)
    assert record.problem.startswith("not a Word document: damaged XML: ")


def test_a_docx_without_text_is_one_empty_record(files: Path) -> None:
    Document().save(str(files / "blank.docx"))
    data = (files / "blank.docx").read_bytes()
    assert list(read_docx("blank.docx", data)) == [RawRecord("blank.docx", "blank", "")]
