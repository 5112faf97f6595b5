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
    """The :class:`recsys.evaluation.Scorer` of the blend: the graph filter plus embedding channels
    ``{name: ((user_emb, item_emb), weight)}``, each standardised per user (module docstring)."""

    thread_safe = True  # reads fitted arrays only

    def __init__(self, graph: Any, channels: dict[str, tuple[tuple[np.ndarray, np.ndarray], float]] | None = None
                 ) -> None:
        self.graph = graph
        self.channels = {k: v for k, v in (channels or {}).items() if v[1] > 0}

    @property
    def n_items(self) -> int:
        return self.graph.n_items_

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        """Scores of every item for these users (float32, len(users) x n_items)."""
        users = np.asarray(user_indices)
        block = standardise(self.graph.scores(users))
        for (u, i), weight in self.channels.values():
            block += np.float32(weight) * standardise(np.asarray(u[users] @ i.T, dtype=np.float32))
        return block


def _metric_sums(block: np.ndarray, train_rows: sp.csr_matrix, valid_rows: sp.csr_matrix,
                 k: int) -> tuple[float, float]:
    """Recall@k and NDCG@k summed over the block's users (LightGCN protocol; training items masked)."""
    import torch

    from recsys.evaluation.topk import fast_topk

    block = np.array(block, dtype=np.float32, order="C")
    block[np.repeat(np.arange(block.shape[0]), np.diff(train_rows.indptr)), train_rows.indices] = -np.inf
    k = min(k, block.shape[1])
    top = fast_topk(torch.from_numpy(block), k).numpy()
    n_items = np.int64(block.shape[1])
    valid_keys = np.repeat(np.arange(top.shape[0], dtype=np.int64), np.diff(valid_rows.indptr)) * n_items \
        + valid_rows.indices
    hits = np.isin(np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top.astype(np.int64), valid_keys)
    n_valid = np.diff(valid_rows.indptr)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = np.cumsum(discount)[np.minimum(n_valid, k) - 1]
    return float((hits.sum(1) / n_valid).sum()), float(((hits * discount).sum(1) / idcg).sum())


def _grid_pass(blocks, grid: list[dict], train: sp.csr_matrix, valid: sp.csr_matrix, users: np.ndarray,
               k: int, chunk: int) -> list[dict]:
    """Recall@k / NDCG@k of every grid point; ``blocks(batch, point) -> scores`` builds a point's block."""
    sums = np.zeros((len(grid), 2))
    for s in range(0, len(users), chunk):
        batch = users[s:s + chunk]
        tr, va = train[batch], valid[batch]
        for j, block in enumerate(blocks(batch, grid)):
            sums[j] += _metric_sums(block, tr, va, k)
    return sorted(({**p, f"recall@{k}": float(r / len(users)), f"ndcg@{k}": float(n / len(users))}
                   for p, (r, n) in zip(grid, sums, strict=True)),
                  key=lambda row: -row[f"recall@{k}"])


def choose_weights(graph: Any, channels: dict[str, tuple[np.ndarray, np.ndarray]], train: sp.csr_matrix,
                   valid: sp.csr_matrix, *, ideal_weights: Sequence[float], channel_weights: Sequence[float],
                   users: np.ndarray, k: int = 20, chunk: int = 512) -> tuple[dict, list[dict]]:
    """The blend's weights chosen on ``valid`` for ``users`` (each with a validation item): first the filter's
    ideal weight alone, then every combination of ``channel_weights`` for the embedding ``channels`` with
    the filter fixed. Returns the best point and every point measured. ``graph``: fitted on ``train`` with
    the ideal term."""
    import itertools

    linear_only, unit = graph.with_params(ideal_weight=0.0), graph.with_params(ideal_weight=1.0)

    def graph_blocks(batch, grid):
        linear = linear_only.scores(batch)
        ideal = unit.scores(batch) - linear
        return (standardise(linear + np.float32(p["ideal_weight"]) * ideal) for p in grid)

    first = _grid_pass(graph_blocks, [{"ideal_weight": a} for a in ideal_weights], train, valid, users, k, chunk)
    chosen = graph.with_params(ideal_weight=first[0]["ideal_weight"])
    names = sorted(channels)
    grid = [{"ideal_weight": first[0]["ideal_weight"], **dict(zip(names, ws, strict=True))}
            for ws in itertools.product(channel_weights, repeat=len(names))]

    def blend_blocks(batch, grid):
        g = standardise(chosen.scores(batch))
        z = {n: standardise(np.asarray(channels[n][0][batch] @ channels[n][1].T, dtype=np.float32)) for n in names}
        for p in grid:
            block = g.copy()
            for n in names:
                if p[n]:
                    block += np.float32(p[n]) * z[n]
            yield block

    second = _grid_pass(blend_blocks, grid, train, valid, users, k, chunk) if names else first
    return second[0], first + (second if names else [])
