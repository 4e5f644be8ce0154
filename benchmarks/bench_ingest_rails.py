"""Ingest throughput with the secrets and personal data scan against the same ingest without it.

Both sides run `tasks.ingest.documents.ingest_folder` on the demo corpus (every pydoc topic and
the default module pages, `write_python_docs`), each run into a fresh state folder, in the same
process, alternated run by run after an untimed warm-up of each:

- scan: the default policy (`IngestRails()`: secrets quarantined, personal data redacted);
- plain: the same call with the one place that screens, `tasks.core.documents.screen_record`,
  replaced by a pass-through (title and text kept, no reason), which is the ingest path as it
  was before the rails. A policy of all `allow` would not do: it still scans every document.

Timed wall to wall: reading and parsing the files, normalising, screening (scan side), language
detection, Great Expectations validation, the lake's parquet writes and the snapshot. Throughput
is documents/s and MB/s of the source files as read from disk; each side's figure is its median
over the runs. The scan's own cost (`screen_document` over the normalised texts, alone) is shown
too, to say where the difference goes. Goal: scan docs/s >= 0.8 x plain docs/s.

    python benchmarks/bench_ingest_rails.py [--quick] [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import _common

import tasks.core.documents as core_documents
from tasks.core.rails import IngestRails, screen_document
from tasks.core.text import normalize_text
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams, IngestReport
from tasks.ingest.sources.files import iter_records
from tasks.shared.settings import Settings

GOAL = 0.8


def _pass_through(title: str, text: str, rails: IngestRails, findings: Any) -> tuple:
    return title, text, []


@contextmanager
def plain_path() -> Iterator[None]:
    """Ingest without the scan: `screen_record` keeps everything and finds nothing."""
    with mock.patch.object(core_documents, "screen_record", _pass_through):
        yield


def ingest_once(root: Path, scan: bool) -> tuple[float, IngestReport]:
    with tempfile.TemporaryDirectory(prefix="llmops-bench-ingest-rails-") as tmp:
        settings = Settings(home=Path(tmp))
        params = IngestParams(source_dir=str(root))
        started = time.perf_counter()
        if scan:
            report = ingest_folder(root, params, settings)
        else:
            with plain_path():
                report = ingest_folder(root, params, settings)
        return time.perf_counter() - started, report


def scan_alone(root: Path) -> tuple[float, int]:
    """Seconds `screen_document` takes over the corpus' normalised texts and titles, alone."""
    records = [r for r in iter_records(root, max_file_bytes=20_000_000) if r.text is not None]
    texts = [normalize_text(r.text) for r in records] + [r.title for r in records]
    rails = IngestRails()
    started = time.perf_counter()
    for text in texts:
        screen_document(text, rails)
    return time.perf_counter() - started, sum(len(t) for t in texts)


def run(quick: bool, runs: int) -> dict[str, Any]:
    with _common.fresh_home("bench-ingest-rails") as settings:
        root = _common.write_demo_corpus(settings, quick)
        source_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        ingest_once(root, scan=True)  # warm-up: GX, the language model, imports
        ingest_once(root, scan=False)
        times: dict[bool, list[float]] = {True: [], False: []}
        reports: dict[bool, IngestReport] = {}
        for _ in range(runs):
            for scan in (False, True):
                seconds, reports[scan] = ingest_once(root, scan)
                times[scan].append(seconds)
        scan_s, chars = scan_alone(root)
    scanned, plain = reports[True], reports[False]
    median = {scan: statistics.median(t) for scan, t in times.items()}
    rate = {scan: scanned.read / s for scan, s in median.items()}
    ratio = rate[True] / rate[False]
    return {
        "benchmark": "ingest_rails",
        "quick": quick,
        "runs": runs,
        "documents": scanned.read,
        "source_mb": round(source_mb, 3),
        "same_counts": (plain.read, plain.accepted + plain.quarantined)
        == (scanned.read, scanned.accepted + scanned.quarantined),
        "findings": scanned.findings,
        "quarantined_by_scan": scanned.quarantined - plain.quarantined,
        "plain_seconds": [round(t, 3) for t in times[False]],
        "scan_seconds": [round(t, 3) for t in times[True]],
        "plain_docs_per_s": round(rate[False], 1),
        "scan_docs_per_s": round(rate[True], 1),
        "plain_mb_per_s": round(source_mb / median[False], 3),
        "scan_mb_per_s": round(source_mb / median[True], 3),
        "screen_alone_seconds": round(scan_s, 3),
        "screen_alone_mb_per_s": round(chars / 1e6 / scan_s, 3),
        "screen_alone_chars": chars,
        "ratio_scan_to_plain": round(ratio, 3),
        "goal": f">= {GOAL}",
        "passed": bool(ratio >= GOAL),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 topics, no modules")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each side")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()

    info = _common.machine()
    r = run(args.quick, args.runs)
    print()
    _common.print_machine(info)
    print(
        f"corpus: {r['documents']} documents, {r['source_mb']} MB of source files "
        f"({'quick' if args.quick else 'full'}); {r['runs']} timed runs a side, medians; "
        f"same counts on both sides: {r['same_counts']}"
    )
    med = statistics.median
    _common.print_table(
        ["path", "docs", "median s", "docs/s", "MB/s"],
        [
            [
                "plain (screen_record a pass-through)",
                r["documents"],
                med(r["plain_seconds"]),
                r["plain_docs_per_s"],
                r["plain_mb_per_s"],
            ],
            [
                "scan (default policy)",
                r["documents"],
                med(r["scan_seconds"]),
                r["scan_docs_per_s"],
                r["scan_mb_per_s"],
            ],
        ],
    )
    print(
        f"screen_document alone over the normalised texts and titles: "
        f"{r['screen_alone_seconds']} s for {r['screen_alone_chars']} characters "
        f"({r['screen_alone_mb_per_s']} MB/s)"
    )
    print(f"findings (kind: action: spans): {r['findings']}")
    met = "goal met" if r["passed"] else "goal NOT met"
    print(f"ratio scan/plain docs/s: {r['ratio_scan_to_plain']} (goal >= {GOAL}): {met}")
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
