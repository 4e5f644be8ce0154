"""What the canary rollout takes and hands on: parameters, each step's figures and verdict, the
outcome, and its markdown report."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.clients.registry import MODEL_NAME
from tasks.core.promotion import REGISTERED_MODEL
from tasks.core.rail_rates import RAILS, TRIPS
from tasks.evaluate.params import AnswerParams, ContractParams

ROLLED_BACK_EVENT = "llmops.canary.rolled-back"  # prefect.yaml's alert-canary-rolled-back


class ThresholdParams(BaseModel):
    """How much worse than the champion the challenger may be before it is rolled back."""

    max_error_rate_increase: float = Field(0.01, ge=0, description="Absolute (0.01 = 1 point).")
    max_p95_ratio: float = Field(1.5, gt=0, description="Challenger p95 / champion p95.")
    max_quality_regression: float = Field(0.02, ge=0, description="Relative bits/byte worse.")
    min_requests: int = Field(20, ge=1, description="Per version, before a step is judged.")
    max_rail_trip_increase: float = Field(
        0.02,
        ge=0,
        lt=1,
        title="Most rail-trip rise",
        description="Share of requests that trip a rail (block, redact, drop, neutralise), "
        "absolute (0.02 = 2 points): the challenger's more than the champion's by this, "
        "significantly, rolls back; an inconclusive comparison never does.",
    )
    rail_alpha: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        title="Rail-trip significance",
        description="One-sided level of the rail-trip comparison (Newcombe's score interval "
        "of the difference; tasks/core/rail_rates.py).",
    )


class CanaryParams(BaseModel):
    """Roll the challenger out on the running app, step by step, with automatic rollback."""

    model_name: str = Field(
        REGISTERED_MODEL, pattern=MODEL_NAME.pattern, description="Registered model rolled out."
    )
    steps: list[float] = Field([5, 25, 50, 100], description="Challenger %, ending at 100.")
    shadow_percent: float = Field(
        0,
        ge=0,
        le=100,
        title="Shadow step (% mirrored)",
        description="First mirror this share of live requests to the challenger: users get the "
        "champion's answers only, the challenger's are logged and judged like a step's. "
        "0 = no shadow step.",
    )
    thresholds: ThresholdParams = Field(
        default_factory=ThresholdParams, description="When a step rolls back."
    )
    max_wait_s: float = Field(
        300, gt=0, title="Most seconds a step waits", description="Per step, for enough requests."
    )
    answer_check: bool = Field(
        True, description="Both versions answer the same pinned held-out questions each step."
    )
    pinned_questions: int = Field(
        40, ge=1, description="Pinned questions per round; an inconclusive step adds a round."
    )
    max_extensions: int = Field(
        2, ge=0, description="Rounds an inconclusive step may add before it ends inconclusive."
    )
    contract: ContractParams = Field(
        default_factory=ContractParams, description="How the pinned answers are compared."
    )
    answers: AnswerParams = Field(default_factory=AnswerParams, description="How they answer.")
    replay: bool = Field(True, description="Replay held-out prompts when live traffic is short.")
    replay_max_tokens: int = Field(8, ge=1, le=256, description="Tokens per replayed answer.")
    app_name: str = Field("llmops", description="Serve application name.")
    router_url: str = Field(
        "http://127.0.0.1:8000", description="The serving app's HTTP address (Serve's proxy)."
    )
    model_cpus: float = Field(1.0, gt=0, description="CPUs per model replica, when deploying.")
    model_replicas: int = Field(
        1, ge=1, description="Replicas per version, when deploying (spread over the nodes)."
    )
    control_labels: dict[str, str] = Field(
        default_factory=dict,
        description="When deploying: Ray node labels the router and retriever stay on (e.g. "
        "the head's), so losing another node never takes the entry point; empty = any node.",
    )

    def deploy_options(self) -> dict[str, Any]:
        """How the app is (re)deployed by the canary: as `python -m serving` would with these."""
        return {
            "model_cpus": self.model_cpus,
            "model_replicas": self.model_replicas,
            "control_labels": self.control_labels or None,
            "log_flush_s": 5.0,
        }


class StepResult(BaseModel):
    percent: float
    shadow: float = Field(0, description="% of live requests mirrored (a shadow step; percent 0)")
    action: str
    reasons: list[str]
    stats: dict[str, dict[str, float | None]]  # "champion"/"challenger" -> figures
    replayed: int
    seconds: float
    pinned: int = Field(0, description="Pinned questions both versions answered.")
    extensions: int = Field(0, description="Rounds added because answers were inconclusive.")

    @property
    def label(self) -> str:
        return f"shadow {self.shadow:g}%" if self.shadow else f"{self.percent:g}%"


class CanaryOutcome(BaseModel):
    model_name: str
    champion: str  # before the rollout
    challenger: str
    verdict: str  # promoted | rolled back | inconclusive
    steps: list[StepResult]
    champion_now: str | None
    challenger_now: str | None
    served_now: list[str]


def report_markdown(outcome: CanaryOutcome) -> str:
    o = outcome
    rows = []
    for s in o.steps:
        for role in ("champion", "challenger"):
            f = s.stats[role]
            q = "n/a" if f["quality_bpb"] is None else f"{f['quality_bpb']:.4f}"
            rows.append(
                f"| {s.label} | {role} | {f['requests']:.0f} | {f['errors']:.0f} | "
                f"{f['p95_ms']:.1f} | {q} | {_num(f.get('pinned_token_f1'))} | "
                f"{_num(f.get('live_groundedness'))} | {s.action} | {s.pinned} "
                f"(+{s.extensions}) | {s.replayed} |"
            )
    reasons = "\n".join(f"- {r}" for r in o.steps[-1].reasons) if o.steps else ""
    rails = rails_markdown(o.steps)
    return (
        f"# Canary of {o.model_name} v{o.challenger} against v{o.champion}: {o.verdict}\n\n"
        f"Champion now v{o.champion_now or 'none'}, challenger v{o.challenger_now or 'none'}, "
        f"served: {', '.join(f'v{v}' for v in o.served_now) or 'nothing answered'}\n\n"
        "| step | version | requests | errors (5xx) | p95 ms | bits/byte | pinned token F1 | "
        "live groundedness | verdict | pinned (rounds added) | replayed |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
        + "\n".join(rows)
        + f"\n\n## Reasons at the last step\n\n{reasons}\n"
        + (f"\n## Rail trips\n\n{rails}\n" if rails else "")
    )


_RAIL_COLUMNS = (*RAILS, *TRIPS)


def rails_markdown(steps: list[StepResult]) -> str:
    """Per step and version: requests that tripped any rail, then each rail and each action
    (a request counts once per column it tripped); empty when no step knew the decisions."""
    rows = []
    for s in steps:
        for role in ("champion", "challenger"):
            f = s.stats.get(role, {})
            trips = f.get("rail_trips")
            if trips is None:
                continue
            n = f["requests"] or 0
            rate = f"{100 * trips / n:.1f}%" if n else "n/a"
            each = " | ".join(f"{f.get(f'rail_{c}') or 0:.0f}" for c in _RAIL_COLUMNS)
            rows.append(f"| {s.label} | {role} | {n:.0f} | {trips:.0f} ({rate}) | {each} |")
    if not rows:
        return ""
    head = " | ".join(_RAIL_COLUMNS)
    return (
        f"| step | version | requests | tripped | {head} |\n"
        f"|---|---|---:|---:|{'---:|' * len(_RAIL_COLUMNS)}\n" + "\n".join(rows)
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
