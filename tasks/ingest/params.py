"""Ingest stage: files → normalised, validated documents in the lake; bad rows → quarantine."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator

from tasks.core.rails import SECRET_KINDS, IngestRails


class IngestParams(BaseModel):
    """What to ingest and the rules a document must pass."""

    source_dir: str | None = Field(
        None,
        description="Folder or object-store URL (s3://bucket/prefix, gs://…; credentials from "
        "the platform's settings) of .pdf/.docx/.txt/.md/.html/.jsonl/.parquet files; empty "
        "(and no URLs) = the demo corpus.",
    )
    urls: list[str] | None = Field(
        None, description="Web pages to ingest (each page's URL is its source)."
    )
    sitemap: str | None = Field(
        None, description="A sitemap (or sitemap index) URL whose pages to ingest."
    )
    read_concurrency: int = Field(
        8, ge=1, le=64, description="Files or pages read at a time (object stores, web sites)."
    )
    fetch_timeout_s: float = Field(
        20.0, gt=0, description="Web pages: seconds before a request is given up (retried)."
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
    max_file_bytes: int = Field(
        100_000_000, ge=1, description="Larger files (or pages) are quarantined unread."
    )
    batch_size: int = Field(500, ge=1, description="Documents validated and written at a time.")
    rails: IngestRails = Field(
        default_factory=IngestRails,
        title="Secrets and personal data",
        description="What happens to a document holding a secret (keys, tokens, passwords, "
        "connection strings) or personal data (e-mail addresses, phone numbers, payment "
        "cards, IBANs, national ids, IP addresses): quarantine it with the reason, redact "
        "the span with a typed placeholder such as [REDACTED:EMAIL], or allow it. `kinds` "
        'overrides one kind, e.g. {"private_key": "redact", "ip_address": "allow"}.',
    )

    @model_validator(mode="after")
    def _one_source(self) -> IngestParams:
        if self.source_dir and (self.urls or self.sitemap):
            raise ValueError(
                "give a folder/URL (source_dir) or web pages (urls, sitemap), not both"
            )
        return self

    @property
    def is_web(self) -> bool:
        return bool(self.urls or self.sitemap)


SHOWN_QUARANTINE = 50  # rows a report lists; the lake's quarantine holds them all
ACTIONS = ("quarantine", "redact", "allow")  # the rails' actions, as the report's columns


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
    unchanged: int = Field(
        0,
        description="Items (files, objects, pages) unchanged since the last run over the same "
        "source, not read again: their documents stay in the snapshot.",
    )
    reasons: dict[str, int]
    seconds: float
    findings: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Secrets and personal data found, by kind, then by the action taken "
        "(quarantine, redact, allow): how many spans, in every document read.",
    )
    quarantined_rows: list[QuarantinedRow] = Field(
        default_factory=list,
        description=f"This run's first {SHOWN_QUARANTINE} quarantined rows, including those "
        "an earlier run already wrote to the lake's quarantine.",
    )

    @property
    def reconciles(self) -> bool:
        return self.read == self.accepted + self.quarantined

    def markdown(self) -> str:
        """The report a person reads in the Prefect UI: counts, secrets and personal data
        found, quarantine reasons and rows."""
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
        if self.unchanged:
            text += f"\n{self.unchanged} unchanged since the last run, not read again.\n"
        text += self._findings_markdown()
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

    def _findings_markdown(self) -> str:
        """Secrets and personal data by kind: how many spans were quarantined, redacted or
        allowed."""
        if not self.findings:
            return "\nNo secret or personal data was found.\n"
        rows = "".join(
            f"| {kind} | {'secret' if kind in SECRET_KINDS else 'personal data'} "
            + "".join(f"| {actions.get(a, 0)} " for a in ACTIONS)
            + "|\n"
            for kind, actions in sorted(self.findings.items())
        )
        return (
            "\n## Secrets and personal data found\n\n"
            "Spans found, by what the ingest policy did with them: a quarantined document is "
            "kept out of the index and the training data; a redacted span is replaced by "
            "`[REDACTED:<KIND>]` everywhere.\n\n"
            "| kind | category | quarantined | redacted | allowed |\n|---|---|---:|---:|---:|\n"
            + rows
        )


def _cell(text: str) -> str:
    # A pipe or a line break inside a cell would end the cell or the table.
    return " ".join(text.replace("|", "\\|").split())
