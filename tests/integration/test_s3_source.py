"""Documents in object storage, against a real S3-compatible server started here (moto's,
`services.s3_server`): PDF, Word and text objects are listed and read through fsspec, screened,
validated, embedded and found with their page; a second run reads only what changed; an
object gone between listing and reading is quarantined; credentials come from settings."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import search
from tasks.core.citations import cite
from tasks.embed.index import embed_snapshot
from tasks.embed.params import EmbedParams
from tasks.ingest.documents import ingest, ingest_folder
from tasks.ingest.params import IngestParams
from tasks.ingest.sources.files import GONE, file_source
from tasks.shared import lake
from tasks.shared.settings import Settings

from document_files import corrupt_pdf, guide_docx, handbook_pdf, unique_sentence
from services import Server, s3_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@dataclass
class Bucket:
    """A prefix of its own in the test server's bucket."""

    client: Any
    prefix: str
    url: str

    def put(self, name: str, body: bytes) -> None:
        self.client.put_object(Bucket="llmops", Key=f"{self.prefix}/{name}", Body=body)

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket="llmops", Key=f"{self.prefix}/{name}")


@pytest.fixture
def bucket(s3: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """The client's keys in the standard variables, as on a machine set up for the store."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return Bucket(boto3.client("s3"), tmp_path.name, f"{s3.url}/{tmp_path.name}")


def files(tmp_path: Path) -> dict[str, bytes]:
    made = tmp_path / "made"
    made.mkdir()
    return {
        "handbook.pdf": handbook_pdf(made / "handbook.pdf", pages=5).read_bytes(),
        "guide.docx": guide_docx(made / "guide.docx").read_bytes(),
        "notes/with.txt": b"The with statement wraps a block in a context manager's methods.",
        "broken.pdf": corrupt_pdf(made / "broken.pdf").read_bytes(),
    }


def test_a_bucket_of_pdf_word_and_text_is_ingested_embedded_and_cited_by_page(
    bucket: Bucket, tmp_path: Path, settings: Settings, embedder
) -> None:
    for name, body in files(tmp_path).items():
        bucket.put(name, body)
    report = ingest_folder(bucket.url, IngestParams(source_dir=bucket.url), settings)
    assert report.reconciles and report.source_root == bucket.url
    assert report.reasons == {"unreadable PDF": 1}
    members = lake.read_snapshot(settings.snapshots_dir, report.snapshot_id)
    sources = set(members["source"])
    assert {f"handbook.pdf#page={n}" for n in range(1, 6)} <= sources
    assert "notes/with.txt" in sources and any(s.startswith("guide.docx#section=") for s in sources)

    index = ChunkIndex(settings)
    index.apply()
    embed_snapshot(EmbedParams(snapshot_id=report.snapshot_id), settings, index, embedder)
    hits = search(unique_sentence(4), top_k=5, settings=settings, index=index)
    hit = next(h for h in hits if unique_sentence(4) in h.text)  # the pages read much alike
    assert hit.source == "handbook.pdf#page=4" and cite(hit.source) == "handbook.pdf, page 4"
    index.close()


def test_a_second_run_reads_only_the_objects_that_changed(
    bucket: Bucket, tmp_path: Path, settings: Settings
) -> None:
    made = files(tmp_path)
    for name, body in made.items():
        bucket.put(name, body)
    params = IngestParams(source_dir=bucket.url)
    first = ingest_folder(bucket.url, params, settings)
    again = ingest_folder(bucket.url, params, settings)
    assert (again.read, again.unchanged) == (0, 4)
    assert again.snapshot_id == first.snapshot_id  # the unchanged documents stay in it

    bucket.put("notes/with.txt", b"The with statement now also names the zebra protocol, striped.")
    bucket.delete("guide.docx")
    changed = ingest_folder(bucket.url, params, settings)
    assert (changed.read, changed.accepted, changed.unchanged) == (1, 1, 2)
    members = set(lake.read_snapshot(settings.snapshots_dir, changed.snapshot_id)["source"])
    assert "notes/with.txt" in members and not any(s.startswith("guide.docx") for s in members)
    assert {f"handbook.pdf#page={n}" for n in range(1, 6)} <= members

    stricter = ingest_folder(
        bucket.url, IngestParams(source_dir=bucket.url, min_chars=30), settings
    )
    assert stricter.unchanged == 0  # another policy reads everything again


def test_an_object_gone_between_listing_and_reading_is_quarantined(
    bucket: Bucket, settings: Settings
) -> None:
    bucket.put("kept.txt", b"This document stays where it was listed, and is read.")
    bucket.put("gone.txt", b"This document is deleted after the listing, before the read.")
    params = IngestParams(source_dir=bucket.url)
    source = file_source(bucket.url, params, settings)
    listed = list(source.list())
    bucket.delete("gone.txt")

    class Listed:  # the source, with the listing taken before the delete
        root = source.root

        def list(self):
            return iter(listed)

        def read(self, items):
            return source.read(items)

    report = ingest(Listed(), params, settings)
    assert (report.read, report.accepted, report.quarantined) == (2, 1, 1)
    assert [(q.source, q.reasons) for q in report.quarantined_rows] == [("gone.txt", [GONE])]


def test_credentials_come_from_the_settings_not_the_parameters(
    s3: Server, bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket.put("a.txt", b"A document read with the keys the platform's settings hold.")
    for key in s3.env:
        monkeypatch.delenv(key)
    options = {
        "endpoint_url": s3.env["AWS_ENDPOINT_URL"],
        "key": s3.env["AWS_ACCESS_KEY_ID"],
        "secret": s3.env["AWS_SECRET_ACCESS_KEY"],
    }
    settings = Settings(home=tmp_path / "home", source_storage_options=options)
    report = ingest_folder(bucket.url, IngestParams(source_dir=bucket.url), settings)
    assert (report.read, report.accepted) == (1, 1)
    assert "source_storage_options" not in IngestParams.model_fields
