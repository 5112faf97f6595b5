"""One interface for every recall channel (多路召回), and the two ways a channel is served.

A channel is fitted on the training interactions (users x items, rows and columns are positions) and answers

- ``candidates(users, k, filters=None) -> (items, scores)``: each user's ``k`` best eligible items (``-1`` /
  ``-inf`` pad a short row), best first; ``filters`` is one :class:`recsys.index.SearchFilters` or one a user
  (``exclude``: seen items, ``allow``: a partner's pool); the user's own training items are always excluded;
- ``scores(users) -> (len(users), n_items) float32``: a score for every item (the full-ranking evaluation and
  the fused score of :mod:`recsys.channels.fusion` read these).

Serving: :class:`EmbeddingServing` (user vectors searched in an :class:`recsys.index.ItemIndex`, exact or FAISS)
or :class:`ItemTableServing` (an item-to-item top-M table: a user's candidates are the neighbours of their items,
scores summed). Channels hold one of them, or score exactly when that is cheap (a graph filter, popularity).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataValidationError, RecsysError
from recsys.index.base import FiltersArg, SearchFilters

__all__ = ["Channel", "EmbeddingServing", "ItemTableServing", "top_eligible", "user_rows", "per_user_filters"]


@runtime_checkable
class Channel(Protocol):
    """A recall channel (module docstring): ``name``, ``fit``, ``candidates``, ``scores``."""

    name: str

    def fit(self, interactions: sp.csr_matrix) -> Channel: ...

    def candidates(self, users: np.ndarray, k: int, filters: FiltersArg = None) -> tuple[np.ndarray, np.ndarray]: ...

    def scores(self, users: np.ndarray) -> np.ndarray: ...


def user_rows(users, n_users: int) -> np.ndarray:
    """``users`` as int64 row positions in [0, n_users); a typed error names what is wrong otherwise."""
    rows = np.atleast_1d(np.asarray(users))
    if rows.ndim != 1 or (rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0
                                         or rows.max() >= n_users)):
        raise DataValidationError(f"users must be integer rows in [0, {n_users}) of the fitted interactions; got "
                                  f"{rows[:5].tolist()}...\nFix: map user ids to their rows first.")
    return rows.astype(np.int64)


def per_user_filters(filters: FiltersArg, n: int) -> list[SearchFilters | None]:
    """One filter (or None) per user."""
    if filters is None or isinstance(filters, SearchFilters):
        return [filters] * n
    out = list(filters)
    if len(out) != n:
        raise DataValidationError(f"got {len(out)} filters for {n} users; pass one for all or one a user.")
    return out


def top_eligible(block: np.ndarray, k: int, seen: sp.csr_matrix | None, filters: FiltersArg = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best columns after masking ``seen`` and each row's filter (exclude / allow lists of item
    positions); ``(items int64, scores float32)``, best first, ``-1`` / ``-inf`` where fewer are eligible."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a positive integer; got {k!r}.")
    block = np.array(block, dtype=np.float32, copy=True)
    n, n_items = block.shape
    if seen is not None:
        block[np.repeat(np.arange(n), np.diff(seen.indptr)), seen.indices] = -np.inf
    for row, f in enumerate(per_user_filters(filters, n)):
        if f is None:
            continue
        if f.exclude:
            block[row, [i for i in f.exclude if 0 <= i < n_items]] = -np.inf
        if f.allow is not None:
            keep = np.zeros(n_items, dtype=bool)
            keep[[i for i in f.allow if 0 <= i < n_items]] = True
            block[row, ~keep] = -np.inf
    k = min(int(k), n_items)
    part = np.argpartition(-block, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(block, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    ids, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    ids = np.where(np.isfinite(vals), ids, -1)
    return ids.astype(np.int64), vals.astype(np.float32)


class EmbeddingServing:
    """Candidates by inner product: user vectors searched in an item index (default: the exact oracle)."""

    def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray, *, index=None) -> None:
        self.user_vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if self.user_vectors.ndim != 2 or self.item_vectors.ndim != 2 or \
                self.user_vectors.shape[1] != self.item_vectors.shape[1]:
            raise DataValidationError(f"user and item vectors must be 2-D of one width; got "
                                      f"{self.user_vectors.shape} and {self.item_vectors.shape}.")
        if index is None:
            from recsys.index import ExactIndex

            index = ExactIndex(metric="ip")
        self.index = index.build(self.item_vectors, np.arange(len(self.item_vectors)))

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Inner products with every item."""
        return self.user_vectors[rows] @ self.item_vectors.T

    def candidates(self, rows: np.ndarray, k: int, seen: sp.csr_matrix, filters: FiltersArg = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Index search with the user's seen items added to each filter's ``exclude``."""
        fs = per_user_filters(filters, rows.size)
        merged = []
        for r, f in zip(rows, fs, strict=True):
            own = seen.indices[seen.indptr[r]:seen.indptr[r + 1]].tolist()
            base = f or SearchFilters(require_in_stock=False)
            merged.append(SearchFilters(exclude=set(base.exclude) | set(own), allow=base.allow,
                                        segments=base.segments, require_in_stock=base.require_in_stock,
                                        widen=base.widen))
        scores, ids = self.index.search(self.user_vectors[rows], k, merged)
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        return np.where(np.isfinite(scores), ids, -1), scores


class ItemTableServing:
    """Candidates from an item-to-item table (``neighbours``, ``weights``: n_items x M, ``-1`` pads): a user's
    score for item j is the sum of ``weights`` over the user's items that list j."""

    def __init__(self, neighbours: np.ndarray, weights: np.ndarray) -> None:
        neighbours, weights = np.asarray(neighbours, np.int64), np.asarray(weights, np.float32)
        if neighbours.ndim != 2 or neighbours.shape != weights.shape:
            raise DataValidationError(f"the item table needs neighbours and weights of one 2-D shape; got "
                                      f"{neighbours.shape} and {weights.shape}.")
        n_items = neighbours.shape[0]
        valid = (neighbours >= 0) & np.isfinite(weights)
        rows = np.repeat(np.arange(n_items), valid.sum(1))
        self.table = sp.csr_matrix((weights[valid], (rows, neighbours[valid])), shape=(n_items, n_items))

    def scores(self, history: sp.csr_matrix) -> np.ndarray:
        """Each history row's summed neighbour weights over every item (dense)."""
        if self.table.shape[0] == 0:
            raise RecsysError("the item table is empty.")
        return np.asarray((history @ self.table).toarray(), dtype=np.float32)
