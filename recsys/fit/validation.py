"""Validation carved from *training* data, and the popularity prior chosen on it.

The two-tower picks its epoch (and the weight of a fixed popularity prior) on items held out of the
training matrix, never on test: :func:`carve_validation` holds them out, :func:`make_validator` scores a
model on them each epoch, :func:`apply_chosen_prior` serves the weight that validation chose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError

__all__ = ["holdout_split", "carve_validation", "popularity_log_counts", "make_validator", "apply_chosen_prior"]


def holdout_split(train: sp.csr_matrix, fraction: float = 0.2, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Move a random ``fraction`` (at least one) of each user's items with >= 2 items into a validation matrix."""
    train = sp.csr_matrix(train)
    rng = np.random.default_rng(seed)
    counts = np.diff(train.indptr)
    n_out = np.where(counts >= 2, np.maximum(1, np.round(counts * fraction)), 0).astype(np.int64)
    # a random key per entry; within each row, the n_out smallest keys go to validation
    keys = rng.random(train.nnz)
    rows = np.repeat(np.arange(train.shape[0]), counts)
    order = np.lexsort((keys, rows))
    rank = np.empty(train.nnz, dtype=np.int64)
    rank[order] = np.arange(train.nnz) - np.repeat(train.indptr[:-1], counts)
    to_valid = rank < n_out[rows]
    coo = train.tocoo()

    def part(mask):
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=train.shape)

    return part(~to_valid), part(to_valid)


def carve_validation(train: sp.csr_matrix, fraction: float, user_share: float = 1.0,
                     seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hold out ``fraction`` of the items of a random ``user_share`` of users (from training data only)."""
    if not 0 < fraction < 1 or not 0 < user_share <= 1:
        raise ConfigError(f"validation_fraction must lie in (0, 1) and validation_users in (0, 1], got "
                          f"{fraction} and {user_share}")
    fit, valid = holdout_split(train, fraction, seed)
    if user_share < 1:
        keep = np.random.default_rng([seed, 1]).random(train.shape[0]) < user_share
        mask = sp.diags(keep.astype(np.float32))
        valid = (mask @ valid).tocsr()
        valid.eliminate_zeros()
        fit = (train - valid).tocsr()
        fit.eliminate_zeros()
    return fit, valid


def split_validation_users(valid: sp.csr_matrix, share: float, seed: int = 0
                           ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``valid`` cut by user: ``(rest, held)``, ``held`` holding the held-out items of a random ``share`` of the
    users that have some (a seeded draw); ``share`` 0 gives ``(valid, empty)``."""
    if not 0 <= share < 1:
        raise ConfigError(f"the share of validation users held apart must lie in [0, 1); got {share!r}")
    valid = sp.csr_matrix(valid)
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    held = np.zeros(valid.shape[0], bool)
    held[users[np.random.default_rng([seed, 2]).random(len(users)) < share]] = True
    out = []
    for keep in (~held, held):
        part = (sp.diags(keep.astype(np.float32)) @ valid).tocsr()
        part.eliminate_zeros()
        out.append(part)
    return out[0], out[1]


def popularity_log_counts(matrix: sp.csr_matrix) -> np.ndarray:
    """``log1p`` of each item's number of interactions in ``matrix`` (float32 [n_items])."""
    return np.log1p(np.bincount(matrix.indices, minlength=matrix.shape[1])).astype(np.float32)


def _with_prior(users: np.ndarray, items: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings whose inner product adds ``prior[item]`` to every score (one extra coordinate)."""
    return (np.hstack([users, np.ones((len(users), 1), users.dtype)]),
            np.hstack([items, prior[:, None].astype(items.dtype)]))


def make_validator(data: Any, validation: sp.csr_matrix,
                   priors: tuple[float, ...] = (0.0,)) -> Callable[[Any], dict[str, float]]:
    """``validate(model)``: recall@20 / ndcg@20 on ``validation`` (items held out of ``data.positives``).

    With several popularity-prior weights every weight is scored and the best one's figures are returned
    (the served scores), with ``popularity_prior`` (the weight) and ``recall@20_no_prior`` beside them.
    """
    from recsys.evaluation import EmbeddingScorer, evaluate_topk
    from recsys.models.encode import encode_all

    train = data.positives
    log_counts = popularity_log_counts(train)

    def validate(m) -> dict[str, float]:
        users, items = encode_all(m, data)
        best: dict[str, float] = {}
        for beta in priors:
            u, i = _with_prior(users, items, beta * log_counts) if beta else (users, items)
            r = evaluate_topk(EmbeddingScorer(u, i), train, validation, (20,), metrics=("recall", "ndcg"),
                              check_leakage=False)
            if tuple(priors) != (0.0,):  # any prior in play: record the weight (a one-weight grid too)
                r["popularity_prior"] = beta
                if beta == 0.0:
                    best["recall@20_no_prior"] = r["recall@20"]
            if r["recall@20"] > best.get("recall@20", -1.0):
                best.update(r)
        return best

    return validate


def apply_chosen_prior(model: Any, summary: dict, train: sp.csr_matrix,
                       log: Callable[[str], None] | None = None) -> tuple[Any, float]:
    """The model with the popularity prior validation chose (``summary["best_metrics"]``), and its weight."""
    import torch

    prior = float(summary.get("best_metrics", {}).get("popularity_prior", 0.0))
    if prior:
        if log is not None:
            log(f"popularity prior chosen on validation: {prior} * log1p(training count)")
        model = model.with_item_prior(torch.from_numpy(prior * popularity_log_counts(train)))
    return model, prior
