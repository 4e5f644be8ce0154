"""Real PDF and Word files for the format readers' tests, written with reportlab, python-docx
and Pillow: deterministic, and fast (tens of milliseconds each)."""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

from docx import Document
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table

HEADER = "ACME Handbook — Confidential"
HANDBOOK_TITLE = "ACME Employee Handbook"
TABLE_PAGE = 3
TABLE_ROWS = [
    ("Class", "Retention", "Owner"),
    ("A", "30 days", "Records office"),
    ("B", "90 days", "Legal team"),
    ("C", "365 days", "Finance"),
]
HYPHENATED_PAGE = 2
SCANNED_TEXT = "This page is only an image of text"
PASSWORD = "s3cret"

_TOPICS = [
    "Records retention", "Travel expenses", "Security badges", "Working hours", "Leave",
    "Equipment", "Training", "Health and safety", "Visitors", "Data protection",
]  # fmt: skip
_WORDS = [
    "audit", "ledger", "invoice", "archive", "policy", "review", "budget", "contract", "vendor",
    "access", "badge", "laptop", "meeting", "holiday", "report", "schedule", "office", "safety",
    "visitor", "training", "manager", "request",
]  # fmt: skip


def unique_sentence(n: int) -> str:
    """The sentence that only page `n` of the handbook holds."""
    return f"The retention period for class {n} records is {n}0 days."


def handbook_pdf(path: Path, pages: int = 5, title: str = HANDBOOK_TITLE) -> Path:
    """A handbook with a running header and a "Page N of M" footer on every page. Page N has a
    topic heading, `unique_sentence(N)` between two paragraphs (mid-page, where no running
    line is looked for) and a closing line naming its topic; page
    `HYPHENATED_PAGE` breaks "examination" across two lines, page `TABLE_PAGE` has a table."""
    styles = getSampleStyleSheet()
    body, heading = styles["BodyText"], styles["Heading2"]

    def running_lines(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 9)
        canvas.drawString(72, A4[1] - 40, HEADER)
        canvas.drawRightString(A4[0] - 72, 30, f"Page {doc.page} of {pages}")
        canvas.restoreState()

    story: list = []
    for n in range(1, pages + 1):
        topic = _TOPICS[(n - 1) % len(_TOPICS)]
        story += [
            Paragraph(f"{topic} ({n})", heading),
            Paragraph(_filler(n, 40), body),
            Paragraph(unique_sentence(n), body),
            Paragraph(_filler(n + 1, 30), body),
        ]
        if n == HYPHENATED_PAGE:
            story.append(
                Paragraph("Every record is kept ready for exam-<br/>ination by the auditors.", body)
            )
        if n == TABLE_PAGE:
            story += [Spacer(1, 6), Table(TABLE_ROWS), Spacer(1, 6)]
        story.append(Paragraph(f"This closes the {topic.lower()} part, number {n}.", body))
        if n < pages:
            story.append(PageBreak())
    doc = SimpleDocTemplate(str(path), pagesize=A4, title=title, topMargin=60, bottomMargin=60)
    doc.build(story, onFirstPage=running_lines, onLaterPages=running_lines)
    return path


def many_pages_pdf(path: Path, pages: int, first: int = 1) -> Path:
    """`pages` pages of varied text for a benchmark: drawn with the canvas, no layout engine.
    Page n's text is that of number `first + n - 1`: files with other `first`s differ."""
    canvas = Canvas(str(path), pagesize=A4, invariant=True)
    for n in range(1, pages + 1):
        _running_lines(canvas, n, pages)
        canvas.drawString(72, A4[1] - 65, unique_sentence(first + n - 1))
        words = _filler(first + n - 1, 600).split()
        for line in range(45):
            canvas.drawString(
                72, A4[1] - 80 - 15 * line, " ".join(words[line * 13 : line * 13 + 13])
            )
        canvas.showPage()
    canvas.save()
    return path


def notice_pdf(path: Path, pages: int) -> Path:
    """Short pages, each `unique_sentence(n)` under the running header and above a "Page N of
    M" footer: passages small enough for a tiny model's prompt."""
    canvas = Canvas(str(path), pagesize=A4, invariant=True)
    for n in range(1, pages + 1):
        _running_lines(canvas, n, pages)
        # The topic makes each page's line its own (one shape on every page is a running line).
        canvas.drawString(72, A4[1] - 80, f"{_TOPICS[n - 1]}. {unique_sentence(n)}")
        canvas.showPage()
    canvas.save()
    return path


def scanned_pdf(path: Path) -> Path:
    """One page that is only a picture of text: no text layer."""
    canvas = Canvas(str(path), pagesize=A4, invariant=True)
    _draw_scan(canvas)
    canvas.save()
    return path


def mixed_pdf(path: Path) -> Path:
    """Page 1 text, page 2 a scan, page 3 blank, page 4 text."""
    canvas = Canvas(str(path), pagesize=A4, invariant=True)
    for n in (1, 2, 3, 4):
        if n == 2:
            _draw_scan(canvas)
        elif n != 3:
            canvas.setFont("Helvetica", 11)
            canvas.drawString(72, A4[1] - 72, unique_sentence(n))
        canvas.showPage()
    canvas.save()
    return path


def encrypted_pdf(path: Path) -> Path:
    """A PDF that opens only with `PASSWORD`."""
    canvas = Canvas(str(path), pagesize=A4, encrypt=PASSWORD, invariant=True)
    canvas.drawString(72, A4[1] - 72, unique_sentence(1))
    canvas.showPage()
    canvas.save()
    return path


def corrupt_pdf(path: Path) -> Path:
    """A PDF cut off halfway (as by an interrupted copy), its tail replaced by garbage."""
    whole = BytesIO()
    canvas = Canvas(whole, pagesize=A4, invariant=True)
    canvas.drawString(72, A4[1] - 72, unique_sentence(1))
    canvas.showPage()
    canvas.save()
    data = whole.getvalue()
    path.write_bytes(data[: len(data) // 2] + bytes(range(256)))
    return path


def empty_pdf(path: Path) -> Path:
    """A well-formed PDF with no pages (written by hand: reportlab always makes one page)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


GUIDE_TITLE = "Install Guide"
GUIDE_TABLE = [("Setting", "Default", "Meaning"), ("port", "8080", "where it listens")]


def guide_docx(path: Path, title: str = GUIDE_TITLE) -> Path:
    """A Word guide: an intro, a Title then a Heading 1 at once (an empty section), Heading 1
    and Heading 2 sections with paragraphs, and a table inside the "Configure" section."""
    doc = Document()
    doc.core_properties.title = title
    doc.add_paragraph("This guide is for operators who run the service on their own machines.")
    doc.add_heading(title, level=0)
    doc.add_heading("Install", level=1)
    doc.add_paragraph("Download the package and unpack it into a folder of your choice.")
    doc.add_paragraph("Run the installer as an ordinary user, never as root.")
    doc.add_heading("Configure", level=1)
    doc.add_paragraph("Settings live in one file; these are the ones most people change:")
    table = doc.add_table(rows=0, cols=3)
    for row in GUIDE_TABLE:
        cells = table.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = value
    doc.add_paragraph("Restart the service after changing a setting.")
    doc.add_heading("Ports & firewalls", level=2)
    doc.add_paragraph("Open the port in the firewall so that clients can reach the service.")
    doc.save(str(path))
    return path


def damaged_docx(path: Path) -> Path:
    """A real .docx whose main part is cut off mid-element (malformed XML)."""
    whole, damaged = BytesIO(guide_docx(path).read_bytes()), BytesIO()
    with zipfile.ZipFile(whole) as src, zipfile.ZipFile(damaged, "w") as out:
        for name in src.namelist():
            data = src.read(name)
            out.writestr(name, data[: len(data) // 2] if name == "word/document.xml" else data)
    path.write_bytes(damaged.getvalue())
    return path


def fake_docx(path: Path) -> Path:
    """A zip of unrelated files with a .docx name."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "not a word document")
        z.writestr("data/values.csv", "a,b\n1,2\n")
    return path


def _running_lines(canvas: Canvas, n: int, pages: int) -> None:
    """The header and the "Page N of M" footer of page `n`; the body's font set after them."""
    canvas.setFont("Helvetica", 9)
    canvas.drawString(72, A4[1] - 40, HEADER)
    canvas.drawString(72, 30, f"Page {n} of {pages}")
    canvas.setFont("Helvetica", 11)


def _filler(n: int, count: int) -> str:
    """`count` words that differ from page to page (so no body line repeats across pages)."""
    words = [_WORDS[(n * 7 + i * (n % 5 + 3)) % len(_WORDS)] for i in range(count)]
    return "Staff " + " ".join(words) + "."


def _draw_scan(canvas: Canvas) -> None:
    image = Image.new("L", (1200, 200), 255)
    ImageDraw.Draw(image).text((20, 60), SCANNED_TEXT, fill=0, font=ImageFont.load_default(48))
    canvas.drawImage(ImageReader(image), 72, A4[1] - 200, width=450, height=75)
