"""The rails as a drift signal: the share of requests blocked (by the input or the output rail)
and the share whose retrieved passages tripped the retrieval rail, in the current window
against the reference window of traffic. A significant jump (`tasks.core.rail_rates`: the
increase past its allowance with confidence 1 - alpha) is drift: a wave of injection attempts,
poisoned passages in the index, or answers that started leaking what the output rail blocks.
The report shows both windows' rates either way."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field

from tasks.core.rail_rates import (
    RailCounts,
    RateComparison,
    RateVerdict,
    compare_rates,
    count_trips,
)

BLOCKING = ("input", "output")  # the rails whose `block` refuses the request


class RailDriftParams(BaseModel):
    """When a jump in how often the rails act counts as drift."""

    enabled: bool = Field(True, description="Compare the windows' rail rates.")
    block_rate_increase: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="Rise of the share of requests the input or output rail blocked, absolute "
        "(0.02 = 2 points), that a significant jump must exceed.",
    )
    retrieval_trip_increase: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="Rise of the share of requests with a retrieved passage dropped or "
        "neutralised by the retrieval rail (indirect injection), absolute.",
    )
    alpha: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="One-sided level of each comparison (Newcombe's score interval of the "
        "difference; 0.01 as the other drift checks' 2.33 standard errors).",
    )
    min_requests: int = Field(
        100, ge=1, description="Requests each window needs before a jump is judged."
    )
    retrain: bool = Field(
        True,
        description="A jump emits the drift event (the alert, and the retraining trigger), "
        "as drift of the prompts does.",
    )


class RailWindow(BaseModel):
    """One window's requests and how many of them the rails acted on."""

    requests: int
    blocked: int = Field(description="Requests blocked by the input or the output rail.")
    retrieval: int = Field(description="Requests with a passage dropped or neutralised.")
    tripped: int = Field(description="Requests any rail acted on (block, redact, drop, ...).")
    by_pair: dict[str, int] = Field(default_factory=dict, description='"rail:action" -> requests')

    @classmethod
    def of(cls, counts: RailCounts) -> RailWindow:
        return cls(
            requests=counts.requests,
            blocked=counts.matching(rails=BLOCKING, actions={"block"}),
            retrieval=counts.matching(rails={"retrieval"}),
            tripped=counts.tripped,
            by_pair=counts.by_pair(),
        )


class RailCheck(BaseModel):
    """A check row of the drift report (`CheckRow`'s fields, kind "rails")."""

    name: str
    kind: str = "rails"
    status: Literal["drift", "ok", "not judged"]
    value: float | None  # the rise of the rate (current - reference)
    threshold: float
    reason: str


class RailSummary(BaseModel):
    current: RailWindow
    reference: RailWindow | None  # None: the reference is the training data (no rails)
    checks: list[RailCheck]

    @property
    def drifted(self) -> list[RailCheck]:
        return [c for c in self.checks if c.status == "drift"]


def window_counts(frame: pd.DataFrame) -> RailCounts:
    """The rail trips of a window's requests (none recorded: a log written before the column)."""
    if "rails" not in frame:
        return RailCounts(len(frame))
    return count_trips(frame["rails"])


def _check(found: RateComparison) -> RailCheck:
    status = (
        "drift" if found.verdict is RateVerdict.WORSE else "ok" if found.judged else "not judged"
    )
    return RailCheck(
        name=found.name,
        status=status,
        value=found.difference,
        threshold=found.allowance,
        reason=found.reason,
    )


def rail_summary(
    current: pd.DataFrame, reference: pd.DataFrame | None, params: RailDriftParams
) -> RailSummary | None:
    """Both windows' rates and the two checks (not judged against the training data, which has
    no requests); None when switched off."""
    if not params.enabled:
        return None
    now = RailWindow.of(window_counts(current))
    names = {
        "block rate": params.block_rate_increase,
        "retrieval trip rate": params.retrieval_trip_increase,
    }
    if reference is None:
        why = "the reference is the training data: it has no rail decisions"
        checks = [
            RailCheck(name=n, status="not judged", value=None, threshold=t, reason=why)
            for n, t in names.items()
        ]
        return RailSummary(current=now, reference=None, checks=checks)
    before = RailWindow.of(window_counts(reference))
    labels = ("current", "reference")
    checks = [
        _check(
            compare_rates(
                name,
                getattr(now, field),
                now.requests,
                getattr(before, field),
                before.requests,
                allowance,
                params.alpha,
                params.min_requests,
                labels,
            )
        )
        for (name, allowance), field in zip(names.items(), ("blocked", "retrieval"), strict=True)
    ]
    return RailSummary(current=now, reference=before, checks=checks)


def _rates(window: RailWindow | None) -> str:
    if window is None:
        return "| n/a | n/a | n/a | n/a | n/a |"
    n = window.requests

    def share(k: int) -> str:
        return f"{k} ({100 * k / n:.1f}%)" if n else f"{k}"

    pairs = ", ".join(f"{p} {k}" for p, k in window.by_pair.items()) or "none"
    trips = (window.blocked, window.retrieval, window.tripped)
    return f"| {n} | " + " | ".join(share(k) for k in trips) + f" | {pairs} |"


def rails_markdown(summary: RailSummary) -> str:
    """The windows' rail rates as a table for the drift summary."""
    return (
        "Rails (requests each acted on):\n\n"
        "| window | requests | blocked (input/output) | retrieval tripped | any rail | "
        "per rail:action |\n|---|---:|---:|---:|---:|---|\n"
        f"| current {_rates(summary.current)}\n| reference {_rates(summary.reference)}\n"
    )
