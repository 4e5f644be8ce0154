"""How each version's model application is built (the same for every version of an app):
its engine, batch and queue, and the resources and replicas of its `ModelServer`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Engine = Literal["continuous", "static"]


@dataclass(frozen=True)
class Autoscaling:
    """Serve's autoscaling on ongoing requests: replicas are added when a version's replicas
    hold more than `target_ongoing_requests` each (queued and running), removed when fewer."""

    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 8.0
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                f"autoscaling needs 0 <= min_replicas <= max_replicas >= 1, got "
                f"{self.min_replicas} and {self.max_replicas}"
            )
        if self.target_ongoing_requests <= 0:
            raise ValueError("target_ongoing_requests must be > 0")

    def config(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
        }


@dataclass(frozen=True)
class ModelOptions:
    """`engine` "continuous" batches per decoding step (`serving.engine`); "static" is Serve's
    `@serve.batch` (a batch formed when requests arrive, run to its longest answer), kept as
    the baseline the serving benchmark measures against. `max_queue` requests may wait per
    replica beyond the `max_batch_size` decoded at once; more are answered 429.
    `batch_wait_timeout_s` applies to "static" only."""

    engine: Engine = "continuous"
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.01
    max_queue: int = 64
    model_cpus: float = 1.0
    model_gpus: float = 0.0
    model_replicas: int = 1
    autoscaling: Autoscaling | None = None

    def __post_init__(self) -> None:
        if self.engine not in ("continuous", "static"):
            raise ValueError(f"engine is 'continuous' or 'static', not {self.engine!r}")
        if self.max_batch_size < 1 or self.max_queue < 0 or self.model_replicas < 1:
            raise ValueError("max_batch_size and model_replicas >= 1, max_queue >= 0")
        if self.model_cpus <= 0 or not 0 <= self.model_gpus <= 1:
            raise ValueError("model_cpus must be > 0 and model_gpus in [0, 1] (one device)")

    @classmethod
    def from_args(cls, args: Any, autoscaling: Autoscaling | None = None) -> ModelOptions:
        """From `python -m serving`'s flags or a RayService's args, which share these names."""
        return cls(
            engine=args.engine,
            max_batch_size=args.max_batch_size,
            batch_wait_timeout_s=args.batch_wait_ms / 1000,
            max_queue=args.max_queue,
            model_cpus=args.model_cpus,
            model_gpus=args.model_gpus,
            model_replicas=args.model_replicas,
            autoscaling=autoscaling,
        )

    @property
    def max_ongoing_requests(self) -> int:
        """What Serve lets into one replica: the batch, the queue, and room for requests in
        retrieval; beyond it callers wait in the router's handle instead of getting a 429."""
        return self.max_batch_size + self.max_queue + self.max_batch_size

    def deployment(self) -> dict[str, Any]:
        """`ModelServer.options(...)` for these options."""
        actor: dict[str, Any] = {"num_cpus": self.model_cpus}
        if self.model_gpus:
            actor["num_gpus"] = self.model_gpus
        scale: dict[str, Any] = (
            {"autoscaling_config": self.autoscaling.config()}
            if self.autoscaling
            else {"num_replicas": self.model_replicas}
        )
        return {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            **scale,
        }
