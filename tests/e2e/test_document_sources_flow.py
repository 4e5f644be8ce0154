"""The documents people have, through the ingest_documents and embed_documents flows under
Prefect: the pages of an internal site from its sitemap (robots.txt honoured, a failing page
quarantined with its reason after retries), then a folder of PDF and Word files (a scan
quarantined as needing OCR), then a bucket on an S3-compatible server whose keys are kept in a
Prefect Secret block; each searchable with its URL, page or section as its source."""

from pathlib import Path
from pydoc_data.topics import topics

import boto3
import pytest
from prefect.blocks.system import Secret

from flows.embed import embed_documents
from flows.ingest import ingest_documents
from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import search
from tasks.clients.secrets import source_storage_options
from tasks.embed.params import EmbedParams
from tasks.ingest.params import IngestParams
from tasks.ingest.sources.web import DISALLOWED
from tasks.shared.settings import Settings

from document_files import guide_docx, handbook_pdf, scanned_pdf, unique_sentence
from services import s3_server
from web_site import Page, local_site, robots, sitemap

pytestmark = pytest.mark.e2e


def page(title: str, text: str) -> Page:
    return Page(
        f"<html><head><title>{title}</title><style>p{{color:red}}</style></head><body>"
        f"<nav><a href='/'>Home</a> | <a href='/faq'>FAQ</a></nav>"
        f"<main><h1>{title}</h1><p>{text}</p></main><footer>© Intranet team</footer></body></html>"
    )


def test_a_sites_pages_and_a_folder_of_pdf_and_word_are_ingested_and_found(
    prefect_harness, tmp_path: Path, settings: Settings
) -> None:
    pages = {
        "/robots.txt": robots(["/private/"]),
        "/sitemap.xml": sitemap(
            {
                "/docs/try": "2026-11-01",
                "/docs/with": None,
                "/private/salaries": None,
                "/down": None,
            }
        ),
        "/docs/try": page("The try statement", topics["try"][:1500]),
        "/docs/with": page("The with statement", topics["with"][:1500]),
        "/private/salaries": page("Salaries", "Nobody should index this page."),
        "/down": Page("oops", status=500),
    }
    with local_site(pages) as site:
        params = IngestParams(sitemap=site.url("/sitemap.xml"), fetch_timeout_s=5)
        web = ingest_documents(params)
        assert site.hits("/private/salaries") == 0 and site.hits("/down") == 3  # 1 + 2 retries
    assert (web.read, web.accepted, web.quarantined) == (4, 2, 2)
    reasons = {q.source.removeprefix(site.base): q.reasons for q in web.quarantined_rows}
    assert reasons == {"/private/salaries": [DISALLOWED], "/down": ["HTTP 500 after 3 attempts"]}
    embed_documents(EmbedParams(snapshot_id=web.snapshot_id, chunk_tokens=96))
    with ChunkIndex(settings) as index:
        hit = search("How do I handle an exception?", top_k=1, settings=settings, index=index)[0]
        assert hit.source == site.url("/docs/try") and "Intranet team" not in hit.text

    folder = tmp_path / "shared-drive"
    folder.mkdir()
    handbook_pdf(folder / "handbook.pdf", pages=5)
    guide_docx(folder / "guide.docx")
    scanned_pdf(folder / "scan.pdf")
    files = ingest_documents(IngestParams(source_dir=str(folder)))
    assert files.reconciles and files.reasons == {"no text layer": 1}
    embed_documents(EmbedParams(snapshot_id=files.snapshot_id, chunk_tokens=96))
    with ChunkIndex(settings) as index:
        hits = search(unique_sentence(2), top_k=5, settings=settings, index=index)
        assert next(h for h in hits if unique_sentence(2) in h.text).source == "handbook.pdf#page=2"
        hit = search("Which port must the firewall open?", top_k=1, settings=settings, index=index)
    assert hit[0].source == "guide.docx#section=Ports%20%26%20firewalls"


def test_a_bucket_is_read_with_the_keys_of_a_prefect_secret_block(
    prefect_harness, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with s3_server(tmp_path / "s3") as s3:
        env = s3.env
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        body = handbook_pdf(tmp_path / "handbook.pdf", pages=3).read_bytes()
        client.put_object(Bucket="llmops", Key="policies/handbook.pdf", Body=body)
        for key in env:  # the machine knows neither the store nor its keys: Prefect does
            monkeypatch.delenv(key, raising=False)
        keys = {"key": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"]}
        Secret(value={**keys, "endpoint_url": env["AWS_ENDPOINT_URL"]}).save("docs-bucket")
        monkeypatch.setenv("LLMOPS_SOURCE_STORAGE_SECRET", "docs-bucket")

        report = ingest_documents(IngestParams(source_dir=f"{s3.url}/policies"))
        assert (report.read, report.accepted, report.quarantined) == (3, 3, 0)
    embed_documents(EmbedParams(snapshot_id=report.snapshot_id, chunk_tokens=96))
    with ChunkIndex(settings) as index:
        hits = search(unique_sentence(3), top_k=5, settings=settings, index=index)
    assert next(h for h in hits if unique_sentence(3) in h.text).source == "handbook.pdf#page=3"


def test_storage_options_set_directly_win_over_the_secrets(
    prefect_harness, settings: Settings
) -> None:
    Secret(value={"key": "k", "endpoint_url": "http://old:9000"}).save("store", overwrite=True)
    named = settings.model_copy(
        update={
            "source_storage_secret": "store",
            "source_storage_options": {"endpoint_url": "http://new:9000"},
        }
    )
    assert source_storage_options(named) == {"key": "k", "endpoint_url": "http://new:9000"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "Unable to find block document"), ("just-a-key", "must hold a JSON object")],
)
def test_a_missing_or_malformed_storage_secret_is_a_clear_error(
    prefect_harness, settings: Settings, value: str | None, reason: str
) -> None:
    name = f"storage-{'none' if value is None else 'string'}"
    if value is not None:
        Secret(value=value).save(name, overwrite=True)
    named = settings.model_copy(update={"source_storage_secret": name})
    with pytest.raises(ValueError, match=reason) as error:
        source_storage_options(named)
    assert repr(name) in str(error.value)
