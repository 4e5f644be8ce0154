"""The drift monitor on a real request log (written through RequestLog), with Great
Expectations, Evidently and the MiniLM embedder: shifted windows (man pages, German) are drift,
same-distribution windows are not, and too little data gives no verdict."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from drift_world import DAY0, DriftWorld, drift_world

from tasks.clients.request_schema import SCHEMA
from tasks.core.drift import TimeRange
from tasks.monitor.demo_traffic import man_page_prompts, traffic_records
from tasks.monitor.drift import Windows, compare_windows, monitor_requests
from tasks.monitor.evidently import embedding_auc, embedding_report, save_html
from tasks.monitor.log_checks import check_request_log
from tasks.monitor.params import MonitorParams
from tasks.monitor.windows import load_training, requests_in

pytestmark = pytest.mark.integration
NOW = DAY0 + timedelta(days=30)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder):
    with drift_world(tmp_path_factory.mktemp("drift"), embedder) as w:
        yield w


def params(world: DriftWorld, day: str, **changes) -> MonitorParams:
    start, end = world.day(day)
    ref_start, ref_end = world.day("reference")
    base = {
        "current": {"start": start, "end": end},
        "reference": {"start": ref_start, "end": ref_end},
        "min_rows": 100,
        "min_group_rows": 50,
        "embedding_sample": 120,
        "embedding_map": False,
    }
    return MonitorParams.model_validate(base | changes)


def drifted(report) -> set[str]:
    return {c.name for c in report.drifted}


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("man-en", {"prompt embeddings", "OOV rate", "never-seen words", "retrieval miss rate"}),
        (
            "man-de",
            {
                "prompt embeddings",
                "OOV rate",
                "never-seen words",
                "retrieval miss rate",
                "language",
                "non-ASCII share",
            },
        ),
    ],
)
def test_a_shifted_window_is_drift_and_asks_for_retraining(world, window, expected) -> None:
    report = monitor_requests(world.settings, params(world, window), NOW, world.embed)
    assert (report.status, report.retrain) == ("drift", True)
    assert expected <= drifted(report), report.reasons
    assert (report.current_rows, report.reference_rows, report.embedded_rows) == (120, 120, 120)
    assert report.log_checks and all(c.success for c in report.log_checks)
    assert report.snapshot_id == world.snapshot
    html = Path(report.html).read_text()
    assert "prompt_chars" in html and "oov_rate" in html
    if window == "man-de":
        assert report.languages["current"]["de"] > 0.8
        assert {"und", "die"} & {w for w, _ in report.new_terms}


def test_a_same_distribution_window_is_no_drift(world) -> None:
    report = monitor_requests(world.settings, params(world, "same"), NOW, world.embed)
    assert (report.status, report.retrain, drifted(report)) == ("no drift", False, set())
    judged = {c.name for c in report.checks if c.status != "not judged"}
    assert {"prompt embeddings", "language", "OOV rate", "retrieval miss rate"} <= judged


def test_detection_and_false_alarm_rates_over_random_splits(world) -> None:
    """20 random same-distribution splits (the reference and `same` days pooled) and 5 random
    draws of each shift; windows of 120 and 100 requests, every check, no HTML. The full
    measurement, on larger windows, is in benchmarks/bench_monitor.py."""
    python = pd.concat(
        [
            requests_in(world.settings.home / "requests", TimeRange(*world.day(d)))
            for d in ("reference", "same")
        ],
        ignore_index=True,
    )
    shifted = {
        d: requests_in(world.settings.home / "requests", TimeRange(*world.day(d)))
        for d in ("man-en", "man-de")
    }
    p = params(world, "same")
    training = load_training(world.settings, None)
    rng = random.Random(1)

    def run(reference: pd.DataFrame, current: pd.DataFrame):
        windows = Windows(
            current.reset_index(drop=True),
            reference.reset_index(drop=True),
            "current",
            "reference",
            training,
        )
        return compare_windows(windows, p, world.embed, [], None)

    alarms, any_drift, fired = [], [], Counter()
    for _ in range(20):
        order = rng.sample(range(len(python)), len(python))
        report = run(python.iloc[order[:120]], python.iloc[order[120:]])
        alarms.append(report.retrain)
        any_drift.append(report.status == "drift")
        fired.update(f"{c.name}: {c.reason}" for c in report.drifted)
    detected = {name: 0 for name in shifted}
    for name, frame in shifted.items():
        for _ in range(5):
            report = run(
                python.sample(100, random_state=rng.randrange(2**32)),
                frame.sample(100, random_state=rng.randrange(2**32)),
            )
            detected[name] += report.retrain
    print(
        f"false alarms (retraining asked): {sum(alarms)}/20, any check drifted: "
        f"{sum(any_drift)}/20 ({dict(fired)}); detected: {detected} of 5 each"
    )
    assert sum(alarms) <= 1
    assert detected == {"man-en": 5, "man-de": 5}


def test_too_little_data_gives_no_verdict(world) -> None:
    empty_day = {"start": DAY0 + timedelta(days=10), "end": DAY0 + timedelta(days=11)}
    report = monitor_requests(
        world.settings, params(world, "same", current=empty_day), NOW, world.embed
    )
    assert (report.status, report.retrain, report.current_rows) == ("insufficient data", False, 0)
    assert report.html is None and report.log_checks == [] and not report.drifted
    assert "current window has 0 requests, 100 needed" in report.reasons[0]
    small = monitor_requests(
        world.settings, params(world, "man-de", min_rows=121), NOW, world.embed
    )
    assert (small.status, small.retrain, small.drifted) == ("insufficient data", False, [])


def test_the_training_data_as_the_reference(world) -> None:
    reference = {"source": "training", "max_passages": 240}
    same = monitor_requests(
        world.settings, params(world, "same", reference=reference), NOW, world.embed
    )
    assert same.reference_window == f"training snapshot {world.snapshot}"
    assert (same.status, same.reference_rows) == ("no drift", 240), same.reasons
    german = monitor_requests(
        world.settings, params(world, "man-de", reference=reference), NOW, world.embed
    )
    assert german.retrain
    assert {"language", "OOV rate", "non-ASCII share", "prompt embeddings"} <= drifted(german)
    not_judged = {c.name for c in german.checks if c.status == "not judged"}
    assert {"prompt chars", "never-seen words", "p95 latency v1"} <= not_judged


def test_request_log_checks_report_rows_that_break_the_rules(tmp_path: Path) -> None:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    rows = traffic_records(
        ["What does the with statement do?"] * 4,
        start,
        timedelta(hours=1),
        random.Random(0),
        sources=lambda p: [[]] * len(p),
    )
    rows[1]["request_id"] = rows[0]["request_id"]  # a duplicate
    rows[2]["latency_ms"] = 9e9  # hours
    rows[3]["sources"], rows[3]["version"] = "{not json", ""
    part = tmp_path / "date=2026-11-20" / "part-handmade.parquet"  # not through RequestLog
    part.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), part)
    frame = requests_in(tmp_path, TimeRange(start, start + timedelta(days=1)))
    failed = {c.reason: c.unexpected for c in check_request_log(frame, 600_000) if not c.success}
    assert failed == {
        "request_id is unique": 2,
        "latency_ms is 0..600000": 1,
        "version is not empty": 1,
        "sources is JSON text (or null)": 1,
    }


def test_the_embedding_map_goes_into_its_own_html(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference, current = rng.normal(size=(32, 384)), rng.normal(0.5, 1, size=(32, 384))
    path = save_html(embedding_report(reference, current, 0.55), tmp_path / "map.html")
    assert "Drift in embeddings" in path.read_text()
    assert embedding_auc(reference, current) > 0.9
    assert embedding_auc(reference[:9], current) is None  # too few rows to split


@pytest.mark.parametrize("language", ["en", "de"])
def test_missing_man_pages_fail_with_the_package_to_install(tmp_path, language) -> None:
    with pytest.raises(FileNotFoundError, match="install the Debian package"):
        man_page_prompts(language, root=tmp_path)
