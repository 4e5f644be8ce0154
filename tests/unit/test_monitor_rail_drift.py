"""The drift monitor on the rails, over a real request log (written through RequestLog, then
read back as the monitor reads it): a jump in the share of blocked requests between the
reference and the current window is drift that asks for the drift event; the same rates are
not; the report shows both windows' rates."""

import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tasks.clients.request_log import RequestLog
from tasks.monitor.demo_traffic import python_doc_prompts, traffic_records
from tasks.monitor.drift import compare_windows, load_windows, monitor_requests
from tasks.monitor.events import event_payload
from tasks.monitor.params import MonitorParams, summary_markdown
from tasks.monitor.rail_drift import RailDriftParams, rail_summary
from tasks.shared.settings import Settings

pytestmark = pytest.mark.unit
DAY0 = datetime(2026, 11, 20, tzinfo=UTC)
ROWS = 120  # a window
PROMPTS = python_doc_prompts()  # sentences of the Python docs


def decisions(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"rail": r, "action": a, "reason": "injection:x"} for r, a in pairs])


def window(day: int, blocked: int, retrieval: int, seed: int) -> list[dict]:
    """A day of requests: the first `blocked` blocked by the input rail, the next `retrieval`
    with a passage dropped by the retrieval rail, the rest untouched."""
    rng = random.Random(seed)
    prompts = rng.sample(PROMPTS, ROWS)
    rows = traffic_records(prompts, DAY0 + timedelta(days=day), timedelta(hours=20), rng)
    for i, row in enumerate(rows):
        if i < blocked:
            row["rails"] = decisions(("input", "block"))
        elif i < blocked + retrieval:
            row["rails"] = decisions(("retrieval", "drop"))
        else:
            row["rails"] = "[]" if i % 2 else None  # both ways of saying none
    return rows


def write(settings: Settings, *windows: list[dict]) -> None:
    with RequestLog(settings.requests_dir, flush_every=10_000) as log:
        for rows in windows:
            for row in rows:
                log.append(row)


def params(day: int, **changes) -> MonitorParams:
    """Day `day` against day 0. Evidently (15 s on its first call here) is left out by a
    `min_rows` above the windows: the other checks then give no verdict, while the rails,
    judged on their own `min_requests`, still do (the integration tier runs Evidently)."""
    start = DAY0 + timedelta(days=day)
    base = {
        "current": {"start": start, "end": start + timedelta(days=1)},
        "reference": {"start": DAY0, "end": DAY0 + timedelta(days=1)},
        "min_rows": ROWS + 1,
        "embedding_sample": 0,
        "embedding_map": False,
        "online": {"enabled": False},
    }
    return MonitorParams.model_validate(base | changes)


def no_embedding(texts) -> np.ndarray:
    raise AssertionError("embedding drift is off in these tests")


def test_a_jump_in_the_block_rate_is_drift_and_asks_for_the_event(settings: Settings) -> None:
    # day 0: 2 blocked of 120; day 1: as many; day 2: 24 blocked (an injection wave)
    write(settings, window(0, 2, 3, 0), window(1, 2, 3, 1), window(2, 24, 3, 2))
    now = DAY0 + timedelta(days=30)
    report = monitor_requests(settings, params(2), now, no_embedding)
    checks = {c.name: c for c in report.checks}
    assert checks["block rate"].status == "drift", checks["block rate"].reason
    assert checks["block rate"].kind == "rails"
    assert checks["block rate"].value == pytest.approx(22 / 120)
    assert checks["retrieval trip rate"].status == "ok"
    assert report.status == "drift" and report.retrain
    assert report.reasons[0] == "current window has 120 requests, 121 needed for a verdict"
    assert report.reasons[-1].startswith("rails jumped: block rate worse: current 24/120 (20.0%)")
    assert "block rate" in {c["name"] for c in event_payload(report)["drifted"]}
    rails = report.rails
    assert rails is not None and rails.reference is not None
    assert (rails.current.blocked, rails.reference.blocked) == (24, 2)
    assert rails.current.by_pair == {"input:block": 24, "retrieval:drop": 3}
    page = summary_markdown(report)
    assert "| current | 120 | 24 (20.0%) | 3 (2.5%) | 27 (22.5%) |" in page

    def compared(p: MonitorParams):  # the windows as the monitor loads them, compared alone
        return compare_windows(load_windows(settings, p, now), p, no_embedding, [], None)

    same = compared(params(1))
    assert {c.status for c in same.checks if c.kind == "rails"} == {"ok"}
    assert same.status == "insufficient data" and not same.retrain
    quiet = compared(params(2, rails={"retrain": False}))
    assert quiet.status == "drift" and not quiet.retrain  # drift, but no event asked for


def test_rails_are_not_judged_against_the_training_data_or_when_off() -> None:
    frame = pd.DataFrame({"rails": [decisions(("input", "block"))] * 5 + [None] * 195})
    found = rail_summary(frame, None, RailDriftParams())
    assert found is not None and found.reference is None and found.current.blocked == 5
    assert {c.status for c in found.checks} == {"not judged"}
    assert rail_summary(frame, frame, RailDriftParams(enabled=False)) is None
    few = rail_summary(frame[:50], frame[:50], RailDriftParams(min_requests=100))
    assert few is not None and {c.status for c in few.checks} == {"not judged"}
