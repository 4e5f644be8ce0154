"""PDF extraction, the object-store source and where ingest time goes, each against a baseline
measured in the same run. Corpus, written here: PDFs (`tests/document_files.many_pages_pdf`,
6 x 50 pages, every page its own text; quick 3 x 8), .txt notes (numbered pydoc topics, 200;
quick 40), Word guides (`guide_docx`, 4; quick 2). Figures and ratios only: the issue sets no goal.

1. PDF extraction: `read_file` (a .pdf's bytes go to `read_pdf`) over every PDF, page-cached;
   pages/s from the median run. Baseline: the same pages' text (as `read_pdf` gives it), a .txt
   file per page, through `read_file`. Memory, per PDF in a fresh interpreter after a 1-page
   warm-up: peak RSS growth of one `read_file` (`VmHWM`, the kernel's exact high-water mark
   with PDFium's memory, reset to RSS by /proc/self/clear_refs just before, minus that RSS),
   then the Python heap's peak (`tracemalloc`) over `read_pdf` of the bytes alone.
2. Object-store source: `FileSource.list()` + `read()` of every file from moto's S3 server on
   loopback (no network latency for concurrency to hide; moto shares the CPUs) against the
   same local folder, at the default `read_concurrency` and at 1; files/s from the median run.
   Incremental: `ingest_folder` over the bucket, then again over the unchanged bucket.
3. Where ingest time goes: one `ingest` of the local folder (fresh state, after a warm-up
   ingest), its source wrapped to time `list()` and each `next()` of `read()`, i.e. the time
   ingest waits for records (reading that overlaps validation on reader threads is not in it:
   "reading alone" from 2 is shown too); the rest of ingest (normalise, screen, validate,
   write) is the remainder. Then `embed_snapshot` (chunk, encode, write), model preloaded.

    python benchmarks/bench_documents.py [--quick] [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import _common

from tasks.clients.embedder import load_embedder
from tasks.clients.feature_store import ChunkIndex
from tasks.embed.index import embed_snapshot
from tasks.embed.params import EmbedParams
from tasks.ingest.documents import ingest, ingest_folder
from tasks.ingest.formats import read_file
from tasks.ingest.formats.pdf import read_pdf
from tasks.ingest.params import IngestParams
from tasks.ingest.records import Item, RawRecord
from tasks.ingest.sources import Source
from tasks.ingest.sources.files import file_source
from tasks.shared.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

MB = 1024 * 1024
LIMIT = IngestParams().max_file_bytes
CONCURRENCY = IngestParams().read_concurrency
MEMORY_CHILD = """
import json, sys, tracemalloc
from tasks.ingest.formats import read_file
from tasks.ingest.formats.pdf import read_pdf
warm, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
def kb(key):
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith(key))
def read(p):
    return sum(1 for _ in read_file(p, lambda: open(p, "rb"), None, max_file_bytes=limit))
read(warm)
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS (Linux >= 4.0)
rss, pages = kb("VmRSS:"), read(path)
grown, data = (kb("VmHWM:") - rss) / 1024, open(path, "rb").read()
tracemalloc.start()
list(read_pdf(path, data))
heap = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps({"pages": pages, "rss_growth_mb": grown, "heap_peak_mb": heap}))
"""


def write_corpus(tmp: Path, quick: bool) -> tuple[Path, Path, list[Path]]:
    """(corpus folder, folder of the PDF pages' text as .txt, the PDFs)."""
    from document_files import guide_docx, many_pages_pdf

    n_pdfs, pages, notes, word = (3, 8, 40, 2) if quick else (6, 50, 200, 4)
    corpus, twin = tmp / "corpus", tmp / "twin"
    for folder in (corpus / "pdf", corpus / "notes", corpus / "word", twin):
        folder.mkdir(parents=True)
    pdfs = [
        many_pages_pdf(corpus / "pdf" / f"report-{i}.pdf", pages, first=i * pages + 1)
        for i in range(n_pdfs)
    ]
    for pdf in pdfs:
        for n, record in enumerate(read_pdf(pdf.name, pdf.read_bytes()), 1):
            (twin / f"{pdf.stem}-{n:03d}.txt").write_text(record.text or "", encoding="utf-8")
    topics = sorted(_common.PYDOC_TOPICS)
    for i in range(notes):
        text = f"Note {i}.\n\n" + _common.PYDOC_TOPICS[topics[i % len(topics)]][:3000]
        (corpus / "notes" / f"note-{i:03d}.txt").write_text(text, encoding="utf-8")
    for i in range(word):
        guide_docx(corpus / "word" / f"guide-{i}.docx", title=f"Install Guide {i}")
    return corpus, twin, pdfs


def read_paths(paths: list[Path]) -> tuple[float, int]:
    started, records = time.perf_counter(), 0
    for path in paths:
        opener = partial(open, path, "rb")
        records += sum(1 for _ in read_file(path.name, opener, None, max_file_bytes=LIMIT))
    return time.perf_counter() - started, records


def pdf_extraction(pdfs: list[Path], twin: Path, warm: Path, runs: int) -> dict[str, Any]:
    texts = sorted(twin.glob("*.txt"))
    read_paths(pdfs), read_paths(texts)  # warm-up: imports, page cache
    times: dict[str, list[float]] = {"pdf": [], "txt": []}
    for _ in range(runs):
        for kind, paths in (("pdf", pdfs), ("txt", texts)):
            seconds, pages = read_paths(paths)  # as many pages as .txt files
            times[kind].append(seconds)
    memory = []
    for pdf in pdfs:
        args = [sys.executable, "-c", MEMORY_CHILD, str(warm), str(pdf), str(LIMIT)]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        memory.append({"file": pdf.name, "mb": pdf.stat().st_size / MB, **json.loads(out)})
    rate = {kind: pages / statistics.median(t) for kind, t in times.items()}
    return {"pages": pages, "seconds": times, "pages_per_s": rate, "memory": memory}


READS = ["source", "concurrency", "files", "records", "problems", "list s", "s", "files/s"]


def read_source(location: str, concurrency: int, settings: Settings) -> list[Any]:
    """[files, records, problems, listing s, listing + reading s] of one `read(list())`."""
    source = file_source(location, IngestParams(read_concurrency=concurrency), settings)
    started = time.perf_counter()
    items = list(source.list())
    listed, records = time.perf_counter(), list(source.read(items))
    problems = sum(r.problem is not None for r in records)
    return [len(items), len(records), problems, listed - started, time.perf_counter() - started]


def object_store(corpus: Path, tmp: Path, runs: int) -> dict[str, Any]:
    import boto3

    from services import s3_server

    settings = Settings(home=tmp / "home-s3")
    with s3_server(tmp / "s3") as server:
        os.environ.update(server.env)
        client, url = boto3.client("s3"), f"{server.url}/corpus"
        for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
            key = f"corpus/{path.relative_to(corpus).as_posix()}"
            client.put_object(Bucket="llmops", Key=key, Body=path.read_bytes())
        where = {"local": str(corpus), "s3": url}
        cases = [(name, c) for name in where for c in (CONCURRENCY, 1)]
        for name, c in cases:  # warm-up: the S3 client's imports and connection pool
            read_source(where[name], c, settings)
        found = [[read_source(where[n], c, settings) for n, c in cases] for _ in range(runs)]
        params = IngestParams(source_dir=url)
        first, again = ingest_folder(url, params, settings), ingest_folder(url, params, settings)
        for key in server.env:
            os.environ.pop(key)
    reads, rate = [], {}
    for i, (name, c) in enumerate(cases):
        files, records, problems, _, _ = found[-1][i]
        list_s, total = (statistics.median(run[i][k] for run in found) for k in (3, 4))
        rate[name, c] = files / total
        row = [name, c, files, records, problems, list_s, total, rate[name, c]]
        reads.append(dict(zip(READS, row, strict=True)))
    return {
        "reads": reads,
        "s3_to_local": {c: rate["s3", c] / rate["local", c] for c in (CONCURRENCY, 1)},
        "s3_concurrency_gain": rate["s3", CONCURRENCY] / rate["s3", 1],
        "first_run": first.model_dump(include={"read", "accepted", "quarantined", "seconds"}),
        "re_run": again.model_dump(include={"read", "unchanged", "seconds"}),
        "re_run_to_first": again.seconds / first.seconds,
    }


class TimedSource:
    """A source whose listing and the waits on its records are timed."""

    def __init__(self, inner: Source) -> None:
        self.inner, self.root = inner, inner.root
        self.list_s = self.read_s = 0.0

    def list(self) -> Iterator[Item]:
        started, items = time.perf_counter(), list(self.inner.list())
        self.list_s += time.perf_counter() - started
        return iter(items)

    def read(self, items: Iterable[Item]) -> Iterator[RawRecord]:
        records = self.inner.read(items)
        while True:
            started = time.perf_counter()
            record = next(records, None)
            self.read_s += time.perf_counter() - started
            if record is None:
                return
            yield record


def ingest_time(corpus: Path) -> dict[str, Any]:
    embedder = load_embedder()
    embedder.encode(_common.WARMUP)
    with _common.fresh_home("bench-documents") as settings:
        params = IngestParams(source_dir=str(corpus))
        source = TimedSource(file_source(str(corpus), params, settings))
        started = time.perf_counter()
        report = ingest(source, params, settings)
        ingest_s = time.perf_counter() - started
        index = ChunkIndex(settings)
        index.apply()
        started = time.perf_counter()
        params = EmbedParams(snapshot_id=report.snapshot_id)
        embedded = embed_snapshot(params, settings, index, embedder)
        embed_s = time.perf_counter() - started
        index.close()
    rest = ingest_s - source.list_s - source.read_s
    return {
        "documents": report.model_dump(include={"read", "accepted", "reasons"}),
        "chunks": embedded.chunks_embedded,
        "encode_s": embedded.embed_seconds,
        "seconds": dict(listing=source.list_s, reading=source.read_s, rest=rest, embed=embed_s),
        "total_s": ingest_s + embed_s,
    }


def run(quick: bool, runs: int) -> dict[str, Any]:
    from document_files import many_pages_pdf

    with tempfile.TemporaryDirectory(prefix="llmops-bench-documents-") as name:
        (Path(name) / "warm").mkdir()
        warm = many_pages_pdf(Path(name) / "warm" / "warm.pdf", 1)
        corpus, twin, pdfs = write_corpus(Path(name), quick)
        pdf = pdf_extraction(pdfs, twin, warm, runs)
        warm_home = Settings(home=Path(name) / "warm-home")
        ingest_folder(warm.parent, IngestParams(), warm_home)  # untimed: GX, imports
        return {
            "benchmark": "documents",
            "quick": quick,
            "runs": runs,
            "pdf": pdf,
            "object_store": object_store(corpus, Path(name), runs),
            "ingest": ingest_time(corpus),
        }


def report(r: dict[str, Any]) -> None:
    pdf, store, ing, med = r["pdf"], r["object_store"], r["ingest"], statistics.median
    rate, pages = pdf["pages_per_s"], pdf["pages"]
    print(f"\n1. PDF extraction, {pdf['pages']} pages in {len(pdf['memory'])} PDFs, median s")
    rows = [[f"read_file, .{k}", pages, med(pdf["seconds"][k]), rate[k]] for k in rate]
    _common.print_table(["reader", "pages", "median s", "pages/s"], rows)
    heads = ["PDF (fresh process each)", "MB", "pages", "peak RSS growth MB", "heap peak MB"]
    _common.print_table(heads, [list(m.values()) for m in pdf["memory"]])
    print(
        f"summary: PDF {rate['pdf']:.1f} pages/s, the same text as .txt "
        f"{rate['txt'] / rate['pdf']:.1f}x that; peak RSS growth of a PDF up to "
        f"{max(m['rss_growth_mb'] for m in pdf['memory']):.1f} MB"
    )
    print("\n2. Object-store source (moto S3, loopback) vs a local folder, list + read, median")
    _common.print_table(READS, [list(x.values()) for x in store["reads"]])
    ratio, first, again = store["s3_to_local"], store["first_run"], store["re_run"]
    print(
        f"summary: S3/local files/s {ratio[CONCURRENCY]:.3f} at concurrency {CONCURRENCY}, "
        f"{ratio[1]:.3f} at 1; S3 at {CONCURRENCY} is {store['s3_concurrency_gain']:.2f}x "
        f"S3 at 1; ingest re-run over the unchanged bucket {again['seconds']} s (read "
        f"{again['read']}, unchanged {again['unchanged']}) vs first run {first['seconds']} s: "
        f"{store['re_run_to_first']:.3f}"
    )
    docs, total, s = ing["documents"], ing["total_s"], ing["seconds"]
    print(
        f"\n3. Where ingest time goes: {docs['read']} records read, {docs['accepted']} "
        f"accepted, quarantined {docs['reasons']}; {ing['chunks']} chunks embedded"
    )
    names = ["listing", "reading (waited on)", "rest of ingest (screen, validate, write)"]
    names += ["embedding (chunk, encode, write)"]
    rows = [[n, t, f"{100 * t / total:.1f} %"] for n, t in zip(names, s.values(), strict=True)]
    rows += [["total", total, "100 %"], ["(of embedding: encode)", ing["encode_s"], ""]]
    local = store["reads"][0]  # local, default concurrency
    rows += [["(reading alone, local, from 2)", local["s"], f"{100 * local['s'] / total:.1f} %"]]
    _common.print_table(["part", "seconds", "share"], rows)
    print(
        f"summary: of {total:.1f} s, reading {100 * (s['listing'] + s['reading']) / total:.1f} %"
        f", the rest of ingest {100 * s['rest'] / total:.1f} %, embedding "
        f"{100 * s['embed'] / total:.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small corpus (a minute)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each read")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()

    info = _common.machine()
    r = run(args.quick, args.runs)
    print()
    _common.print_machine(info)
    report(r)
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
