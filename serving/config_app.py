"""The Serve application for declarative deploys: `serve deploy` configs and a KubeRay
RayService's serveConfigV2 (`infra/serving/rayservice.yaml`) name

    import_path: serving.config_app:build
    args: {model_name: ..., weights: [{version: ..., weight: ...}, ...], model_cpus: ...,
           model_replicas: 2, control_labels: {llmops.io/role: control}}

Serve validates `args` into `ServingArgs` and calls `build` in the cluster (the controller's
build task); endpoints and secrets come from the LLMOPS_* environment of the Ray pods, as
everywhere else. Without `weights`, the registry's aliases decide, as for `python -m serving`:
the champion takes all traffic and a challenger is served at weight 0, and the app follows the
aliases from then on (`serving.follow`): promoting or rolling back needs no redeploy.
"""

# No `from __future__ import annotations` here: Serve converts `args` into the builder's
# pydantic model only when the parameter's annotation is the class itself, not a string.

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray.serve import Application

from serving.app import build_app
from serving.options import Autoscaling, ModelOptions
from tasks.clients.registry import MODEL_NAME, model_registry
from tasks.core.promotion import REGISTERED_MODEL
from tasks.shared.settings import Settings, get_settings


class VersionWeight(BaseModel):
    """One served version and its share of the traffic."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)  # version: 4 is "4"

    version: str = Field(min_length=1)
    weight: float = Field(ge=0)


Weights = list[VersionWeight] | None


class AutoscalingArgs(BaseModel):
    """Serve's autoscaling of each version's replicas on ongoing requests per replica."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(
        8.0, gt=0, description="Per replica; about max_batch_size keeps each batch full."
    )
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(300.0, ge=0)


class ServingArgs(BaseModel):
    """The application's `args`. Unknown keys are refused: a misspelt option in a manifest
    fails the deploy instead of being ignored."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(REGISTERED_MODEL, pattern=MODEL_NAME.pattern)
    # A list, not a mapping: KubeRay passes serveConfigV2 through a Go map, which sorts keys,
    # and the routing order (challenger first) matters.
    weights: Weights = Field(
        None, min_length=1, description="Routing order; none = from the registry's aliases."
    )
    engine: Literal["continuous", "static"] = Field(
        "continuous",
        description="continuous: batch per decoding step; static: Serve's @serve.batch.",
    )
    max_batch_size: int = Field(8, ge=1, description="Rows decoded at once per replica.")
    max_queue: int = Field(64, ge=0, description="Requests waiting per replica; more get 429.")
    batch_wait_ms: float = Field(10.0, ge=0, description="The static engine's batch window.")
    model_cpus: float = Field(1.0, gt=0, description="CPUs per model replica.")
    model_gpus: float = Field(0.0, ge=0, description="GPUs per model replica (bf16 there).")
    model_replicas: int = Field(1, ge=1, description="Replicas per version, spread over nodes.")
    autoscaling: AutoscalingArgs | None = Field(
        None, description="Scale each version on ongoing requests; replaces model_replicas."
    )
    control_labels: dict[str, str] | None = Field(
        None, description="Ray node labels the router and retriever must run on (the head's)."
    )
    follow_s: float | None = Field(
        None,
        ge=0,
        description="Follow the registry's aliases, read this often (none = the settings', "
        "LLMOPS_SERVING_FOLLOW_S; 0 = never). Pinned weights are never followed.",
    )
    bake_s: float | None = Field(
        None, ge=0, description="How long a replaced champion stays loaded at weight 0."
    )

    @field_validator("weights")
    @classmethod
    def _one_weight_per_version(cls, weights: Weights) -> Weights:
        versions = [w.version for w in weights or []]
        if len(set(versions)) != len(versions):
            raise ValueError(f"a version is listed twice: {versions}")
        return weights


def weights_of(args: ServingArgs, settings: Settings) -> dict[str, float]:
    """The explicit weights, in order (no service is asked), or the registry's
    champion/challenger split."""
    if args.weights is not None:
        return {w.version: w.weight for w in args.weights}
    from serving.__main__ import weights_from_aliases  # pulls in the registry stage: lazily

    return weights_from_aliases(model_registry(settings).aliases(args.model_name))


def build(args: ServingArgs) -> Application:
    """The bound application (nothing starts here: Serve deploys what this returns)."""
    settings = get_settings()
    return build_app(
        settings,
        args.model_name,
        weights_of(args, settings),
        options=model_options(args),
        control_labels=args.control_labels,
        follow_s=follow_period(args, settings),
        bake_s=args.bake_s,
    )


def model_options(args: ServingArgs) -> ModelOptions:
    scaling = args.autoscaling
    return ModelOptions.from_args(args, Autoscaling(**scaling.model_dump()) if scaling else None)


def follow_period(args: ServingArgs, settings: Settings) -> float:
    """Seconds between readings of the aliases; 0 when the weights are pinned."""
    if args.weights is not None:
        return 0.0
    return settings.serving_follow_s if args.follow_s is None else args.follow_s
