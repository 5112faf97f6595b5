"""Sampled metrics (one positive against N random negatives), only on explicit request.

Sampled metrics are cheap but *inconsistent* with full ranking: Krichene & Rendle, "On Sampled
Metrics for Item Recommendation" (KDD 2020) show they can order models differently from the full
ranking they stand in for. Use :func:`recsys.evaluation.evaluate_topk` for any comparison; this
function exists for reproducing papers that report sampled figures, and always warns.

For each test pair (u, i), N negatives are drawn uniformly from items in neither u's train nor
u's test set; ``rank`` = number of negatives scoring strictly above i (ties favour the positive):

- ``sampled_hit_rate@K`` = mean of [rank < K]
- ``sampled_ndcg@K``     = mean of 1 / log2(rank + 2) if rank < K else 0
- ``sampled_auc``        = mean of 1 - rank / N
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.evaluation.leakage import check_no_overlap
from recsys.evaluation.topk import Scorer, _validate, default_chunk_size

WARNING = (
    "sampled metrics (1 positive vs {n} random negatives) disagree with full-ranking metrics and can "
    "order models differently (Krichene & Rendle, 'On Sampled Metrics for Item Recommendation', KDD 2020); "
    "compare models with evaluate_topk (full ranking) instead."
)


class SampledMetricWarning(UserWarning):
    """Emitted every time sampled metrics are computed."""


def sampled_metrics(
    scorer: Scorer,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    n_negatives: int = 100,
    ks: Sequence[int] = (10,),
    seed: int = 0,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Sampled HitRate@K, NDCG@K and AUC averaged over test pairs; always emits SampledMetricWarning."""
    warnings.warn(WARNING.format(n=n_negatives), SampledMetricWarning, stacklevel=2)
    train, test, ks, _ = _validate(train, test, ks, ("recall",))
    check_no_overlap(train, test)
    n_items = train.shape[1]
    if not 1 <= n_negatives < n_items:
        raise ConfigError(f"n_negatives must be in [1, {n_items - 1}]; got {n_negatives}.")
    rng = np.random.default_rng(seed)
    seen = sp.csr_matrix(train + test)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    chunk_size = chunk_size or default_chunk_size(n_items)
    buf = np.zeros((min(chunk_size, users.size), n_items), dtype=bool)
    ranks = []
    for start in range(0, users.size, chunk_size):
        batch = users[start:start + chunk_size]
        block = np.asarray(scorer.score(batch), dtype=np.float32)
        rows = test[batch]
        local = np.repeat(np.arange(batch.size), np.diff(rows.indptr))
        neg = _draw_negatives(rng, seen[batch], local, n_negatives, buf)
        pos_score = block[local, rows.indices]
        ranks.append((block[local[:, None], neg] > pos_score[:, None]).sum(axis=1))
    rank = np.concatenate(ranks).astype(np.float64)
    out = {}
    for k in ks:
        out[f"sampled_hit_rate@{k}"] = float(np.mean(rank < k))
        out[f"sampled_ndcg@{k}"] = float(np.mean(np.where(rank < k, 1.0 / np.log2(rank + 2), 0.0)))
    out["sampled_auc"] = float(np.mean(1.0 - rank / n_negatives))
    return out


def _draw_negatives(rng, seen_rows: sp.csr_matrix, local: np.ndarray, n: int, buf: np.ndarray) -> np.ndarray:
    """(len(local), n) items outside each pair's user's seen set, redrawn until clean (at most 50 rounds)."""
    n_items = seen_rows.shape[1]
    neg = rng.integers(0, n_items, size=(local.size, n))
    for _ in range(50):
        bad = _bad(buf, seen_rows, local, neg)
        if not bad.any():
            break
        neg[bad] = rng.integers(0, n_items, size=int(bad.sum()))
    return neg


def _bad(buf: np.ndarray, seen_rows: sp.csr_matrix, local: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Which drawn negatives are in their user's seen set (via the user-row boolean block)."""
    r = np.repeat(np.arange(seen_rows.shape[0]), np.diff(seen_rows.indptr))
    buf[r, seen_rows.indices] = True
    out = buf[local[:, None], neg]
    buf[r, seen_rows.indices] = False
    return out
