"""A blend of the graph-filter channel and the two-tower, and its weights chosen on validation in one pass.

Each channel's scores are standardised per user (mean 0, standard deviation 1 over the items) before they
are added, so a weight means the same on every data set whatever the channels' score scales:

    score = z(linear + ideal_weight * ideal) + tower_weight * z(user_emb @ item_emb.T)

The graph filter is linear in ``ideal_weight`` (its linear low-pass term plus the weighted ideal term), so
a block of users is filtered twice (weight 0 and 1) and every grid point is a sum of those two blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["BlendScorer", "standardise", "choose_weights"]


def standardise(block: np.ndarray) -> np.ndarray:
    """Each row shifted to mean 0 and scaled to standard deviation 1 (a constant row becomes 0), in place."""
    block -= block.mean(axis=1, keepdims=True)
    std = block.std(axis=1, keepdims=True)
    block /= np.where(std > 0, std, 1.0)
    return block


class BlendScorer:
    """The :class:`recsys.evaluation.Scorer` of the blend (module docstring); ``tower`` None: the filter alone."""

    thread_safe = True  # reads fitted arrays only

    def __init__(self, graph: Any, tower: tuple[np.ndarray, np.ndarray] | None = None,
                 tower_weight: float = 0.0) -> None:
        self.graph, self.tower, self.tower_weight = graph, tower, tower_weight

    @property
    def n_items(self) -> int:
        return self.graph.n_items_

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        """Scores of every item for these users (float32, len(users) x n_items)."""
        users = np.asarray(user_indices)
        block = standardise(self.graph.scores(users))
        if self.tower is not None and self.tower_weight > 0:
            u, i = self.tower
            block += self.tower_weight * standardise(np.asarray(u[users] @ i.T, dtype=np.float32))
        return block


def _metric_sums(block: np.ndarray, train_rows: sp.csr_matrix, valid_rows: sp.csr_matrix,
                 k: int) -> tuple[float, float]:
    """Recall@k and NDCG@k summed over the block's users (LightGCN protocol; training items masked)."""
    import torch

    from recsys.evaluation.topk import fast_topk

    block = np.array(block, dtype=np.float32, order="C")
    block[np.repeat(np.arange(block.shape[0]), np.diff(train_rows.indptr)), train_rows.indices] = -np.inf
    top = fast_topk(torch.from_numpy(block), k).numpy()
    n_items = np.int64(block.shape[1])
    valid_keys = np.repeat(np.arange(top.shape[0], dtype=np.int64), np.diff(valid_rows.indptr)) * n_items \
        + valid_rows.indices
    hits = np.isin(np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top.astype(np.int64), valid_keys)
    n_valid = np.diff(valid_rows.indptr)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = np.cumsum(discount)[np.minimum(n_valid, k) - 1]
    return float((hits.sum(1) / n_valid).sum()), float(((hits * discount).sum(1) / idcg).sum())


def choose_weights(graph: Any, tower: tuple[np.ndarray, np.ndarray] | None, train: sp.csr_matrix,
                   valid: sp.csr_matrix, *, ideal_weights: Sequence[float], tower_weights: Sequence[float],
                   users: np.ndarray, k: int = 20, chunk: int = 512) -> list[dict]:
    """Recall@k / NDCG@k on ``valid`` of every (ideal_weight, tower_weight) pair for ``users`` (each with a
    validation item), best first by recall. ``graph``: a filter fitted on ``train`` with the ideal term."""
    linear_only, unit = graph.with_params(ideal_weight=0.0), graph.with_params(ideal_weight=1.0)
    tower_weights = tower_weights if tower is not None else (0.0,)
    sums = {(a, b): [0.0, 0.0] for a in ideal_weights for b in tower_weights}
    for s in range(0, len(users), chunk):
        batch = users[s:s + chunk]
        linear = linear_only.scores(batch)
        ideal = unit.scores(batch) - linear
        tw = standardise(np.asarray(tower[0][batch] @ tower[1].T, dtype=np.float32)) if tower is not None else None
        tr, va = train[batch], valid[batch]
        for a in ideal_weights:
            g = standardise(linear + np.float32(a) * ideal)
            for b in tower_weights:
                r, n = _metric_sums(g + np.float32(b) * tw if b else g, tr, va, k)
                sums[(a, b)][0] += r
                sums[(a, b)][1] += n
    rows = [{"ideal_weight": a, "tower_weight": b, f"recall@{k}": r / len(users), f"ndcg@{k}": n / len(users)}
            for (a, b), (r, n) in sums.items()]
    return sorted(rows, key=lambda row: (-row[f"recall@{k}"], row["tower_weight"], row["ideal_weight"]))
