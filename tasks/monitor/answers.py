"""Online evaluation: a sample of the window's live answers scored with the quality contract's
reference-free scorers (groundedness in the passages each answer was given, refusals, empty
answers, retrieval misses), compared with the reference window's, and written back beside the
requests (`<requests>/_scores/date=…/`, which the request log's readers skip by its prefix).

Live traffic has no reference answers, so token-F1 and citations are left to the gates that
have them; a significant drop here raises the same retraining event as drift.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd

from tasks.core.paired import Verdict, compare_independent
from tasks.core.scorers import live_scores
from tasks.monitor.params import CheckRow, MonitorReport, OnlineEvalParams
from tasks.monitor.windows import sample_rows

SCORES_DIR = "_scores"
# metric -> higher is better
LIVE_METRICS = {"groundedness": True, "refused": False, "empty": False, "retrieval_miss": False}


def score_live(frame: pd.DataFrame, size: int, seed: int, miss_score: float) -> pd.DataFrame:
    """Scores of at most `size` answered requests (status 200), drawn with a fixed seed."""
    answered = frame[frame["status"] == 200].reset_index(drop=True)
    picked = answered.iloc[sample_rows(len(answered), size, seed)]
    rows = [
        {
            "request_id": r.request_id,
            "at": r.at,
            "version": r.version,
            **live_scores(r.response, r.sources, miss_score),
        }
        for r in picked.itertuples(index=False)
    ]
    columns = ["request_id", "at", "version", *LIVE_METRICS]
    return pd.DataFrame(rows, columns=columns)


def write_scores(requests_dir: Path, scores: pd.DataFrame, scored_at: datetime) -> Path | None:
    """The scores as one parquet file of the day they were scored, written whole or not at all."""
    if scores.empty:
        return None
    folder = requests_dir / SCORES_DIR / f"date={scored_at:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"scores-{scored_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = path.with_suffix(".tmp")
    scores.assign(scored_at=scored_at).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_scores(requests_dir: Path) -> pd.DataFrame:
    """Every score written back so far (empty when none)."""
    files = sorted((requests_dir / SCORES_DIR).glob("date=*/*.parquet"))
    if not files:
        return pd.DataFrame(columns=["request_id", "at", "version", *LIVE_METRICS, "scored_at"])
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def answer_checks(
    current: pd.DataFrame, reference: pd.DataFrame, params: OnlineEvalParams
) -> list[CheckRow]:
    """One check per live metric: drift when the current window is significantly worse."""
    checks = []
    for metric, higher_is_better in LIVE_METRICS.items():
        found = compare_independent(
            metric,
            current[metric].tolist(),
            reference[metric].tolist(),
            higher_is_better=higher_is_better,
            confidence=params.confidence,
            min_samples=params.min_samples,
        )
        judged = found.low is not None
        status = "drift" if found.verdict is Verdict.WORSE else "ok" if judged else "not judged"
        checks.append(
            CheckRow(
                name=f"live {metric}",
                kind="answers",
                status=status,
                value=found.difference,
                threshold=0.0,
                reason=found.reason,
            )
        )
    return checks


def evaluate_live(
    requests_dir: Path,
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    params: OnlineEvalParams,
    miss_score: float,
    seed: int,
    now: datetime,
) -> tuple[list[CheckRow], Path | None]:
    """Score the current window's sample (written back) and, against past traffic, the
    reference window's; the checks (none without a traffic reference)."""
    scores = score_live(current, params.sample, seed, miss_score)
    path = write_scores(requests_dir, scores, now)
    if reference is None:
        return [], path
    past = score_live(reference, params.sample, seed, miss_score)
    return answer_checks(scores, past, params), path


def with_answer_checks(
    report: MonitorReport, checks: list[CheckRow], path: Path | None, retrain: bool
) -> MonitorReport:
    """The report with the live-answer checks; a drop counts as drift (and asks for retraining
    when `retrain`), so the same event announces it."""
    dropped = [c for c in checks if c.status == "drift"]
    update: dict = {"checks": [*report.checks, *checks], "scores_path": str(path) if path else None}
    if dropped:
        update["reasons"] = [*report.reasons, *(f"answers dropped: {c.reason}" for c in dropped)]
        update["status"] = "drift"
        update["retrain"] = report.retrain or retrain
    return report.model_copy(update=update)
