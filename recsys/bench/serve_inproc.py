"""The serving benchmark's in-process ceiling: ``recommend`` in a loop on the loaded bundle, with no HTTP.

:func:`in_process` measures calls per second (and per CPU second of this process) three ways: one loop with the
libraries' default intra-op threads, as many loops as cores in threads, and one loop with one intra-op thread
(torch, faiss, BLAS), the way ``recsys serve --threads 1`` (its default) computes a feed. The best of the three is
the ceiling the HTTP service is held to (:func:`recsys.bench.serve_report.targets`). :func:`steadiness` then repeats
one request for as long, counting calls per second of wall time: how much this machine's speed moves.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

__all__ = ["in_process", "steadiness"]


def in_process(bundle: Path, picks: list, k: int, seconds: float, threads: int) -> dict:
    """Calls/s of ``recommend`` on the loaded bundle: one loop, then ``threads`` loops at once, then one loop with
    one intra-op thread, each ``seconds`` long."""
    import recsys

    rec = recsys.load(bundle)
    for u, m in picks[:50]:
        rec.recommend(u, k=k, media_id=m)

    def loop(offset: int, until: float, out: list) -> None:
        n, i = 0, offset
        while time.perf_counter() < until:
            u, m = picks[i % len(picks)]
            rec.recommend(u, k=k, media_id=m)
            n, i = n + 1, i + 1
        out.append(n)

    counts: list[int] = []
    t, cpu = time.perf_counter(), time.process_time()
    loop(0, t + seconds, counts)
    single = {"threads": 1, "calls": counts[0], "seconds": time.perf_counter() - t,
              "cpu_seconds": time.process_time() - cpu}
    counts = []
    t, cpu = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=loop, args=(n * 997, t + seconds, counts)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    many = {"threads": threads, "calls": sum(counts), "seconds": time.perf_counter() - t,
            "cpu_seconds": time.process_time() - cpu}
    counts = []
    with _one_intra_op_thread():  # as `recsys serve --threads 1` (its default) runs a feed
        t, cpu = time.perf_counter(), time.process_time()
        loop(0, t + seconds, counts)
        one = {"threads": 1, "intra_op_threads": 1, "calls": counts[0], "seconds": time.perf_counter() - t,
               "cpu_seconds": time.process_time() - cpu}
    for r in (single, many, one):
        r["calls_per_s"] = r["calls"] / r["seconds"]
        r["calls_per_cpu_s"] = r["calls"] / r["cpu_seconds"]
    with _one_intra_op_thread():
        steady = steadiness(lambda: rec.recommend(picks[0][0], k=k, media_id=picks[0][1]), seconds)
    return {"loop": single, "threads": many, "loop_one_intra_op_thread": one, "steadiness": steady}


def steadiness(call, seconds: float, window: float = 1.0) -> dict:
    """How steady this machine's speed is: ``call`` (always the same work) in a loop for ``seconds``, counted per
    ``window`` of wall time. On a dedicated machine the windows agree within a few percent; on a shared VM they
    do not, and a latency tail measured on it moves with them."""
    counts, n = [], 0
    t0 = start = time.perf_counter()
    while True:
        call()
        n += 1
        now = time.perf_counter()
        if now - start >= window:
            counts.append(n / (now - start))
            n, start = 0, now
        if now - t0 >= seconds:
            break
    counts = counts or [n / max(time.perf_counter() - start, 1e-9)]
    ordered = sorted(counts)
    return {"window_s": window, "calls_per_s": [round(c, 1) for c in counts], "min": ordered[0],
            "median": ordered[len(ordered) // 2], "max": ordered[-1]}


@contextlib.contextmanager
def _one_intra_op_thread():
    """torch, faiss and every OpenMP / BLAS pool at one thread inside, as they were after."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before[0])
            faiss.omp_set_num_threads(before[1])
