"""Knob/latency exploration for IVF-PQ fast-scan + Refine: which (nprobe, k_factor) is fastest at recall@100 >= 0.95.

Same data as ``recsys benchmark index`` (ALS factors of Gowalla + the fitted generator, seed 0).
Latency: ``FaissIndex.raw_search`` one query at a time on one thread (no filter planning), 300
queries; recall@100 against exact search on 1,000 held-out user vectors. Settings below 0.94
recall are not timed. It motivated ``REFINE_COST`` in ``recsys/index/tuning.py``.

    .venv/bin/python experiments/index/knob_latency.py 1000000 "IVF1024,PQ64x4fs,Refine(SQ8)"
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from recsys.bench.index import _data
from recsys.bench.index_data import catalogue
from recsys.index import FaissIndex
from recsys.index._faiss import import_faiss


def main(n: int, factories: list[str]) -> None:
    faiss = import_faiss()
    d = _data(Path("../shared/data/retrieval/gowalla"), 0)
    x = catalogue(n, d["items"], d["generator"], seed=0)
    users = d["users"][np.random.default_rng(0).permutation(len(d["users"]))]
    eq = users[500:1500]
    faiss.omp_set_num_threads(2)
    truth = faiss.knn(eq, x, 100, metric=faiss.METRIC_INNER_PRODUCT)[1]

    def recall(found: np.ndarray) -> float:
        return float(np.mean([len(np.intersect1d(f, t)) / 100 for f, t in zip(found, truth, strict=True)]))

    for fac in factories:
        t0 = time.perf_counter()
        idx = FaissIndex(factory=fac, metric="ip", dim=64).build(x, np.arange(n))
        print(fac, "build", round(time.perf_counter() - t0, 1), "MB", round(idx.memory_bytes() / 2**20), flush=True)
        grid = ([{"efSearch": e} for e in (256, 384, 512)] if "HNSW" in fac else
                [{"nprobe": p, "k_factor": kf} for p in (32, 48, 64, 96, 128) for kf in (4, 8, 16, 32, 64)])
        for params in grid:
            r = recall(idx.raw_search(eq, 100, params=params)[1])
            if r < 0.94:
                continue
            faiss.omp_set_num_threads(1)
            with threadpool_limits(1):
                ts = []
                for i in range(300):
                    t = time.perf_counter()
                    idx.raw_search(eq[i:i + 1], 100, params=params)
                    ts.append(time.perf_counter() - t)
            faiss.omp_set_num_threads(2)
            print(fac, params, f"R@100 {r:.3f}", f"p50 ms {1000 * np.median(ts):.3f}", "load", os.getloadavg()[0],
                  flush=True)
        del idx


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2].split(";"))
