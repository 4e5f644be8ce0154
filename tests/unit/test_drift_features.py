import json
import math
from collections import Counter

import pytest

from tasks.core.drift import DriftThresholds
from tasks.core.drift_figures import VersionFigures, WindowFigures, measurements
from tasks.core.text_features import (
    best_score,
    document_frequency,
    new_terms,
    non_ascii_share,
    oov_rate,
    sentences,
    unseen_share,
    vocabulary,
    words,
)
from tasks.monitor.demo_traffic import groff_to_text

pytestmark = pytest.mark.unit

T = DriftThresholds()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("How do I open a file?", ["how", "do", "open", "file"]),  # single letters dropped
        ("def __init__(self, x2): ...", ["def", "init", "self"]),  # code: letters only
        ("Größe der Datei, l'été", ["größe", "der", "datei", "l'été"]),
        ("42 + 17 = 59", []),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "share"),
    [("plain ascii", 0.0), ("“quoted” — dash", 0.0), ("für", 1 / 3), ("日本", 1.0), ("", 0.0)],
)
def test_non_ascii_share_counts_letters_only(text: str, share: float) -> None:
    assert non_ascii_share(text) == pytest.approx(share)


def test_oov_rate_and_a_leave_one_document_out_vocabulary() -> None:
    frequency = document_frequency(["the cat sat", "the dog sat", "a platypus"])
    assert frequency == Counter({"the": 2, "sat": 2, "cat": 1, "dog": 1, "platypus": 1})
    everything, shared = vocabulary(frequency), vocabulary(frequency, 2)
    assert oov_rate(["the", "cat", "flew"], everything) == pytest.approx(1 / 3)
    # A passage of the first document, judged as if that document had not been seen.
    assert oov_rate(words("the cat sat"), shared) == pytest.approx(1 / 3)
    assert math.isnan(oov_rate([], everything))


def test_unseen_share_and_new_terms() -> None:
    counts = Counter({"python": 6, "rizz": 3, "skibidi": 1})
    assert unseen_share(counts, {"python"}) == pytest.approx(0.4)
    assert new_terms(counts, {"python"}) == [("rizz", 3), ("skibidi", 1)]
    assert math.isnan(unseen_share(Counter(), {"python"}))


@pytest.mark.parametrize(
    ("sources", "score"),
    [
        (
            json.dumps(
                [
                    {"doc_id": "a", "source": "a.txt", "score": 0.3},
                    {"doc_id": "b", "source": "b.txt", "score": 0.7},
                ]
            ),
            0.7,
        ),
        (json.dumps([{"doc_id": "a", "source": "a.txt", "score": 0.31}]), 0.31),
        ("[]", math.nan),  # no retrieval ran
        (None, math.nan),
    ],
)
def test_best_score(sources: str | None, score: float) -> None:
    assert best_score(sources) == pytest.approx(score, nan_ok=True)


@pytest.mark.parametrize(
    ("sources", "message"),
    [("{not json", "not JSON"), ('{"score": 1}', "must be a JSON list"), ('[{"a": 1}]', "score")],
)
def test_best_score_refuses_what_is_not_a_list_of_hits(sources: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        best_score(sources)


def test_sentences_keep_prose_and_drop_code() -> None:
    text = (
        "The with statement wraps a block. It calls the enter method first and the exit "
        "method after it.\n\n"
        "x = [f(i) for i in range(10) if i % 2 == 0]  # code\n\nShort one."
    )
    assert sentences(text) == [
        "The with statement wraps a block.",
        "It calls the enter method first and the exit method after it.",
    ]


def test_groff_to_text_keeps_the_prose_of_a_man_page() -> None:
    source = "\n".join(
        [
            '.\\" a comment',
            ".de Sp",
            ".if t .sp .5v",
            "..",
            '.TH dpkg 1 "2023" "dpkg suite"',
            '.SH "BESCHREIBUNG"',
            "\\fBdpkg\\fR ist ein Werkzeug f\\(:ur Debian\\-Pakete.",
            ".PP",
            "Siehe",
            ".BR apt (8)",
            "f\\[u00FC]r mehr\\&.",
        ]
    )
    assert groff_to_text(source) == (
        "dpkg ist ein Werkzeug für Debian-Pakete.\n\nSiehe apt (8) für mehr."
    )


def window(**changes) -> WindowFigures:
    base = {
        "rows": 500,
        "oov_rate": 0.02,
        "unseen_rate": 0.01,
        "non_ascii_share": 0.01,
        "retrieval_rows": 400,
        "miss_rate": 0.05,
        "versions": {"1": VersionFigures(500, 5, 200.0)},
    }
    return WindowFigures(**(base | changes))


def by_name(ms) -> dict:
    return {m.name: m for m in ms}


def test_measurements_between_two_traffic_windows() -> None:
    distances = {
        "language": 0.02,
        "prompt_chars": 0.1,
        "prompt_tokens": 0.1,
        "response_chars": 0.3,
        "completion_tokens": 0.2,
    }
    current = window(
        oov_rate=0.3,
        versions={"1": VersionFigures(300, 30, 500.0), "2": VersionFigures(200, 0, 90.0)},
    )
    ms = by_name(measurements(current, window(), distances, (0.97, 400), T))
    assert (ms["prompt embeddings"].current, ms["prompt embeddings"].rows) == (0.97, 400)
    assert (ms["OOV rate"].current, ms["OOV rate"].reference) == (0.3, 0.02)
    assert ms["response chars"].kind == "output" and ms["response chars"].current == 0.3
    assert ms["retrieval miss rate"].rule == "increase" and ms["retrieval miss rate"].se > 0
    # Version 1 is in both windows: compared; version 2 is new: judged on its own error rate.
    assert ms["error rate v1"].rule == "increase" and ms["error rate v1"].rows == 300
    assert ms["p95 latency v1"].current == 500.0 and ms["p95 latency v1"].reference == 200.0
    assert ms["error rate v2"].rule == "at_least" and ms["error rate v2"].threshold == 0.05
    assert ms["p95 latency v2"].current is None


def test_measurements_against_the_training_data() -> None:
    training = window(traffic=False, unseen_rate=math.nan, retrieval_rows=0, versions={})
    ms = by_name(measurements(window(), training, {"language": 0.0}, None, T))
    for name in ("prompt chars", "completion tokens", "never-seen words", "prompt embeddings"):
        assert ms[name].current is None, name
    assert "training data" in ms["prompt chars"].note
    # No retrieval to compare with: the miss rate is judged on its own level.
    assert ms["retrieval miss rate"].rule == "at_least"
    assert ms["retrieval miss rate"].threshold == T.max_miss_rate
