"""Shadow traffic: a share of the live requests is also sent to a version that users do not get
answers from (the canary's first step). The caller's answer never waits for it and never
depends on it; the shadow's answer, refusal or failure goes into the request log under its own
request id, its route prefixed with `SHADOW` so that monitoring leaves it out of served traffic
while the canary judges it like any step."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

from serving.api import ApiError, new_id
from serving.record import Record, complete
from tasks.core.routing import SHADOW

logger = logging.getLogger(__name__)


def checked_shadow(shadow: Mapping[str, float], served: Any) -> dict[str, float]:
    """{version: percent of requests mirrored to it}, each in [0, 100] and served."""
    shares = {str(v): float(p) for v, p in shadow.items()}
    bad = {v: p for v, p in shares.items() if not 0 <= p <= 100}
    if bad:
        raise ValueError(f"shadow shares are percentages in [0, 100], got {bad}")
    unknown = sorted(set(shares) - set(served))
    if unknown:
        raise ValueError(f"shadow names versions that are not served: {unknown}")
    return shares


class Mirror:
    """Sends copies of requests to the router's shadow versions, fire and forget."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.pending: set[asyncio.Task] = set()

    def send(self, req: Any, answered_by: str, record: Any) -> None:
        for version, percent in self.gateway.router.shadow.items():
            if version != answered_by and random.random() * 100 < percent:
                task = asyncio.create_task(self._call(version, req, record))
                self.pending.add(task)  # held until done: the loop keeps only weak references
                task.add_done_callback(self.pending.discard)

    async def _call(self, version: str, req: Any, original: Any) -> None:
        rec = Record(new_id(type(req)), SHADOW + original.route)
        rec.version, rec.prompt, rec.session = version, original.prompt, original.session
        try:
            server = self.gateway.router.servers[version]
            out = await complete(server, req.model_copy(update={"stream": False}))
            if isinstance(out, ApiError):
                rec.refused(out)
            else:
                rec.answered(out)
        except Exception as exc:  # the shadow's failure is data for the canary, not a user's
            logger.warning("shadow request on version %s failed: %r", version, exc)
            rec.refused(
                ApiError(
                    503, f"version {version} failed: {type(exc).__name__}", "model_unavailable"
                )
            )
        await self.gateway.finish(rec)
