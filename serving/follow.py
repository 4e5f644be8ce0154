"""The router follows the registry: it reads the model's aliases every `follow_s` seconds and
reconciles in place (`tasks.core.releases.follow`): a version it needs is loaded beside the
others before it takes traffic, a new champion takes all traffic by a weight change, the old
one bakes warm at weight 0, and what no alias names any more is released.

MLflow's registry webhooks only fire from a tracking server; polling works on every store
(SQLite here) and costs one registry read per period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tasks.core.releases import Followed, follow

logger = logging.getLogger(__name__)


class Follower:
    def __init__(self, router: Any, follow_s: float, bake_s: float) -> None:
        from tasks.clients.registry import model_registry

        self.router, self.follow_s, self.bake_s = router, follow_s, bake_s
        self.registry = model_registry(router.settings)
        self.state = Followed()

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # the registry or a load failed: serve on as is, try again
                logger.exception("following the registry failed; retrying")
            await asyncio.sleep(self.follow_s)

    async def step(self) -> None:
        router = self.router
        aliases = await asyncio.to_thread(self.registry.aliases, router.model_name)
        plan = follow(self.state, aliases, router.weights, time.time(), self.bake_s)
        for version in plan.load:  # warm before any traffic; the split waits for it
            await router.add_version(version)
        if plan.load:  # planned again on the live split: a canary may have moved it meanwhile
            plan = follow(self.state, aliases, router.weights, time.time(), self.bake_s)
        # No await between planning and setting the split: nothing can change it in between.
        if plan.weights is not None:
            await router.set_weights(plan.weights)
            logger.info("following %s: weights now %s", aliases, router.weights)
        for version in plan.release:
            await router.remove_version(version)
        self.state = plan.state

    def describe(self) -> dict[str, Any]:
        s = self.state
        return {
            "champion": s.champion,
            "challenger": s.challenger,
            "baking": s.previous,
            "bake_left_s": round(max(0.0, s.bake_until - time.time()), 1) if s.previous else 0,
            "follow_s": self.follow_s,
        }
