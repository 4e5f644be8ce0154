"""Ray: a local instance started on demand, or the cluster named in settings."""

from __future__ import annotations

import signal
import threading
from typing import Any

from tasks.shared.settings import REPO_ROOT, Settings

# The repo's code travels to a remote cluster's workers; state and the venv stay here.
_EXCLUDES = [".venv/", ".llmops/", ".git/", "**/__pycache__/", "benchmarks/"]


def ensure_ray(settings: Settings) -> dict[str, float]:
    """Connect (once per process) and return the cluster's resources."""
    import ray

    if not ray.is_initialized():
        with _sigterm_handler_kept():
            if settings.ray_address:
                runtime_env = {"working_dir": str(REPO_ROOT), "excludes": _EXCLUDES}
                ray.init(address=settings.ray_address, runtime_env=runtime_env)
            else:
                ray.init(include_dashboard=False, log_to_driver=True)
    return dict(ray.cluster_resources())


class _sigterm_handler_kept:
    """`ray.init` replaces the process's SIGTERM handler with `sys.exit`. Under Prefect that
    turned a cancelled flow run into a crashed one (Prefect's runner cancels with SIGTERM and
    its handler tells a cancel from a crash), so the handler in place before is put back.
    Ray's exit hook still disconnects the driver, and the cluster drops the job's actors."""

    def __enter__(self) -> None:
        main = threading.current_thread() is threading.main_thread()
        self.previous = signal.getsignal(signal.SIGTERM) if main else None

    def __exit__(self, *exc: object) -> None:
        if callable(self.previous):  # only a handler someone installed (SIG_DFL stays Ray's)
            signal.signal(signal.SIGTERM, self.previous)


def worker_capacity(resources: dict[str, Any], use_gpu: bool, cpus_per_worker: float) -> int:
    """How many training workers the cluster can place."""
    if use_gpu:
        return int(resources.get("GPU", 0))
    return int(resources.get("CPU", 0) // cpus_per_worker)
