"""Two versions' answers to the same questions, compared the one way every gate does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from tasks.core.paired import Comparison, Verdict, compare_paired, release_verdict
from tasks.core.scorers import METRICS
from tasks.evaluate.params import ContractParams

Scores = Sequence[Mapping[str, float | None]]


class ComparisonRow(BaseModel):
    """One metric's paired comparison, as reports and artifacts show it."""

    against: str
    metric: str
    n: int
    challenger: float | None
    reference: float | None
    difference: float | None
    low: float | None
    high: float | None
    verdict: Verdict
    reason: str

    @classmethod
    def of(cls, against: str, c: Comparison) -> ComparisonRow:
        return cls(
            against=against,
            metric=c.metric,
            n=c.n,
            challenger=c.challenger_mean,
            reference=c.champion_mean,
            difference=c.difference,
            low=c.low,
            high=c.high,
            verdict=c.verdict,
            reason=c.reason,
        )


def compare_scores(
    challenger: Scores, reference: Scores, contract: ContractParams, against: str
) -> tuple[Verdict, list[ComparisonRow], list[str]]:
    """The release verdict of `challenger` over `reference` (same questions, same order) on the
    contract's primary and guard metrics, each metric's comparison, and the reasons."""
    if len(challenger) != len(reference):
        raise ValueError(f"{len(challenger)} vs {len(reference)} scored questions: not paired")
    comparisons = {
        metric: compare_paired(
            metric,
            [row.get(metric) for row in challenger],
            [row.get(metric) for row in reference],
            higher_is_better=METRICS[metric],
            confidence=contract.confidence,
            resamples=contract.resamples,
            min_samples=contract.min_samples,
            sides=("challenger", against),
        )
        for metric in dict.fromkeys([contract.primary, *contract.guards])
    }
    verdict, reasons = release_verdict(comparisons, contract.primary, contract.guards)
    rows = [ComparisonRow.of(against, c) for c in comparisons.values()]
    return verdict, rows, reasons


def comparison_table(rows: Sequence[ComparisonRow]) -> str:
    """Markdown: each metric's difference with its interval and verdict."""

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = [
        "| against | metric | n | challenger | reference | difference | interval | verdict |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        interval = "—" if r.low is None else f"[{num(r.low)}, {num(r.high)}]"
        lines.append(
            f"| {r.against} | {r.metric} | {r.n} | {num(r.challenger)} | {num(r.reference)} | "
            f"{num(r.difference)} | {interval} | {r.verdict} |"
        )
    return "\n".join(lines)
