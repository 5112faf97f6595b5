"""Search-knob tuning of a FAISS index, measured against exact search on sample queries.

``tune_index`` (what ``FaissIndex.tune`` runs) tries the knobs (``efSearch``, ``nprobe``,
``k_factor``) from the least to the most estimated work and keeps the cheapest that reaches the
recall target; the choice, the measured recall and the grid are recorded in ``index.tuning`` and
so in the saved manifest. Choosing the index type itself is :mod:`recsys.index.auto`.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from recsys.index._faiss import import_faiss, knob_names, parts
from recsys.index.core import IndexBase

EF_GRID = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
K_FACTOR_GRID = (64, 32, 16, 8, 4)  # re-rank 64x..4x k candidates with the refine codes; largest first
# Work of one re-ranked candidate in units of one scanned IVF code. Measured on 1M ALS-fitted items,
# IVF1024,PQ64x4fs,Refine(SQ8), one thread: p50 0.52 -> 1.45 ms for k_factor 8 -> 64 at nprobe 64
# (~0.17 us a candidate: the fast-scan result heap plus the SQ8 distance) and 0.69 -> 0.92 ms for
# nprobe 64 -> 128 at k_factor 16 (~4 ns a code), so one candidate costs about 40 codes.
REFINE_COST = 40.0


def _nprobe_grid(nlist: int) -> list[int]:
    grid, p = [], 1
    while p < nlist:
        grid += [p, int(p * 1.5)] if p >= 2 else [p]
        p *= 2
    return sorted({min(g, nlist) for g in grid} | {nlist})


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found ∩ truth| / |truth| (ignoring -1 padding in truth)."""
    hits, total = 0, 0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        hits += len(np.intersect1d(f, t))
        total += len(t)
    return hits / max(total, 1)


def exact_labels(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k labels (row positions of ``vectors``) by inner product."""
    faiss = import_faiss()
    return faiss.knn(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(vectors, np.float32), k,
                     metric=faiss.METRIC_INNER_PRODUCT)[1]


def _grid(index: IndexBase, k: int) -> list[dict]:
    engine = index._state_or_raise().engine
    names = knob_names(engine)
    if "efSearch" in names:
        efs = sorted({max(e, k) for e in EF_GRID})
        return [{"efSearch": e} for e in efs]
    if "nprobe" in names:
        nprobes = _nprobe_grid(parts(engine)["ivf"].nlist)
        if "k_factor" in names:
            return [{"nprobe": p, "k_factor": kf} for kf in K_FACTOR_GRID for p in nprobes]
        return [{"nprobe": p} for p in nprobes]
    return [{}]


def _work_model(index: IndexBase, k: int):
    """Estimated work of one query at given knobs, in scanned-code units (see ``REFINE_COST``)."""
    ivf = parts(index._state_or_raise().engine)["ivf"]
    list_size = ivf.ntotal / max(ivf.nlist, 1) if ivf is not None else 0.0

    def work(p: dict) -> float:
        return p.get("nprobe", 0) * list_size + REFINE_COST * k * p.get("k_factor", 0) + p.get("efSearch", 0)

    return work


def tune_index(index: IndexBase, sample_queries: np.ndarray, *, k: int = 100, recall_target: float = 0.95,
               reference_vectors: np.ndarray | None = None) -> dict:
    """Set the cheapest knobs of ``index`` (a :class:`~recsys.index.faiss_index.FaissIndex`) whose recall@k
    against exact search on the sample reaches the target.

    Cheapest = least estimated work per query (codes scanned in the probed lists plus
    ``REFINE_COST`` per re-ranked candidate; efSearch for HNSW): a deterministic cost order, since
    wall-clock timings on a busy machine are not.

    ``reference_vectors``: the original embeddings in build order (exact ground truth). Without
    them the index's own stored vectors are used, which are lossy for PQ/SQ indexes.
    """
    st = index._state_or_raise()
    q = index._prep(sample_queries, "sample_queries")
    truth, reference = _ground_truth(index, st, q, k, reference_vectors)
    grid, chosen = _sweep(index, q, k, truth, recall_target)
    met = chosen is not None
    if not met:
        chosen = max(grid, key=lambda g: g["recall"])
        warnings.warn(f"{index.factory}: best recall@{k} {chosen['recall']:.3f} is below the target "
                      f"{recall_target} even at {chosen['params']}", stacklevel=2)
    index.search_params = {**index.search_params, **chosen["params"]}
    index.tuning = {**(index.tuning or {}), "k": k, "recall_target": recall_target, "n_queries": len(q),
                    "params": chosen["params"], "recall": chosen["recall"], "met_target": met,
                    "reference": reference, "grid": grid}
    return index.tuning


def _ground_truth(index: IndexBase, st: Any, q: np.ndarray, k: int,
                  reference_vectors: np.ndarray | None) -> tuple[np.ndarray, str]:
    """Exact top-``k`` labels of the live items (``st``: the index's state) for the queries, and what they were
    computed from."""
    if reference_vectors is None:
        reference = "stored vectors"
        reference_vectors = index._engine_vectors(st.engine, np.arange(len(st.alive)))
    else:
        reference = "embeddings"
        reference_vectors = index._prep(reference_vectors, "reference_vectors")
    if st.alive.all():  # no copy of a (possibly 10M-row) matrix
        return exact_labels(reference_vectors, q, k), reference
    live = np.flatnonzero(st.alive)
    return live[exact_labels(reference_vectors[live], q, k)], reference


def _sweep(index: IndexBase, q: np.ndarray, k: int, truth: np.ndarray,
           recall_target: float) -> tuple[list[dict], dict | None]:
    """Every knob setting tried, cheapest first within each family, and the cheapest that met the target."""
    grid, chosen, done_families = [], None, set()
    cost = _work_model(index, k)
    for params in _grid(index, k):
        family = params.get("k_factor")
        if family in done_families or (chosen is not None and cost(params) >= cost(chosen["params"])):
            continue
        t0 = time.perf_counter()
        _, labels = index.raw_search(q, k, params=params)
        ms = (time.perf_counter() - t0) * 1000 / len(q)
        rec = recall_at_k(labels, truth)
        grid.append({"params": params, "recall": rec, "work": cost(params), "ms_per_query_batch": ms})
        if rec >= recall_target:
            done_families.add(family)
            chosen = grid[-1]  # cheaper than any earlier choice, by the skip above
            if "k_factor" not in params:
                break
    return grid, chosen
