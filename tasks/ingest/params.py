"""Ingest stage: files → normalised, validated documents in the lake; bad rows → quarantine."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class IngestParams(BaseModel):
    """What to ingest and the rules a document must pass."""

    source_dir: str | None = Field(
        None, description="Folder of .txt/.md/.html/.jsonl/.parquet files; empty = demo corpus."
    )
    demo_topics: list[str] | None = Field(
        None, description="Demo corpus: pydoc topics to include (empty = all of them)."
    )
    demo_modules: list[str] | None = Field(
        None, description="Demo corpus: standard-library modules whose docs to include."
    )
    text_field: str = Field("text", description="Field holding the text in .jsonl/.parquet.")
    min_chars: int = Field(20, ge=1, description="Shortest accepted document, in characters.")
    max_chars: int = Field(2_000_000, ge=1, description="Longest accepted document.")
    max_file_bytes: int = Field(20_000_000, ge=1, description="Larger single files are refused.")
    batch_size: int = Field(500, ge=1, description="Documents validated and written at a time.")


SHOWN_QUARANTINE = 50  # rows a report lists; the lake's quarantine holds them all


class QuarantinedRow(BaseModel):
    source: str
    reasons: list[str]

    @field_validator("source")
    @classmethod
    def _encodable(cls, source: str) -> str:
        # A file name that is not UTF-8 carries lone surrogates, which JSON results refuse.
        return source.encode("utf-8", "backslashreplace").decode("utf-8")


class IngestReport(BaseModel):
    run_id: str
    source_root: str
    snapshot_id: str
    read: int
    accepted: int
    quarantined: int
    new_documents: int
    reasons: dict[str, int]
    seconds: float
    quarantined_rows: list[QuarantinedRow] = Field(
        default_factory=list,
        description=f"This run's first {SHOWN_QUARANTINE} quarantined rows, including those "
        "an earlier run already wrote to the lake's quarantine.",
    )

    @property
    def reconciles(self) -> bool:
        return self.read == self.accepted + self.quarantined

    def markdown(self) -> str:
        """The report a person reads in the Prefect UI: counts, reasons, quarantined rows."""
        rate = self.read / max(self.seconds, 1e-9)
        text = (
            f"# Ingest {self.run_id}\n\n"
            f"Source: `{self.source_root}`  \nSnapshot: `{self.snapshot_id}`\n\n"
            "| read | accepted | quarantined | new documents | seconds | docs/s |\n"
            "|---:|---:|---:|---:|---:|---:|\n"
            f"| {self.read} | {self.accepted} | {self.quarantined} | {self.new_documents} "
            f"| {self.seconds} | {rate:.1f} |\n\n"
            f"read = accepted + quarantined: {'yes' if self.reconciles else '**no**'}\n"
        )
        if not self.quarantined:
            return text + "\nNothing was quarantined.\n"
        reasons = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = len(self.quarantined_rows)
        which = f"first {shown} of {self.quarantined}" if shown < self.quarantined else "all"
        return (
            text
            + "\n## Quarantine reasons\n\n| reason | rows |\n|---|---:|\n"
            + "".join(f"| {_cell(k)} | {n} |\n" for k, n in reasons)
            + f"\n## Quarantined rows ({which})\n\n| source | reasons |\n|---|---|\n"
            + "".join(
                f"| `{_cell(q.source)}` | {_cell('; '.join(q.reasons))} |\n"
                for q in self.quarantined_rows
            )
        )


def _cell(text: str) -> str:
    # A pipe or a line break inside a cell would end the cell or the table.
    return " ".join(text.replace("|", "\\|").split())
