"""The compression report's table fits the Prefect UI, its gate column first in view."""

import pytest

from tasks.compress.params import UNCOMPRESSED, CandidateRow, CompressReport, comparison_markdown

pytestmark = pytest.mark.unit

# 160 characters of markdown: at a 1400 px window the Prefect UI leaves about 1100 px to an
# artifact; the pipes and spaces of ten columns (about 30 characters) become cell padding,
# and the other ~130 characters at about 7 px each, plus the padding, take about that width.
MAX_ROW = 160
BROKEN = [
    "perplexity +12.34% > +3.00% allowed",
    "size -12.3% < -40.0% required",
    "token_f1 0.123 vs 0.456: worse by more than 0.030",
    "groundedness not measured on both: cannot show it kept its answers",
]


def row(name: str, scale: float, broken: list[str] | None = None) -> CandidateRow:
    """A candidate with the widest figures a real run gives (large model, slow CPU)."""
    return CandidateRow(
        name=name,
        method=name.split("-")[0],
        folder=f"/home/someone/.llmops/compress/{'a' * 32}/{name}",
        size_bytes=int(13_000 * 2**20 * scale),
        parameters=int(7_000_000_000 * scale),
        latency_ms_p50=1234.56 * scale,
        tokens_per_s=0.8,
        perplexity=12345.67 * (2 - scale),
        answers={"token_f1": 0.123, "groundedness": 0.456, "empty": 0.05},
        broken=broken or [],
    )


def report(chosen: str = "int8-dynamic") -> CompressReport:
    return CompressReport(
        run_id="f" * 32,
        source_run_id="e" * 32,
        snapshot_id="d" * 64,
        baseline=row(UNCOMPRESSED, 1.0),
        candidates=[
            row("int8-dynamic", 0.3),
            row("structured-heads-25%+recovery", 0.75, BROKEN),
            row("magnitude-50%+recovery", 0.99, BROKEN[:1]),
        ],
        chosen=chosen,
        lineage={},
    )


def table(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_the_gate_is_among_the_first_columns_and_no_row_is_too_wide() -> None:
    header, _, *rows = table(comparison_markdown(report()))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert "gate" in columns[:3]
    assert len(rows) == 4
    for line in [header, *rows]:
        assert len(line) <= MAX_ROW, f"{len(line)} characters: {line}"


def test_every_figure_a_person_needs_is_in_the_table() -> None:
    header, _, *rows = table(comparison_markdown(report()))
    for column in ("candidate", "size", "ms/token", "perplexity", "token F1", "grounded"):
        assert column in header
    gates = [line.split("|")[2].strip() for line in rows]
    assert gates == ["baseline", "pass, chosen", "**fail** (4)", "**fail** (1)"]
    assert "3900.0 MiB x0.30" in rows[1] and "370.37 x0.30" in rows[1]
    assert "+70.0%" in rows[1] and "0.123 | 0.456 | 0.050" in rows[1] and "2.10B" in rows[1]


def test_reasons_and_paths_are_listed_under_the_table() -> None:
    text = comparison_markdown(report())
    below = text.split("\n\n")[-3:]
    reasons = "\n".join(below)
    assert f"- structured-heads-25%+recovery: {'; '.join(BROKEN)}" in reasons
    assert "- magnitude-50%+recovery: perplexity +12.34% > +3.00% allowed" in reasons
    assert f"`{report().chosen_row.folder}`" in reasons
    assert not any("required" in line or "/home/" in line for line in table(text))


def test_nothing_passing_says_the_uncompressed_model_is_kept() -> None:
    text = comparison_markdown(report(chosen=UNCOMPRESSED))
    assert "(no candidate passed the gate)" in text
    assert table(text)[2].split("|")[2].strip() == "baseline, chosen"
