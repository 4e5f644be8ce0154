from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """`itertools.batched` (Python 3.12) for 3.11."""
    it = iter(items)
    while batch := tuple(islice(it, size)):
        yield batch
