"""Bounded memory of ingest + embed: peak RSS at a corpus size N and at factor x N documents.

The documents are the demo corpus's pydoc topics as .txt files, repeated as often as needed;
each copy starts with its copy number, so every document has its own content hash. Each size
runs in its own subprocess (a fresh interpreter and state folder): the platform's imports, the
model load and a warm-up encode first (the "setup" RSS), then `ingest_folder` + `embed_snapshot`
while a thread samples RSS (process and children) every 50 ms; `ru_maxrss` is reported too.

Bounded memory means the large run's peak stays close to the small run's, not factor x.
Goal: peak(large) <= 1.2 x peak(small).

    python benchmarks/bench_memory.py [--quick] [--docs N] [--factor F] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common
import psutil

GOAL = 1.2
MB = 1024 * 1024


def write_corpus(dest: Path, n_docs: int, topics: list[str]) -> Path:
    """`n_docs` .txt documents: the topics in turn, each copy prefixed with its number."""
    dest.mkdir(parents=True)
    for i in range(n_docs):
        copy, name = divmod(i, len(topics))
        text = (
            f"Copy {copy} of the Python docs demo corpus.\n\n{_common.PYDOC_TOPICS[topics[name]]}"
        )
        (dest / f"{copy:04d}-{topics[name]}.txt").write_text(text, encoding="utf-8")
    return dest


class PeakRss:
    """Highest RSS of this process and its children, sampled in a background thread."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s, self.peak = every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        rss = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # it may have exited meanwhile
                rss += child.memory_info().rss
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def child(source: Path) -> dict[str, Any]:
    """One measurement, in a process of its own; the result is printed as JSON on stdout."""
    from tasks.clients.embedder import load_embedder

    for module in ("tasks.ingest.documents", "tasks.embed.index", "tasks.clients.feature_store"):
        importlib.import_module(module)  # imports are setup, not memory the data costs

    embedder = load_embedder()
    embedder.encode(_common.WARMUP, normalize_embeddings=True)
    setup = psutil.Process().memory_info().rss
    with _common.fresh_home("bench-memory") as settings, PeakRss() as peak:
        t0 = time.perf_counter()
        ingest, report, _ = _common.ingest_and_embed(settings, source)
        seconds = time.perf_counter() - t0
    return {
        "documents": ingest.accepted,
        "chunks": report.chunks_embedded,
        "seconds": round(seconds, 2),
        "setup_mb": round(setup / MB, 1),
        "peak_mb": round(peak.peak / MB, 1),
        "growth_mb": round((peak.peak - setup) / MB, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(source: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"child run failed for {source} (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 40 documents of 10 topics")
    parser.add_argument("--docs", type=int, help="small size N (default: every topic, 79)")
    parser.add_argument("--factor", type=int, default=4, help="large size = factor x N")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    parser.add_argument("--child", metavar="SOURCE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child))))
        return

    topics = _common.QUICK_TOPICS if args.quick else sorted(_common.PYDOC_TOPICS)
    small = args.docs or len(topics)
    sizes = [small, small * args.factor]
    info = _common.machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="llmops-bench-memory-src-") as tmp:
        for n in sizes:
            print(f"measuring {n} documents ...", flush=True)
            runs.append({"size": n, **measure(write_corpus(Path(tmp) / f"docs-{n}", n, topics))})
    peak_ratio = runs[1]["peak_mb"] / runs[0]["peak_mb"]
    growth_ratio = runs[1]["growth_mb"] / max(runs[0]["growth_mb"], 1.0)
    print()
    _common.print_machine(info)
    _common.print_table(
        ["docs", "accepted", "chunks", "s", "setup MB", "peak MB", "growth MB", "ru_maxrss MB"],
        [
            [r[k] for k in ("size", "documents", "chunks", "seconds", "setup_mb", "peak_mb")]
            + [r["growth_mb"], r["ru_maxrss_mb"]]
            for r in runs
        ],
    )
    passed = peak_ratio <= GOAL
    print(
        f"corpus x{args.factor}: peak RSS x{peak_ratio:.3f} (goal <= {GOAL}), growth above setup "
        f"x{growth_ratio:.3f}; {'PASS' if passed else 'FAIL'}"
    )
    _common.write_json(
        args.json,
        {
            "machine": info,
            "benchmark": "memory",
            "quick": args.quick,
            "runs": runs,
            "ratio_peak_large_to_small": round(peak_ratio, 3),
            "ratio_growth_large_to_small": round(growth_ratio, 3),
            "goal": f"peak ratio <= {GOAL}",
            "passed": passed,
        },
    )


if __name__ == "__main__":
    main()
