"""Chunk-level parallelism for evaluation: a few worker threads, each running single-threaded kernels.

On a small machine shared with other jobs, multi-threaded BLAS/torch kernels spend much of their
CPU spinning at every synchronisation; whole chunks on separate threads (numpy and torch release
the GIL) use the same cores with about 30 % less CPU. Only scorers that declare
``thread_safe = True`` are called from several threads at once; the others run one chunk at a time.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
MAX_WORKERS = 4


def default_workers() -> int:
    """Worker threads for evaluation: one per core, at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


@contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """Limit torch intra-op threads and BLAS/OpenMP pools to one thread; restore them afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def map_chunks(task: Callable[[Any, Any], T], chunks: Iterable[Any], states: list[Any]) -> Iterator[T]:
    """``task(chunk, state)`` for each chunk, in order; ``len(states)`` workers, each holding one state
    (scratch buffers) at a time. One state means a plain loop with the kernels' own threading."""
    if len(states) <= 1:
        for chunk in chunks:
            yield task(chunk, states[0])
        return
    free: queue.SimpleQueue = queue.SimpleQueue()
    for state in states:
        free.put(state)

    def run(chunk: Any) -> T:
        state = free.get()
        try:
            return task(chunk, state)
        finally:
            free.put(state)

    with single_threaded_kernels(), ThreadPoolExecutor(len(states), thread_name_prefix="evaluate") as pool:
        yield from pool.map(run, chunks)
