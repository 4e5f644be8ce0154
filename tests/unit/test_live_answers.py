import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from tasks.clients.request_log import read_requests
from tasks.monitor.answers import (
    answer_checks,
    evaluate_live,
    read_scores,
    score_live,
    with_answer_checks,
)
from tasks.monitor.params import MonitorReport, OnlineEvalParams

pytestmark = pytest.mark.unit

PASSAGE = "The with statement wraps a block with methods defined by a context manager."
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def requests(answers: list[str], score: float = 0.8, status: int = 200) -> pd.DataFrame:
    sources = json.dumps([{"doc_id": "d1", "source": "s", "score": score, "text": PASSAGE}])
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(len(answers))],
            "at": [T0 + timedelta(seconds=i) for i in range(len(answers))],
            "version": "1",
            "status": status,
            "prompt": "what does the with statement do?",
            "response": answers,
            "sources": sources,
        }
    )


GROUNDED = "the with statement wraps a block with methods defined by a context manager"


def test_each_live_answer_is_scored_without_a_reference() -> None:
    frame = requests([GROUNDED, "bananas grow on trees in the tropics", "\n\n", "I don't know"])
    scores = score_live(frame, size=10, seed=0, miss_score=0.4).set_index("request_id")
    assert scores.loc["r0", "groundedness"] == 1.0
    assert scores.loc["r1", "groundedness"] == 0.0
    assert scores.loc["r2", "empty"] == 1.0 and scores.loc["r2", "groundedness"] == 0.0
    assert scores.loc["r3", "refused"] == 1.0 and pd.isna(scores.loc["r3", "groundedness"])
    assert scores["retrieval_miss"].eq(0.0).all()
    missed = score_live(requests([GROUNDED], score=0.1), 10, 0, 0.4)
    assert missed["retrieval_miss"].tolist() == [1.0]
    assert score_live(requests([GROUNDED], status=500), 10, 0, 0.4).empty  # failures are not


def test_a_drop_in_groundedness_is_drift_and_asks_for_retraining(tmp_path) -> None:
    params = OnlineEvalParams(min_samples=30)
    before = requests([GROUNDED] * 60)
    after = requests([GROUNDED] * 20 + ["bananas grow on trees in the tropics"] * 40)
    checks, path = evaluate_live(tmp_path, after, before, params, 0.4, 0, T0)
    by_name = {c.name: c for c in checks}
    assert by_name["live groundedness"].status == "drift"
    assert by_name["live refused"].status == "ok"
    report = MonitorReport.model_construct(
        checks=[], reasons=["no drift"], status="no drift", retrain=False
    )
    flagged = with_answer_checks(report, checks, path, retrain=True)
    assert flagged.status == "drift" and flagged.retrain
    assert any(r.startswith("answers dropped: groundedness") for r in flagged.reasons)
    # Written back beside the requests, where the request log's readers do not look.
    written = read_scores(tmp_path)
    assert sorted(written["request_id"]) == sorted(after["request_id"])
    assert read_requests(tmp_path).empty
    # The same answers on both sides: nothing to report.
    same = answer_checks(score_live(before, 100, 0, 0.4), score_live(before, 100, 1, 0.4), params)
    assert all(c.status != "drift" for c in same)
    few = answer_checks(
        score_live(before[:5], 100, 0, 0.4), score_live(before, 100, 0, 0.4), params
    )
    assert {c.status for c in few} == {"not judged"}
