"""Measuring what a stage held and used: the flow's own process, and the Ray Train workers it
started (each reports its own usage, since Ray workers are not children of the driver)."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from tasks.core.cost import Prices, StageUsage, Usage, stage_usage

FLOW_PROCESS = "flow process"
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_active: list[ProcessMeter] = []  # meters running now, outermost first (stages nest)


def process_cores() -> int:
    """The cores this process may run on (its CPU affinity): torch's and the tokenizers' thread
    pools size themselves by it, so the process holds them whether it keeps them busy or not."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _peak_rss() -> int:
    """Peak resident memory since the last reset (Linux VmHWM), else since the process began."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _reset_peak() -> None:
    """Restart the peak-memory count (Linux: '5' > clear_refs), first handing the peak so far to
    the meters already running, so an outer stage keeps the peaks of the inner ones."""
    peak = _peak_rss()
    for meter in _active:
        meter.seen_peak = max(meter.seen_peak, peak)
    # Not Linux: the lifetime peak stands in (an overestimate, never an underestimate).
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def _cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of this process and of its finished children (threads included)."""
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


class ProcessMeter:
    """Wall time, CPU time, cores held and peak memory of this process over a block."""

    def __init__(self, part: str = FLOW_PROCESS) -> None:
        self.part = part
        self.seen_peak = 0

    def __enter__(self) -> ProcessMeter:
        self._process = psutil.Process()
        _reset_peak()
        _active.append(self)
        self._cpu0, self._t0 = _cpu_seconds(self._process), time.perf_counter()
        return self

    def usage(self) -> Usage:
        """What the block has held and used so far."""
        return Usage(
            part=self.part,
            node=socket.gethostname(),
            wall_s=time.perf_counter() - self._t0,
            cores=process_cores(),
            cpu_s=max(_cpu_seconds(self._process) - self._cpu0, 0.0),
            peak_memory_bytes=max(self.seen_peak, _peak_rss()),
        )

    def __exit__(self, *exc: object) -> None:
        self.final = self.usage()
        _active.remove(self)


def worker_report(rank: int) -> dict[str, Any]:
    """A Ray Train worker's own usage, from inside it: its process's CPU time and peak RSS."""
    import ray

    own = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "rank": rank,
        "node": ray.get_runtime_context().get_node_id(),
        "cpu_s": own.ru_utime + own.ru_stime,
        "peak_memory_bytes": own.ru_maxrss * 1024,
    }


def gather_worker_reports(rank: int) -> list[dict[str, Any]]:
    """Every worker's `worker_report`, gathered to all (Ray keeps only rank 0's metrics)."""
    import torch.distributed as dist

    mine = worker_report(rank)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return sorted(gathered, key=lambda r: r["rank"])


def ray_worker_usage(
    reports: list[dict[str, Any]],
    wall_s: float,
    cpus_per_worker: float,
    use_gpu: bool,
    gpu_type: str | None,
) -> list[Usage]:
    """The workers' parts: each held its CPUs (and GPU) for the whole training wall time."""
    return [
        Usage(
            part=f"ray worker {r['rank']}",
            node=str(r["node"]),
            wall_s=wall_s,
            cores=cpus_per_worker,
            cpu_s=float(r["cpu_s"]),
            gpus=1.0 if use_gpu else 0.0,
            gpu_type=gpu_type if use_gpu else None,
            peak_memory_bytes=int(r["peak_memory_bytes"]),
        )
        for r in reports
    ]


class StageMeter:
    """Measures each stage of a pipeline run in the flow's process, and prices it."""

    def __init__(self, prices: Prices | None = None) -> None:
        from tasks.shared.settings import get_settings

        self.prices = prices or get_settings().prices
        self.stages: list[StageUsage] = []

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Measure the block as one stage (a failed stage is not priced: the run fails)."""
        with ProcessMeter() as meter:
            yield
        self.stages.append(stage_usage(stage, meter.final.wall_s, [meter.final], self.prices))

    def add_parts(self, stage: str, parts: list[Usage]) -> None:
        """Parts measured elsewhere (Ray workers) join a stage measured here."""
        i, found = next((i, s) for i, s in enumerate(self.stages) if s.stage == stage)
        self.stages[i] = stage_usage(stage, found.wall_s, [*found.parts, *parts], self.prices)
