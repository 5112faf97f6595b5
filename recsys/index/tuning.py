"""Automatic index choice and knob tuning, measured against exact search on sample queries.

``auto_index`` estimates the memory of each index type for the catalogue, keeps those within the
budget in order of preference (exact Flat for small catalogues, then HNSW, IVF-Flat, fast-scan
IVF-PQ with an SQ8 refine stage, plain fast-scan IVF-PQ), builds the first, tunes its knobs and moves on to the next
only if the recall target cannot be reached. The choice, the measured recall and the factory
string are recorded in ``index.tuning`` and so in the saved manifest.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence

import numpy as np

from recsys.errors import ConfigError
from recsys.index.faiss_index import FaissIndex, knob_names, parts

FLAT_MAX_ITEMS = 50_000
HNSW_MAX_ITEMS = 5_000_000
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
    from recsys.index._faiss import import_faiss

    faiss = import_faiss()

    return faiss.knn(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(vectors, np.float32), k,
                     metric=faiss.METRIC_INNER_PRODUCT)[1]


def _grid(index: FaissIndex, k: int) -> list[dict]:
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


def _work_model(index: FaissIndex, k: int):
    """Estimated work of one query at given knobs, in scanned-code units (see ``REFINE_COST``)."""
    ivf = parts(index._state_or_raise().engine)["ivf"]
    list_size = ivf.ntotal / max(ivf.nlist, 1) if ivf is not None else 0.0

    def work(p: dict) -> float:
        return p.get("nprobe", 0) * list_size + REFINE_COST * k * p.get("k_factor", 0) + p.get("efSearch", 0)

    return work


def tune_index(index: FaissIndex, sample_queries: np.ndarray, *, k: int = 100, recall_target: float = 0.95,
               reference_vectors: np.ndarray | None = None) -> dict:
    """Set the cheapest knobs whose recall@k against exact search on the sample reaches the target.

    Cheapest = least estimated work per query (codes scanned in the probed lists plus
    ``REFINE_COST`` per re-ranked candidate; efSearch for HNSW): a deterministic cost order, since
    wall-clock timings on a busy machine are not.

    ``reference_vectors``: the original embeddings in build order (exact ground truth). Without
    them the index's own stored vectors are used, which are lossy for PQ/SQ indexes.
    """
    st = index._state_or_raise()
    q = index._prep(sample_queries, "sample_queries")
    if reference_vectors is None:
        reference = "stored vectors"
        reference_vectors = index._engine_vectors(st.engine, np.arange(len(st.alive)))
    else:
        reference = "embeddings"
        reference_vectors = index._prep(reference_vectors, "reference_vectors")
    if st.alive.all():  # no copy of a (possibly 10M-row) matrix
        truth = exact_labels(reference_vectors, q, k)
    else:
        live = np.flatnonzero(st.alive)
        truth = live[exact_labels(reference_vectors[live], q, k)]
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


def _pq_m(d: int) -> int:
    return max(m for m in range(1, d // 2 + 1) if d % m == 0) if d > 1 else 1


def candidate_factories(n: int, d: int, memory_budget_mb: float) -> list[dict]:
    """Index types in order of preference with their estimated memory; ``fits`` against the budget."""
    nlist = 2 ** round(math.log2(max(16.0, math.sqrt(n))))  # 100k: 256, 1M: 1024, 10M: 4096
    nlist = int(max(1, min(nlist, n // 39, 65_536)))
    m = d if d % 2 == 0 else _pq_m(d)  # fast-scan PQ: one 4-bit sub-quantizer per dimension (d/2 bytes)
    rows = []
    if n <= FLAT_MAX_ITEMS:
        rows.append(("Flat", n * 4 * d))
    if n <= HNSW_MAX_ITEMS:
        # M=48: on inner-product ALS factors, recall@100 0.945 at efSearch=256 where M=32 gave 0.90
        rows.append(("HNSW48", n * (4 * d + 2 * 48 * 4 * 1.05 + 24)))
    if nlist >= 2:
        # fast-scan PQ (4-bit codes, SIMD scan, seconds to train) with an SQ8 refine stage that restores recall
        rows += [(f"IVF{nlist},Flat", n * (4 * d + 16) + nlist * d * 4),
                 (f"IVF{nlist},PQ{m}x4fs,Refine(SQ8)", n * (m / 2 + 16 + d) + nlist * d * 4),
                 (f"IVF{nlist},PQ{m}x4fs", n * (m / 2 + 16) + nlist * d * 4)]
    meta = n * 8 * 3 + n * 6  # ids + lookup + attribute arrays
    return [{"factory": f, "estimated_mb": (b + meta) / 2**20, "fits": (b + meta) / 2**20 <= memory_budget_mb}
            for f, b in rows]


def auto_index(embeddings: np.ndarray, ids: Sequence[int | str], *, memory_budget_mb: float,
               recall_target: float = 0.95, sample_queries: np.ndarray | None = None, k: int = 100,
               metric: str = "ip", seed: int = 0) -> FaissIndex:
    """Pick, build and tune the preferred index type that fits the memory budget and reaches the target."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"auto_index needs a non-empty (n, dim) embedding matrix, got shape {x.shape}")
    candidates = candidate_factories(len(x), x.shape[1], memory_budget_mb)
    fitting = [c for c in candidates if c["fits"]]
    if not fitting:
        smallest = min(candidates, key=lambda c: c["estimated_mb"])
        raise ConfigError(f"no index type fits memory_budget_mb={memory_budget_mb} for {len(x):,} x {x.shape[1]} "
                          f"embeddings; the smallest ({smallest['factory']}) needs ~{smallest['estimated_mb']:.0f} MB")
    queries = sample_queries
    query_source = "sample_queries"
    if queries is None:
        rng = np.random.default_rng(seed)
        queries = x[rng.choice(len(x), min(256, len(x)), replace=False)]
        query_source = "item embeddings (no sample_queries given)"
    best = None
    for cand in fitting:
        idx = FaissIndex(cand["factory"], metric=metric, dim=x.shape[1], seed=seed).build(x, ids)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record = tune_index(idx, queries, k=min(k, len(x)), recall_target=recall_target, reference_vectors=x)
        if best is None or record["recall"] > best.tuning["recall"]:
            best = idx
        if record["met_target"]:
            break
    if not best.tuning["met_target"]:
        warnings.warn(f"auto_index: no index type within {memory_budget_mb} MB reached recall@{k} {recall_target}; "
                      f"returning {best.factory} at {best.tuning['recall']:.3f}", stacklevel=2)
    best.tuning["auto"] = {"memory_budget_mb": memory_budget_mb, "candidates": candidates,
                           "chosen": best.factory, "queries": query_source}
    return best
