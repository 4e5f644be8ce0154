"""What the stages' `@task` decorators are given: cache keys of the stages' main tasks, where
their results are kept, and which failures a retry is for.

A stage's result is reused (a `Cached` task run) when the same task code ran to completion on
the same inputs against the same state: a nightly that failed in compression and is started
again with the same parameters skips ingest, embed and fine-tuning and resumes at compression.
A key is only made when the inputs name exactly what the stage works on: "the latest snapshot"
or "the latest run" (an empty `snapshot_id` / `source_run_id`) is never cached, since what it
names changes. Set `PREFECT_TASKS_REFRESH_CACHE=true` to recompute everything anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, get_type_hints

from prefect import Task
from prefect.cache_policies import TASK_SOURCE
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from tasks.core import rails
from tasks.shared.manifest import folder_digest
from tasks.shared.settings import get_settings

RESULTS_FOLDER = "prefect-results"
P = ParamSpec("P")
R = TypeVar("R")
KeyFn = Callable[[TaskRunContext, dict[str, Any]], str | None]


class StageTask(Task):
    """A task whose result is kept in the platform's state folder, `Settings.home`/
    prefect-results, found at run time: results follow LLMOPS_HOME (never fixed at import),
    and a fresh state folder starts with no cached result. (Prefect takes a folder as a path,
    or a storage block saved on the server; the folder is a path, looked up on every run.)"""

    @property
    def result_storage(self) -> Path:
        return get_settings().home / RESULTS_FOLDER

    @result_storage.setter
    def result_storage(self, value: Any) -> None:
        """Always the state folder (`Task.__init__` assigns one)."""


def stage_task(cache_key_fn: KeyFn, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """`@task` for a stage's main task: cached by `cache_key_fn`, its result persisted as JSON
    in the state folder. JSON, not pickle: the reports are pydantic models, and nothing loaded
    from the state folder runs code (the platform refuses pickle files unless allowed)."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return StageTask(
            fn, cache_key_fn=cache_key_fn, persist_result=True, result_serializer="json", **options
        )

    return decorate


def _services() -> tuple[str, ...]:
    """Where the state the results point at lives: the same run id or snapshot means another
    thing in another state folder, MLflow or Milvus."""
    s = get_settings()
    return str(s.home.resolve()), s.tracking_uri, s.milvus_uri or "milvus-lite"


def _code(ctx: TaskRunContext) -> tuple[str | None, str, str]:
    """The task's source, and where it and its result's class live: a changed task body
    invalidates its cache, and a moved module never meets a stored result it cannot load."""
    fn = ctx.task.fn
    returns = get_type_hints(fn).get("return")
    return (
        TASK_SOURCE.compute_key(ctx, {}, {}),
        f"{fn.__module__}.{fn.__qualname__}",
        f"{getattr(returns, '__module__', '')}.{getattr(returns, '__qualname__', returns)}",
    )


def _key(ctx: TaskRunContext, *parts: Any) -> str:
    return hash_objects(_code(ctx), _services(), *parts, raise_on_failure=True)


def _dump(params: Any) -> Any:
    return params.model_dump(mode="json") if hasattr(params, "model_dump") else params


def source_fingerprint(root: Path) -> str:
    """Every file under `root` by relative path, size and content hash. Content, not mtimes:
    the demo corpus is rewritten on each run with the same bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def rails_rules_digest() -> str:
    """The source of the rails' rules: a rule that finds more (a new kind of key, say) must
    screen the same files again, not serve what the old rules let through."""
    digest = hashlib.sha256()
    for path in sorted(Path(rails.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ingest_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str | None:
    """Ingest reads files the parameters only point at: key a local folder on what its files
    hold, and on the rails that screen them (the policy is among the parameters; the rules are
    code). An object store or the web is not cached here: ingest itself skips the items whose
    version has not changed, after one listing."""
    root = inputs["root"]
    if root is None or "://" in str(root):
        return None
    return _key(
        ctx,
        source_fingerprint(Path(root)),
        str(Path(root).resolve()),
        _dump(inputs["params"]),
        rails_rules_digest(),
    )


def snapshot_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str | None:
    """Embedding: its parameters, which name the (content-addressed) snapshot."""
    params = inputs["params"]
    return None if params.snapshot_id is None else _key(ctx, _dump(params))


def finetune_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str | None:
    """Fine-tuning: its parameters (snapshot, seed, steps…) and, for a local base model, the
    folder's digest (the same path may hold other weights later)."""
    params = inputs["params"]
    if params.snapshot_id is None:
        return None
    base = Path(params.base_model).expanduser()
    local = (base / "config.json").is_file()  # a model folder, as the base model resolves it
    return _key(ctx, _dump(params), folder_digest(base) if local else None)


def source_run_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str | None:
    """Compression: its parameters, which name the fine-tuning run (immutable in MLflow)."""
    params = inputs["params"]
    return None if params.source_run_id is None else _key(ctx, _dump(params))


# Failures that a second try cannot fix: bad input or missing state, not a service hiccup.
_NOT_TRANSIENT = (ValueError, LookupError, TypeError, FileNotFoundError, NotImplementedError)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn`: retry a failed run unless its error says the input is wrong."""
    return not isinstance(state.data, _NOT_TRANSIENT)


# For tasks whose service calls are safe to repeat (reads, upserts by content-hash id).
RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": retry_transient,
}
