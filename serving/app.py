"""The Ray Serve application: a FastAPI router splitting traffic by weight between the served
versions, each an application of its own, and one retriever for RAG.

    HTTP ─► Router (auth, routing, request log, metrics) ─► app "<name>-v<version>": ModelServer × n
            Retriever (embedder, index) ◄──────────────────────────────┘

The router also takes feedback on answers (`POST /v1/feedback`) into the feedback log.

Changing the split at runtime (the canary's steps, following the registry) is `set_weights` (a
handle call inside the cluster) or `POST /admin/weights` (the admin key, never a caller's): the
router swaps one dict, in place, so nothing restarts, no model reloads and no request is
dropped. A version is added or released as its own application (`serving.versions`), so the
router and the versions already loaded never restart for it. Not `serve.run` of this app again:
Serve gives every deployment built in Python a fresh random version on each run, so a redeploy
replaces the router (a rolling update, surging: see ROLLOUT). The weights given at deploy time
are the router's `user_config`; a declarative deploy (`serve deploy`, a RayService's
serveConfigV2) changes them in place through `reconfigure`, and a restarted router starts from
them again and adopts the version applications still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from serving.http import http_app
from serving.model import RETRIEVER, ROLLOUT
from serving.options import ModelOptions
from serving.retriever import Retriever
from serving.shadow import checked_shadow
from serving.tracing import tracer
from serving.versions import Versions
from tasks.clients.secrets import with_serving_key
from tasks.core.routing import normalise_weights
from tasks.shared.settings import Settings

logger = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256, **ROLLOUT)
@serve.ingress()
class Router:
    """Holds a handle per served version and the weights; the HTTP side is `serving.http`.
    Versions are applications of their own (`serving.versions`), added and released in place;
    with `follow_s`, the router follows the registry's aliases (`serving.follow`)."""

    def __init__(
        self,
        settings: Settings,
        model_name: str,
        retriever: DeploymentHandle,  # bound so that the retriever is part of this app
        options: ModelOptions,
        log_flush_s: float = 30.0,
        follow_s: float | None = None,
        bake_s: float = 3600.0,
    ) -> None:
        from serving.follow import Follower
        from serving.metrics import ServingMetrics
        from tasks.clients.request_log import FeedbackLog, RequestLog

        self.settings, self.model_name = settings, model_name
        self.servers: dict[str, DeploymentHandle] = {}
        self.weights: dict[str, float] = {}
        self.shadow: dict[str, float] = {}  # version -> % of live requests mirrored to it
        app_name = serve.get_replica_context().app_name
        self.versions = Versions(settings, model_name, app_name, options)
        self.metrics = ServingMetrics()
        self.log = RequestLog(settings.requests_dir, parts=settings.requests_location)
        self.feedback = FeedbackLog(settings.feedback_dir, parts=settings.feedback_location)
        self.log_flush_s = log_flush_s
        self.max_body_bytes = settings.serving_max_body_bytes
        tracer(settings)  # the router's spans go where the settings say (or nowhere)
        self.follower = Follower(self, follow_s, bake_s) if follow_s else None
        self.changes = asyncio.Lock()  # one load, release or split change at a time
        key, admin = settings.serving_api_key, settings.serving_admin_key
        self.api_key = key.get_secret_value() if key else None
        self.admin_key = admin.get_secret_value() if admin else None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config {"weights": {version: weight}}, applied in place (see the module doc);
        a version not loaded yet is loaded first (the replica is ready once all are)."""
        weights = {str(v): float(w) for v, w in config.get("weights", {}).items()}
        checked_weights(weights, weights)
        for version in weights:
            if version not in self.servers:
                self.servers[version] = self.versions.load(version)
        self.weights = checked_weights(weights, self.servers)

    async def set_weights(self, weights: dict[str, float]) -> dict[str, float]:
        """New weights for the next requests (in routing order); ValueError leaves them as
        they were. A loaded version left out keeps weight 0 (reachable by pinning)."""
        checked = checked_weights(weights, self.servers)
        self.weights = checked | {v: 0.0 for v in self.servers if v not in checked}
        logger.info("weights now %s", self.weights)
        return self.weights

    async def set_shadow(self, shadow: dict[str, float]) -> dict[str, float]:
        """Mirror a share of live requests to versions whose answers users do not get
        (`serving.shadow`); {} stops it. ValueError leaves it as it was."""
        self.shadow = checked_shadow(shadow, self.servers)
        logger.info("shadow now %s", self.shadow)
        return self.shadow

    async def add_version(self, version: str) -> None:
        """Load a version beside the others, at weight 0 (a no-op when it is loaded)."""
        async with self.changes:
            if version in self.servers:
                return
            handle = await asyncio.to_thread(self.versions.load, version)
            self.servers = {**self.servers, version: handle}
            self.weights = {**self.weights, version: 0.0}

    async def served(self) -> list[str]:
        return list(self.servers)

    async def remove_version(self, version: str) -> None:
        """Stop routing to a version and release it; refused while it carries traffic."""
        async with self.changes:
            if version not in self.servers:
                return
            if self.weights.get(version, 0.0) > 0:
                raise ValueError(f"version {version} still has weight {self.weights[version]}")
            self.weights = {v: w for v, w in self.weights.items() if v != version}
            self.shadow = {v: p for v, p in self.shadow.items() if v != version}
            self.servers = {v: h for v, h in self.servers.items() if v != version}
            await asyncio.to_thread(self.versions.release, version)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return http_app(self)

    def __del__(self) -> None:
        self.log.close()  # moves what the WALs hold into parquet
        self.feedback.close()


def checked_weights(weights: Mapping[str, float], served: Any) -> dict[str, float]:
    """Weights over served versions only, in their given (routing) order."""
    weights = {str(v): w for v, w in weights.items()}
    normalise_weights(weights)  # raises on empty, negative, non-finite or all-zero weights
    unknown = sorted(set(weights) - set(served))
    if unknown:
        raise ValueError(f"weights name versions that are not served: {unknown}")
    return weights


def build_app(
    settings: Settings,
    model_name: str,
    weights: Mapping[str, float],
    *,
    options: ModelOptions | None = None,
    control_labels: Mapping[str, str] | None = None,
    log_flush_s: float = 30.0,
    follow_s: float | None = None,
    bake_s: float | None = None,
    **model: Any,
) -> Application:
    """The bound router application (router and retriever); the router loads one model
    application per version in `weights` before it is ready (a weight of 0 is served but only
    reached by pinning). Weights are walked in order: list the challenger first so that raising
    its share only moves callers towards it.

    `options` (or its fields as keywords, `model_replicas=2`: what callers that cannot import
    serving pass) say how each version's `ModelServer` is built: its engine, batch and queue,
    resources, and `model_replicas` replicas per version (or autoscaling), which Serve
    spreads over the nodes (best effort: its default placement is SPREAD), so losing a node
    loses some replicas of each version, not a version. The router (one replica: it holds the
    live split) and the retriever are single; `control_labels` (a Ray label selector, e.g.
    {"llmops.io/role": "control"}, given to the head with `ray start --labels`) keeps them on
    the node(s) that carry those labels, so that losing a worker node does not take the entry
    point down with it.

    `follow_s`: read the registry's aliases that often and follow them in place (a new
    champion takes all traffic; the old one stays loaded at weight 0 for `bake_s`); None or 0
    serves what `weights` name. `bake_s` defaults to the settings'."""
    weights = {str(v): float(w) for v, w in weights.items()}
    checked_weights(weights, weights)
    bake_s = settings.serving_bake_s if bake_s is None else bake_s
    if (follow_s or 0) < 0 or bake_s < 0:
        raise ValueError(f"follow_s and bake_s must be >= 0, got {follow_s} and {bake_s}")
    settings = with_serving_key(settings)  # the replicas get the key, not the secret's name
    control = control_options(control_labels)
    retriever = Retriever.options(name=RETRIEVER, ray_actor_options=control).bind(settings)
    if options and model:
        raise ValueError(f"give options or its fields, not both: {sorted(model)}")
    options = options or ModelOptions(**model)
    router = Router.options(user_config={"weights": weights}, ray_actor_options=control)
    return router.bind(settings, model_name, retriever, options, log_flush_s, follow_s, bake_s)


def control_options(labels: Mapping[str, str] | None) -> dict[str, Any]:
    """Actor options of the router and the retriever: no CPU (they wait on the models), and
    only on nodes carrying `labels` when given (Serve and Ray check the selector's syntax)."""
    options: dict[str, Any] = {"num_cpus": 0}
    if labels:
        options["label_selector"] = {str(k): str(v) for k, v in labels.items()}
    return options


def deploy(
    settings: Settings,
    model_name: str,
    weights: Mapping[str, float],
    name: str = "llmops",
    route_prefix: str = "/",
    **options: Any,
) -> DeploymentHandle:
    """Start the application (its versions are loaded before this returns). To change the
    split or the versions of a running one, use `tasks.clients.serve.ServeControl`: calling
    this again replaces the router (a rolling update)."""
    return serve.run(
        build_app(settings, model_name, weights, **options), name=name, route_prefix=route_prefix
    )
