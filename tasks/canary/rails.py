"""The rails at a canary step: each version's rail trips counted from the request log's `rails`
column over the step's own rows (the rows its error rate and latency come from), and the
figures a step keeps of them. The comparison itself is `tasks.core.rail_rates`, asked by
`tasks.core.canary.decide_step`."""

from __future__ import annotations

import pandas as pd

from tasks.core.rail_rates import RAILS, TRIPS, RailCounts, count_trips

RAIL_FIGURES = ("rail_trips", *(f"rail_{r}" for r in RAILS), *(f"rail_{a}" for a in TRIPS))


def rail_counts(rows: pd.DataFrame) -> RailCounts | None:
    """The trips of these requests; None when the log has no `rails` column (then the step has
    no rail check rather than a champion and challenger that seem never to trip)."""
    if "rails" not in rows:
        return None
    return count_trips(rows["rails"])


def rail_figures(counts: RailCounts | None) -> dict[str, float | None]:
    """Requests that tripped any rail, each rail, each action (None when not known)."""
    if counts is None:
        return dict.fromkeys(RAIL_FIGURES)
    rails, actions = counts.by_rail(), counts.by_action()
    return {
        "rail_trips": counts.tripped,
        **{f"rail_{r}": rails[r] for r in RAILS},
        **{f"rail_{a}": actions[a] for a in TRIPS},
    }
