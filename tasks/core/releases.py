"""What a serving app that follows the registry holds, and how it routes, given the aliases.

The app reads the model's aliases every few seconds and reconciles in place:
- a new champion takes all traffic; the champion before it stays loaded at weight 0 for a bake
  period, so that rolling back to it is a weight change, not a model load;
- the challenger is held at weight 0 until a canary raises its share (the canary sets the
  weights between alias changes; following never overrides them while the aliases stand);
- a version that no alias names any more, and that is not baking, is released.

Pure: the clock is an argument, versions are strings, nothing is loaded here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from tasks.core.promotion import CHALLENGER, CHAMPION


@dataclass(frozen=True)
class Followed:
    """The aliases as last applied, and the previous champion while it bakes."""

    champion: str | None = None
    challenger: str | None = None
    previous: str | None = None
    bake_until: float = 0.0

    def held(self) -> list[str]:
        """Versions to keep loaded, in routing order (challenger first, see `routing`)."""
        order = (self.challenger, self.champion, self.previous)
        return list(dict.fromkeys(v for v in order if v is not None))


@dataclass(frozen=True)
class Reconcile:
    """One step of following: the new state, what to load before routing to it, what to
    release, and the new split (None: leave the live one as it is)."""

    state: Followed
    load: list[str]
    release: list[str]
    weights: dict[str, float] | None


def follow(
    state: Followed,
    aliases: Mapping[str, str],
    weights: Mapping[str, float],
    now: float,
    bake_s: float,
) -> Reconcile:
    """The step from `state` given the registry's `aliases` and the live `weights` (whose keys
    are the loaded versions, in routing order).

    A model without a champion changes nothing: clearing it is not a way to stop serving.
    Only versions that an alias brought are released; one loaded by whoever deployed the app
    (pinned weights) stays, at weight 0 once a champion takes all traffic."""
    champion, challenger = aliases.get(CHAMPION), aliases.get(CHALLENGER)
    if champion is None:
        return Reconcile(state, [], [], None)
    challenger = challenger if challenger != champion else None
    new = replace(state, champion=champion, challenger=challenger)
    changed = champion != state.champion
    if changed and state.champion is not None:  # the old champion bakes, warm
        new = replace(new, previous=state.champion, bake_until=now + bake_s)
    if new.previous in (champion, challenger) or now >= new.bake_until:
        new = replace(new, previous=None, bake_until=0.0)
    held = new.held()
    release = [v for v in state.held() if v not in held and v in weights]
    load = [v for v in held if v not in weights]
    order = held + [v for v in weights if v not in held and v not in release]
    # The first reading keeps the split the app was deployed with, unless it starves the champion.
    takes_all = changed and (state.champion is not None or not weights.get(champion))
    if takes_all:
        return Reconcile(new, load, release, {v: 100.0 * (v == champion) for v in order})
    if not (load or release):
        return Reconcile(new, [], [], None)
    live = {v: float(weights.get(v, 0.0)) for v in order}
    if sum(live.values()) <= 0:
        live[champion] = 100.0
    return Reconcile(new, load, release, live)
