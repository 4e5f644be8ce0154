"""The ingest rails on single records: what is quarantined, what is redacted, what the content
id is then, how findings are counted and shown, and that a bad policy is a clear error."""

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from tasks.core.documents import prepare_batch, reason_kind
from tasks.core.rails import IngestRails
from tasks.core.text import content_id
from tasks.ingest.documents import findings_by_kind
from tasks.ingest.params import IngestParams, IngestReport
from tasks.ingest.records import RawRecord
from tasks.ingest.tasks import ingest_source
from tasks.shared.caching import ingest_key

pytestmark = pytest.mark.unit

AT = datetime(2026, 1, 1, tzinfo=UTC)
EMAIL = "ana.lopez@acme-corp.io"
PHONE = "+1 415 555 0134"


def private_key_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def deploy_note(pem: str) -> str:
    return f"Deploying the site\n\nThe deploy key:\n{pem}\nKeep it safe."


def test_a_private_key_quarantines_the_document_with_its_text_redacted() -> None:
    pem = private_key_pem()
    batch = prepare_batch([RawRecord("deploy.md", "deploy", deploy_note(pem))], {}, "r1", AT)

    assert batch.rows == []
    [q] = batch.quarantined
    assert q["reasons"] == ["secret: private_key at line 4"]
    assert "[REDACTED:PRIVATE_KEY]" in q["text"] and "PRIVATE KEY-----" not in q["text"]
    assert pem.splitlines()[1] not in q["text"]
    assert batch.findings == Counter({("private_key", "quarantine"): 1})


def test_personal_data_is_redacted_and_the_id_is_that_of_the_redacted_text() -> None:
    text = f"Contact the maintainer at {EMAIL} or on {PHONE} about the release."
    [row] = prepare_batch([RawRecord("people.md", "people", text)], {}, "r1", AT).rows

    assert row["text"] == (
        "Contact the maintainer at [REDACTED:EMAIL] or on [REDACTED:PHONE] about the release."
    )
    assert row["doc_id"] == content_id(row["text"])
    assert row["n_chars"] == len(row["text"])


def test_a_kind_override_keeps_the_document_with_the_placeholder() -> None:
    pem = private_key_pem()
    rails = IngestRails(kinds={"private_key": "redact"})
    batch = prepare_batch([RawRecord("deploy.md", "d", deploy_note(pem))], {}, "r1", AT, rails)

    [row] = batch.rows
    assert not batch.quarantined
    assert "The deploy key:\n[REDACTED:PRIVATE_KEY]\n\nKeep it safe." in row["text"]
    assert batch.findings == Counter({("private_key", "redact"): 1})


def test_allowed_kinds_are_kept_as_they_are_and_still_counted() -> None:
    text = f"Write to {EMAIL} with questions about the project."
    rails = IngestRails(personal_data="allow")
    batch = prepare_batch([RawRecord("a.md", "a", text)], {}, "r1", AT, rails)

    assert batch.rows[0]["text"] == text
    assert batch.findings == Counter({("email", "allow"): 1})


def test_the_title_is_screened_too() -> None:
    batch = prepare_batch(
        [
            RawRecord("notes.jsonl#L1", f"Mail from {EMAIL}", "The meeting moved to Thursday."),
            RawRecord("notes.jsonl#L2", "token ghp_" + "a1B2" * 9, "An ordinary paragraph."),
        ],
        {},
        "r1",
        AT,
    )
    [row] = batch.rows
    assert row["title"] == "Mail from [REDACTED:EMAIL]"
    [q] = batch.quarantined
    assert q["reasons"] == ["secret: github_token at line 1 of the title"]
    assert batch.findings == Counter({("email", "redact"): 1, ("github_token", "quarantine"): 1})


def test_rail_reasons_count_by_category_and_kind() -> None:
    assert reason_kind("secret: private_key at line 3") == "secret: private_key"
    assert reason_kind("secret: github_token at line 1 of the title") == "secret: github_token"
    assert reason_kind("personal_data: email at line 12") == "personal_data: email"


def test_findings_are_reported_by_kind_and_action() -> None:
    counts = Counter({("email", "redact"): 3, ("private_key", "quarantine"): 1})
    findings = findings_by_kind(counts + Counter({("email", "allow"): 1}))
    assert findings == {"email": {"allow": 1, "redact": 3}, "private_key": {"quarantine": 1}}

    report = IngestReport(
        run_id="r1",
        source_root="/data",
        snapshot_id="s1",
        read=4,
        accepted=3,
        quarantined=1,
        new_documents=3,
        reasons={"secret: private_key": 1},
        seconds=0.5,
        findings=findings,
    )
    text = report.markdown()
    assert "| email | personal data | 0 | 3 | 1 |" in text
    assert "| private_key | secret | 1 | 0 | 0 |" in text
    assert "| secret: private_key | 1 |" in text
    nothing = report.model_copy(update={"findings": {}}).markdown()
    assert "No secret or personal data was found." in nothing


@pytest.mark.parametrize(
    ("rails", "message"),
    [
        ({"kinds": {"privat_key": "redact"}}, "unknown kinds \\['privat_key'\\]"),
        ({"secrets": "delete"}, "'quarantine', 'redact' or 'allow'"),
        ({"personal": "redact"}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_policy_is_a_clear_validation_error(rails: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IngestParams.model_validate({"rails": rails})


def test_another_policy_is_another_cache_key(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some text to ingest.")
    ctx = SimpleNamespace(task=ingest_source)

    def key(params: IngestParams) -> str:
        return ingest_key(ctx, {"root": tmp_path, "params": params})

    default = key(IngestParams())
    assert key(IngestParams()) == default
    assert key(IngestParams(rails=IngestRails(kinds={"private_key": "redact"}))) != default
    assert key(IngestParams(rails=IngestRails(personal_data="allow"))) != default
