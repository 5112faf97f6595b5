"""Intra-op threads of a service worker: how many threads torch, faiss (OpenMP) and BLAS may use for one feed."""

from __future__ import annotations

__all__ = ["limit_threads"]


def limit_threads(n: int) -> None:
    """Cap torch's intra-op threads and every OpenMP and BLAS pool (faiss's, torch's, numpy's) at ``n`` threads
    (0: leave the libraries' defaults, e.g. ``OMP_NUM_THREADS``).

    A worker computes one feed at a time on the event loop (:mod:`recsys.service.fast`); a feed is a batch of one,
    which a second intra-op thread hardly speeds up, while the pools' idle threads spin-wait between feeds on the
    cores that the next requests (and, on one machine, the load balancer or other workers) need: measured with
    ``recsys.bench.serve_cpu`` at 300k items, 1.6 ms of server CPU per answer beyond the feed with the defaults
    (two threads on two cores), 0.1 ms with one. Called once per worker process before it loads its model."""
    if n <= 0:
        return
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    threadpool_limits(limits=n)  # every OpenMP / BLAS runtime loaded by now (torch and faiss are)
