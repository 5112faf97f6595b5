"""How many threads torch, faiss (OpenMP) and BLAS may use in this process.

Two reasons to cap them. Speed: a process that computes one small batch at a time (a service worker, a batch
job's scoring process, a Spark task) gains little from a second intra-op thread, while idle pool threads
spin-wait on the cores its neighbours need (measured with ``recsys.bench.serve_cpu`` at 300k items: 1.6 ms of
server CPU per answer beyond the feed with two threads on two cores, 0.1 ms with one). Reproducibility: a BLAS
product summed by another number of threads can differ in the last bit, which reorders near-tied candidates, so
processes that must write the same rows (the parts of one batch job, Spark against local) compute with the
same count.

Each cap reaches only the libraries already loaded, so both functions import torch and faiss first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["limit_threads", "math_threads"]


def _load_runtimes():
    import faiss
    import numpy  # noqa: F401 - loads numpy's BLAS, so that threadpoolctl sees it
    import torch

    return faiss, torch


def limit_threads(n: int) -> None:
    """Cap torch's intra-op threads and every OpenMP and BLAS pool (faiss's, torch's, numpy's) at ``n`` threads for
    the rest of this process (0: leave the libraries' defaults, e.g. ``OMP_NUM_THREADS``)."""
    if n <= 0:
        return
    from threadpoolctl import threadpool_limits

    faiss, torch = _load_runtimes()
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    threadpool_limits(limits=n)  # every OpenMP / BLAS runtime is loaded by now


@contextmanager
def math_threads(n: int) -> Iterator[None]:
    """The same caps as :func:`limit_threads` inside the block (``n`` >= 1), the previous settings restored after it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"math_threads needs a whole number of threads >= 1, got {n!r}")
    from threadpoolctl import threadpool_limits

    faiss, torch = _load_runtimes()
    before_torch, before_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before_torch)
        faiss.omp_set_num_threads(before_faiss)
