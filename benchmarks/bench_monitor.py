"""Drift monitoring: the time of one monitoring run over 10,000 and 100,000 logged requests
and how it grows, and how well the verdict tells real shifts from unchanged traffic.

Timing. The log holds a reference day and a current day of N requests each: prompts drawn
(with repetition) from the 2,775 prose sentences of the pydoc topics, sources with real
retrieval scores (MiniLM against 300 paragraphs of the docs), two versions, 1 % errors. The
parts are written as parquet in RequestLog's layout (its fsynced `append` takes 0.6 ms a record,
two minutes of set-up for 200,000). Timed: `monitor_requests` end to end (load both windows,
Great Expectations on the current one, per-request features with language detection on every
row, the Evidently report, embedding drift on a 1,000-prompt sample a side with the real
embedder, HTML), its stages one by one, and the t-SNE map of the embedding sample, which only
depends on the sample. Baseline: Evidently's DataDriftPreset alone over the log's own columns
(latency, token counts, status, version) of the same windows: what a plain Evidently job runs.

Quality. Random same-distribution splits of the Python-docs prompts (false alarms) and random
draws of English man pages (another domain) and German man pages (another language) against
Python-docs windows (detection), at 200 and 1,000 requests a window, all checks on, no HTML.
Embeddings of the pool are computed once and reused (memoized), which changes no verdict.

    python benchmarks/bench_monitor.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import random
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.clients.request_schema import SCHEMA
from tasks.core.drift import TimeRange
from tasks.monitor.demo_traffic import (
    man_page_prompts,
    python_doc_prompts,
    retrieval_scorer,
    traffic_records,
)
from tasks.monitor.drift import (
    Windows,
    compare_windows,
    default_embed,
    load_windows,
    monitor_requests,
)
from tasks.monitor.params import MonitorParams
from tasks.monitor.windows import load_training

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


def memoized(embed: Any) -> Any:
    cache: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            cache.update(zip(new, embed(new), strict=True))
        return np.stack([cache[t] for t in texts])

    return cached


def write_parts(folder: Path, rows: list[dict[str, Any]], per_part: int = 10_000) -> None:
    """Parquet parts as RequestLog's drain writes them (date=YYYY-MM-DD/part-<stamp>-<id>)."""
    for i in range(0, len(rows), per_part):
        chunk = rows[i : i + per_part]
        day = chunk[0]["at"]
        path = (
            folder
            / f"date={day:%Y-%m-%d}"
            / f"part-{day:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:12]}.parquet"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA), path)


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - t0, 2), out


def baseline(windows: Windows) -> float:
    """Evidently's DataDriftPreset over the log's own columns, nothing else."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = ["latency_ms", "prompt_tokens", "completion_tokens"]
    categorical = ["status", "version"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def data(frame: pd.DataFrame) -> Any:
        frame = frame[numeric + categorical].astype({"status": str})
        return Dataset.from_pandas(frame.reset_index(drop=True), data_definition=definition)

    seconds, _ = timed(
        lambda: Report([DataDriftPreset()]).run(data(windows.current), data(windows.reference))
    )
    return seconds


def timing(settings: Any, n: int, pool: list[str], hits: dict[str, list], with_map: bool) -> dict:
    """Write a reference day and a current day of n requests each; one monitoring run."""
    rng = random.Random(n)
    folder = settings.home / "requests"
    for day in (0, 1):
        prompts = [rng.choice(pool) for _ in range(n)]
        rows = traffic_records(
            prompts,
            DAY0 + timedelta(days=day),
            timedelta(hours=23),
            rng,
            versions=("1", "2"),
            sources=lambda ps: [hits[p] for p in ps],
        )
        write_parts(folder, rows)
    current = TimeRange(DAY0 + timedelta(days=1), DAY0 + timedelta(days=2))
    params = MonitorParams.model_validate(
        {
            "current": {"start": current.start, "end": current.end},
            "reference": {"start": DAY0, "end": current.start},
            "embedding_map": with_map,
        }
    )
    now = DAY0 + timedelta(days=3)
    # The real embedder, no memo: the sample is embedded as in production.
    embed = default_embed(params.embedding_model)
    end_to_end, report = timed(lambda: monitor_requests(settings, params, now, embed))
    stages = dict(report.seconds)
    tsne = stages.pop("t-SNE map of the embeddings", None)
    without_map = round(end_to_end - (tsne or 0.0), 2)
    plain = baseline(load_windows(settings, params, now))
    for part in folder.glob("date=*/*.parquet"):
        part.unlink()
    return {
        "requests_per_window": n,
        "end_to_end_s": without_map,
        "t_sne_map_s": tsne,
        "status": report.status,
        "stages_s": stages,
        "baseline_s": plain,
        "ratio_to_baseline": round(without_map / plain, 1),
        "requests_per_s": round(2 * n / without_map),
    }


def quality(
    settings: Any,
    pools: dict[str, list[str]],
    scorer: Any,
    embed: Any,
    sizes: list[int],
    splits: int,
    draws: int,
) -> dict:
    rng = random.Random(7)
    frames = {
        name: pd.DataFrame(
            traffic_records(
                prompts, DAY0, timedelta(hours=1), rng, versions=("1", "2"), sources=scorer
            )
        )
        for name, prompts in pools.items()
    }
    training = load_training(settings, None)
    out: dict[str, Any] = {}
    for size in sizes:
        params = MonitorParams(min_rows=min(size, 200), embedding_sample=1000, embedding_map=False)

        def run(ref: pd.DataFrame, cur: pd.DataFrame, params: MonitorParams = params) -> Any:
            w = Windows(cur.reset_index(drop=True), ref.reset_index(drop=True), "c", "r", training)
            return compare_windows(w, params, embed, [], None)

        python = frames["python"]
        alarms, fired = 0, Counter()
        for _ in range(splits):
            order = rng.sample(range(len(python)), 2 * size)
            report = run(python.iloc[order[:size]], python.iloc[order[size:]])
            alarms += report.retrain
            fired.update(c.name for c in report.drifted)
        detected = {}
        for name in ("man-en", "man-de"):
            hits = 0
            for _ in range(draws):
                ref = python.sample(size, random_state=rng.randrange(2**32))
                report = run(ref, frames[name].sample(size, random_state=rng.randrange(2**32)))
                hits += report.retrain
                fired.update(f"{name}: {c.name}" for c in report.drifted)
            detected[name] = hits
        out[str(size)] = {
            "splits": splits,
            "false_alarms": alarms,
            "draws": draws,
            "detected": detected,
            "checks_fired": dict(fired),
        }
        print(f"  {size} a window: false alarms {alarms}/{splits}, detected {detected} of {draws}")
    return out


def run(quick: bool) -> dict[str, Any]:
    sizes = [10_000] if quick else [10_000, 100_000]
    with _common.fresh_home("bench-monitor") as settings:
        from pydoc_data.topics import topics

        from tasks.ingest.documents import ingest_folder
        from tasks.ingest.params import IngestParams

        root = settings.corpus_dir / "topics"
        root.mkdir(parents=True)
        for name in sorted(topics):
            (root / f"{name}.txt").write_text(topics[name])
        ingest_folder(root, IngestParams(), settings)
        rng = random.Random(0)
        python = python_doc_prompts()
        if quick:
            python = rng.sample(python, 1000)
        pools = {
            "python": python,
            "man-en": rng.sample(man_page_prompts("en"), 300 if quick else 1500),
            "man-de": rng.sample(man_page_prompts("de"), 300 if quick else 1500),
        }
        paragraphs = [
            p
            for n in sorted(topics)
            for p in re.split(r"\n\s*\n", topics[n])
            if len(p.split()) >= 20
        ]
        # Every distinct prompt embedded once, for its retrieval scores and the quality runs.
        embed = memoized(default_embed(MonitorParams().embedding_model))
        t0 = time.perf_counter()
        scorer = retrieval_scorer(embed, rng.sample(paragraphs, 300))
        hits = {
            p: h
            for prompts in pools.values()
            for p, h in zip(prompts, scorer(prompts), strict=True)
        }
        print(
            f"{len(hits)} prompts and 300 paragraphs embedded in {time.perf_counter() - t0:.0f} s"
        )
        timings = []
        for n in sizes:
            timings.append(timing(settings, n, python, hits, with_map=n == sizes[0]))
            print(f"  {n} a window: {timings[-1]['end_to_end_s']} s")
        sizes_q = [200] if quick else [200, 1000]
        rates = quality(
            settings,
            pools,
            lambda ps: [hits[p] for p in ps],
            embed,
            sizes_q,
            20,
            5 if quick else 10,
        )
    return {"benchmark": "monitor", "quick": quick, "timing": timings, "quality": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 requests only, windows of 200")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()

    info = _common.machine()
    started = time.perf_counter()
    r = run(args.quick)
    print()
    _common.print_machine(info)
    rows = [
        [
            f"{t['requests_per_window']:,}",
            t["end_to_end_s"],
            t["requests_per_s"],
            t["baseline_s"],
            t["ratio_to_baseline"],
            t["status"],
        ]
        for t in r["timing"]
    ]
    _common.print_table(
        [
            "requests a window (x2 windows)",
            "monitoring run s",
            "requests/s",
            "plain Evidently s",
            "run / plain",
            "verdict",
        ],
        rows,
    )
    if len(r["timing"]) == 2:
        small, large = r["timing"]
        print(
            f"growth 100k / 10k: x{large['end_to_end_s'] / small['end_to_end_s']:.1f} "
            "for x10 requests"
        )
    print(
        f"t-SNE map of the embedding samples (embedding_map, on by default; not in the runs "
        f"above): {r['timing'][0]['t_sne_map_s']} s, whatever the window size"
    )
    stages = list(r["timing"][0]["stages_s"])
    _common.print_table(
        ["stage", *[f"{t['requests_per_window']:,} s" for t in r["timing"]]],
        [[s, *[t["stages_s"].get(s, "") for t in r["timing"]]] for s in stages],
    )
    rows = [
        [
            size,
            f"{q['false_alarms']}/{q['splits']}",
            f"{q['detected']['man-en']}/{q['draws']}",
            f"{q['detected']['man-de']}/{q['draws']}",
        ]
        for size, q in r["quality"].items()
    ]
    _common.print_table(
        [
            "requests a window",
            "false alarms (same distribution)",
            "man pages (en) detected",
            "German detected",
        ],
        rows,
    )
    for size, q in r["quality"].items():
        print(f"checks fired at {size}: {q['checks_fired']}")
    print(f"total {time.perf_counter() - started:.0f} s")
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
