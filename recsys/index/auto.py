"""Automatic index choice: the preferred index type that fits a memory budget and reaches a recall target.

``auto_index`` estimates the memory of each index type for the catalogue, keeps those within the
budget in order of preference (exact Flat for small catalogues, then HNSW, IVF-Flat, fast-scan
IVF-PQ with an SQ8 refine stage, plain fast-scan IVF-PQ), builds the first, tunes its knobs
(:func:`recsys.index.tuning.tune_index`) and moves on to the next only if the recall target cannot
be reached. The choice, the measured recall and the factory string are recorded in ``index.tuning``
and so in the saved manifest.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from recsys.errors import ConfigError
from recsys.index.faiss_index import FaissIndex
from recsys.index.tuning import tune_index

FLAT_MAX_ITEMS = 50_000
HNSW_MAX_ITEMS = 5_000_000


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
        idx = FaissIndex(factory=cand["factory"], metric=metric, dim=x.shape[1], seed=seed).build(x, ids)
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
