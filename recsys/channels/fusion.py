"""A fused retrieval score: a weighted sum of each channel's per-user standardised scores, weights chosen on
validation.

For one user, a channel's scores over the items the user has not interacted with are standardised
(``(s - mean) / std`` over those items; ``-inf``, "not a candidate", becomes the row's lowest finite score), so
channels on different scales add up; the fused score is ``sum_c w_c z_c``. One channel alone ranks exactly as
its raw scores do (a per-user affine map).

:func:`fit_fusion_weights` is the one call a tuner needs: channels fitted on the *fit* part of a carved split,
the fit matrix (the users' known items) and the held-out validation matrix in; the weights with the best
validation Recall@20 out. It never sees test. :func:`evaluate_combinations` scores many weightings in one
pass, each channel's block computed once per chunk of users, with :func:`recsys.evaluation.evaluate_topk`'s
LightGCN protocol (all items ranked, known items masked).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataValidationError

__all__ = ["standardise", "FusedScorer", "FusionFit", "fit_fusion_weights", "evaluate_combinations", "weight_grid"]


def standardise(block: np.ndarray, seen: sp.csr_matrix | None = None) -> np.ndarray:
    """Per-row z-scores over the row's unseen items (float32, a new array); seen entries are left at 0."""
    z = np.array(block, dtype=np.float32, copy=True)
    finite = np.isfinite(z)
    if not finite.all():
        lowest = np.where(finite, z, np.inf).min(axis=1, keepdims=True)
        z = np.where(finite, z, np.where(np.isfinite(lowest), lowest, 0.0)).astype(np.float32)
    count = np.full(z.shape[0], z.shape[1], dtype=np.float64)
    if seen is not None:
        r, c = np.repeat(np.arange(z.shape[0]), np.diff(seen.indptr)), seen.indices
        z[r, c] = 0.0
        count -= np.diff(seen.indptr)
    count = np.maximum(count, 1)
    mean = z.sum(axis=1, dtype=np.float64) / count
    sq = np.einsum("ij,ij->i", z, z, dtype=np.float64) / count
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    z -= mean[:, None].astype(np.float32)
    z /= np.where(std > 1e-12, std, 1.0)[:, None].astype(np.float32)
    if seen is not None:
        z[r, c] = 0.0
    return z


@dataclass
class FusedScorer:
    """A :class:`recsys.evaluation.Scorer`: ``sum_c weights[c] * standardise(scorers[c].score(users))``;
    ``seen`` (the users' known items) is left out of each row's mean and spread."""

    scorers: Mapping[str, Any]
    weights: Mapping[str, float]
    seen: sp.csr_matrix

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        """The fused scores of every item for these users."""
        users = np.asarray(user_indices)
        out = None
        for name, w in self.weights.items():
            if w:
                part = w * standardise(self.scorers[name].score(users), self.seen[users])
                out = part if out is None else out + part
        if out is None:
            raise ConfigError("FusedScorer: every weight is 0; give at least one channel a weight.")
        return out


class _Block:
    """A scorer over local rows of a precomputed block (for evaluate_topk on one chunk)."""

    def __init__(self, block: np.ndarray) -> None:
        self.block = block

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        return self.block[np.asarray(user_indices)]


def evaluate_combinations(scorers: Mapping[str, Any], combos: Sequence[Mapping[str, float]], seen: sp.csr_matrix,
                          target: sp.csr_matrix, *, k: int = 20, chunk_size: int = 512,
                          n_workers: int = 1) -> list[dict[str, float]]:
    """Recall@k / NDCG@k of each weighting in ``combos`` on ``target`` (users with target items), ``seen`` masked.

    Each scorer named with a non-zero weight is called once per chunk of users, however many combinations use it;
    ``n_workers`` threads take chunks (the scorers must be thread-safe: graph filters and embeddings are)."""
    from concurrent.futures import ThreadPoolExecutor

    seen, target = sp.csr_matrix(seen), sp.csr_matrix(target)
    if seen.shape != target.shape:
        raise DataValidationError(f"seen {seen.shape} and target {target.shape} must have one shape.")
    unknown = {n for c in combos for n in c} - set(scorers)
    if unknown:
        raise ConfigError(f"weights name channels {sorted(unknown)} that are not among {sorted(scorers)}.")
    if any(not any(c.values()) for c in combos):
        raise ConfigError("every combination needs a non-zero weight.")
    used = sorted({n for c in combos for n, w in c.items() if w})
    users = np.flatnonzero(np.diff(target.indptr) > 0)
    chunks = [users[s:s + chunk_size] for s in range(0, users.size, chunk_size)]

    def chunk_sums(batch: np.ndarray) -> np.ndarray:
        return _chunk_sums({n: scorers[n] for n in used}, combos, batch, seen[batch], target[batch], k)

    if n_workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            parts = list(pool.map(chunk_sums, chunks))
    else:
        parts = [chunk_sums(b) for b in chunks]
    total = np.sum(parts, axis=0) / max(users.size, 1) if parts else np.zeros((len(combos), 2))
    return [{f"recall@{k}": float(r), f"ndcg@{k}": float(n)} for r, n in total]


def _chunk_sums(scorers: Mapping[str, Any], combos: Sequence[Mapping[str, float]], batch: np.ndarray,
                seen_b: sp.csr_matrix, target_b: sp.csr_matrix, k: int) -> np.ndarray:
    """(combos x 2) sums of recall@k and ndcg@k over one chunk of users, by evaluate_topk on the chunk."""
    from recsys.evaluation import evaluate_topk

    z = {n: standardise(s.score(batch), seen_b) for n, s in scorers.items()}
    out = np.zeros((len(combos), 2))
    for i, combo in enumerate(combos):
        parts = [w * z[n] for n, w in combo.items() if w]
        r = evaluate_topk(_Block(sum(parts[1:], parts[0])), seen_b, target_b, (k,), metrics=("recall", "ndcg"),
                          check_leakage=False, chunk_size=batch.size, n_workers=1)
        out[i] = (r[f"recall@{k}"] * batch.size, r[f"ndcg@{k}"] * batch.size)
    return out


def weight_grid(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination of the listed weights (a channel with one value is fixed), all-zero ones dropped."""
    names = list(grid)
    combos = [dict(zip(names, map(float, vals), strict=True)) for vals in itertools.product(*grid.values())]
    return [c for c in combos if any(c.values())]


@dataclass
class FusionFit:
    """The chosen weights, their validation figures, and every weighting tried (what lost included)."""

    weights: dict[str, float]
    validation: dict[str, float]
    tried: list[dict[str, Any]] = field(default_factory=list)


def fit_fusion_weights(scorers: Mapping[str, Any], fit: sp.csr_matrix, validation: sp.csr_matrix,
                       grid: Mapping[str, Sequence[float]], *, k: int = 20, chunk_size: int = 512,
                       n_workers: int = 1) -> FusionFit:
    """Choose fusion weights on validation: ``scorers`` fitted on ``fit`` only, ``validation`` held out of the
    training data; the grid's combination with the best Recall@k wins (NDCG@k breaks ties). Test is not an input."""
    combos = weight_grid(grid)
    if not combos:
        raise ConfigError("the fusion grid has no combination with a non-zero weight.")
    results = evaluate_combinations(scorers, combos, fit, validation, k=k, chunk_size=chunk_size, n_workers=n_workers)
    tried = [{"weights": c, **r} for c, r in zip(combos, results, strict=True)]
    best = max(tried, key=lambda t: (round(t[f"recall@{k}"], 6), t[f"ndcg@{k}"]))
    return FusionFit(dict(best["weights"]), {m: best[m] for m in (f"recall@{k}", f"ndcg@{k}")}, tried)
