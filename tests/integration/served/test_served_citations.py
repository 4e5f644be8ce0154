"""A PDF in the served world's corpus: ingested page by page and synced into the live index as
the nightly would; a question answered from page N names page N in `sources`."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from document_files import notice_pdf, unique_sentence
from worlds import MODEL, Service, in_rag_docs, post

pytestmark = pytest.mark.integration
PAGE = 4


@pytest.fixture
def handbook(service: Service, embedder) -> Iterator[Path]:
    document = notice_pdf(service.settings.home / "rag-docs" / "handbook.pdf", pages=5)
    with in_rag_docs(service.settings, embedder, document):
        yield document


def test_an_answer_from_page_n_of_a_pdf_cites_page_n(service: Service, handbook: Path) -> None:
    question = f"How long is the retention period for class {PAGE} records?"
    ask = {"model": MODEL, "prompt": question, "rag": True, "top_k": 5, "max_tokens": 8}
    with service.client() as c:
        r = post(c, "/v1/completions", ask, **{"x-llmops-version": "1"})
    assert r.status_code == 200, r.text
    sources = r.json()["sources"]
    assert any(unique_sentence(PAGE) in s["text"] for s in sources), (r.json(), sources)
    cited = next(s for s in sources if unique_sentence(PAGE) in s["text"])
    assert cited["source"] == f"handbook.pdf#page={PAGE}" and cited["page"] == PAGE
    assert cited["citation"] == f"handbook.pdf, page {PAGE}" and cited["section"] is None
