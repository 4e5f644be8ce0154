from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """`itertools.batched` (Python 3.12) for 3.11."""
    it = iter(items)
    while batch := tuple(islice(it, size)):
        yield batch


def ordered_map(
    fn: Callable[[T], U], items: Iterable[T], workers: int, window: int | None = None
) -> Iterator[U]:
    """`map(fn, items)` on `workers` threads, results in item order; at most `window` (4 per
    worker) started ahead of the one being yielded, so a long listing is never all in flight."""
    window = window or 4 * workers
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[U]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
