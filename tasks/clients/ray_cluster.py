"""Ray: a local instance started on demand, or the cluster named in settings."""

from __future__ import annotations

from typing import Any

from tasks.settings import REPO_ROOT, Settings

# The repo's code travels to a remote cluster's workers; state and the venv stay here.
_EXCLUDES = [".venv/", ".llmops/", ".git/", "**/__pycache__/", "benchmarks/"]


def ensure_ray(settings: Settings) -> dict[str, float]:
    """Connect (once per process) and return the cluster's resources."""
    import ray

    if not ray.is_initialized():
        if settings.ray_address:
            runtime_env = {"working_dir": str(REPO_ROOT), "excludes": _EXCLUDES}
            ray.init(address=settings.ray_address, runtime_env=runtime_env)
        else:
            ray.init(include_dashboard=False, log_to_driver=True)
    return dict(ray.cluster_resources())


def worker_capacity(resources: dict[str, Any], use_gpu: bool, cpus_per_worker: float) -> int:
    """How many training workers the cluster can place."""
    if use_gpu:
        return int(resources.get("GPU", 0))
    return int(resources.get("CPU", 0) // cpus_per_worker)
