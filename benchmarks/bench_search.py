"""`llmops search` as a person runs it: the first question and later ones, whole commands.

The demo corpus (a slice with --quick) is ingested and embedded into a throw-away state folder.
Then, in one run:
- cold: `llmops search --cold` (everything loaded in the command's own process, as before);
- first: `llmops search` with no warm process yet (it starts one and waits for it);
- later: `llmops search` again, answered by that warm process;
- direct: `search()` called in this already-warm process (no command, no HTTP): the floor.
Goal: later questions <= 2 s wall, or within 1.5x of the direct call.

    python benchmarks/bench_search.py [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import suppress

import _common

from llmops.search_service import run_file
from tasks.clients.retrieval import search

QUESTIONS = [
    "how do I define a decorator",
    "what does the with statement do",
    "how are exceptions caught",
    "what is a generator",
    "how do I sort a list",
]


def command(args: list[str]) -> float:
    """Seconds of wall time for one `llmops search` command (a new process, as typed)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "search", *args, "-k", "5"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"llmops search {args} failed:\n{done.stderr[-2000:]}")
    return took


def stop_warm(home) -> None:
    with suppress(OSError, ValueError, KeyError):
        os.kill(json.loads(run_file(home).read_text())["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while run_file(home).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    run_file(home).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ten topics")
    parser.add_argument("--repeats", type=int, default=2, help="cold/first measurements each")
    parser.add_argument("--json")
    args = parser.parse_args()
    info = _common.machine()
    _common.print_machine(info)
    with _common.fresh_home("search") as settings:
        root = _common.write_demo_corpus(settings, args.quick)
        _, report, index = _common.ingest_and_embed(settings, root)
        index.close()
        print(f"index: {report.collection_rows} chunks")
        seconds: dict[str, list[float]] = {"cold": [], "first": [], "later": [], "direct": []}
        try:
            for i in range(args.repeats):
                seconds["cold"].append(command([QUESTIONS[i % len(QUESTIONS)], "--cold"]))
                stop_warm(settings.home)
                seconds["first"].append(command([QUESTIONS[i % len(QUESTIONS)]]))
            for question in QUESTIONS:
                seconds["later"].append(command([question]))
        finally:
            stop_warm(settings.home)
        search(QUESTIONS[0], 5, settings=settings)  # warm this process up first
        for question in QUESTIONS:
            started = time.perf_counter()
            search(question, 5, settings=settings)
            seconds["direct"].append(time.perf_counter() - started)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    rows = [
        [k, f"{median[k]:.2f}", len(v), f"{median[k] / median['direct']:.1f}"]
        for k, v in seconds.items()
    ]
    _common.print_table(["path", "median s", "n", "x direct"], rows)
    later, direct = median["later"], median["direct"]
    met = later <= 2.0 or later <= 1.5 * direct
    print(
        f"later questions {later:.2f} s wall ({later / direct:.1f}x the direct call, "
        f"{median['cold'] / later:.0f}x faster than cold): goal <= 2 s or <= 1.5x direct: "
        f"{'met' if met else 'NOT met'}"
    )
    _common.write_json(args.json, {"machine": info, "seconds": seconds, "median": median})


if __name__ == "__main__":
    main()
