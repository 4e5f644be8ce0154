"""Adapters to external systems, each built from `Settings` when first asked for, never at
import. A task builds one `Clients` for its run and hands it to the plain functions it calls,
so one run talks to each system through one client."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tasks.shared.settings import Settings, get_settings

if TYPE_CHECKING:
    import mlflow

    from tasks.clients.feature_store import ChunkIndex
    from tasks.clients.judge import Judge
    from tasks.clients.registry import ModelRegistry
    from tasks.clients.releases import Releases
    from tasks.clients.serve import ServeControl


@dataclass
class Clients:
    """The run's clients; each is built on first use (its SDK imported then too)."""

    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def registry(self) -> ModelRegistry:
        """MLflow's model registry: versions, aliases and their history, verified local copies."""
        from tasks.clients.registry import ModelRegistry

        return ModelRegistry(self.settings)

    @cached_property
    def releases(self) -> Releases:
        """Release records: a version's instruction (prompt registry), retrieval and limits."""
        from tasks.clients.releases import Releases

        return Releases(self.settings, self.registry)

    @cached_property
    def tracking(self) -> mlflow.MlflowClient:
        """MLflow tracking: runs, their parameters, metrics and artifacts."""
        from tasks.clients.tracking import connect

        return connect(self.settings)

    @cached_property
    def index(self) -> ChunkIndex:
        """The chunk index: Feast over Milvus (Lite or a server)."""
        from tasks.clients.feature_store import ChunkIndex

        return ChunkIndex(self.settings)

    @cached_property
    def serve(self) -> ServeControl:
        """The serving application on Ray Serve, and its router over HTTP."""
        from tasks.clients.serve import ServeControl

        return ServeControl(self.settings)

    @cached_property
    def judge(self) -> Judge | None:
        """The optional LLM judge (an OpenAI-compatible endpoint); None when none is set."""
        if not self.settings.judge_url:
            return None
        from tasks.clients.judge import Judge

        return Judge(self.settings)

    def ray(self) -> dict[str, Any]:
        """Connect this process to Ray (local or the cluster in settings); its resources."""
        from tasks.clients.ray_cluster import ensure_ray

        return ensure_ray(self.settings)
