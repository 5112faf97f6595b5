"""The recall channels: two-tower, graph filter, item-to-item, popular with a partner's audience, friends' items.

Each follows :class:`recsys.channels.base.Channel`; users and items are row / column positions of the training
interactions. Constructors store arguments; ``fit`` does the work (STYLE.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from recsys.channels.base import EmbeddingServing, ItemTableServing, top_eligible, user_rows
from recsys.errors import DataValidationError, RecsysError
from recsys.index.base import FiltersArg

__all__ = ["TwoTowerChannel", "GraphFilterChannel", "ItemToItemChannel", "PopularChannel", "FriendsChannel"]


def _binary(interactions) -> sp.csr_matrix:
    from recsys.models.graph_filter import interaction_matrix

    return interaction_matrix(interactions)


class _Fitted:
    name = "channel"

    def _require(self) -> None:
        if not hasattr(self, "seen_"):
            raise RecsysError(f"the {self.name} channel is not fitted.\nFix: call .fit(interactions) first.")

    def _rows(self, users) -> np.ndarray:
        self._require()
        return user_rows(users, self.seen_.shape[0])

    def candidates(self, users, k: int, filters: FiltersArg = None) -> tuple[np.ndarray, np.ndarray]:
        """``k`` best eligible items per user (the user's training items excluded), best first."""
        rows = self._rows(users)
        return top_eligible(self._candidate_scores(rows), k, self.seen_[rows], filters)

    def _candidate_scores(self, rows: np.ndarray) -> np.ndarray:
        return self.scores(rows)


class TwoTowerChannel(_Fitted):
    """User-to-item embeddings of the two-tower model, served through an item index (exact or FAISS).

    ``fit`` trains with ``settings`` (:class:`recsys.fit.two_tower_settings.TwoTowerSettings`) exactly as the
    retrieval benchmark does; :meth:`from_vectors` wraps vectors already computed (a loaded model, a cache)."""

    name = "two_tower"

    def __init__(self, *, settings=None, index=None) -> None:
        self.settings = settings
        self.index = index

    def fit(self, interactions) -> TwoTowerChannel:
        """Train the model on ``interactions`` and keep its served user / item vectors."""
        from recsys.channels.two_tower_fit import fit_two_tower_embeddings
        from recsys.fit.two_tower_settings import TwoTowerSettings

        seen = _binary(interactions)
        emb = fit_two_tower_embeddings(self.settings or TwoTowerSettings(), seen, log=lambda m: None)
        return self._set(seen, emb.test_users, emb.test_items)

    def from_vectors(self, interactions, user_vectors: np.ndarray, item_vectors: np.ndarray) -> TwoTowerChannel:
        """Serve given vectors (rows aligned with ``interactions``' users and items)."""
        return self._set(_binary(interactions), user_vectors, item_vectors)

    def _set(self, seen: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> TwoTowerChannel:
        if users.shape[0] != seen.shape[0] or items.shape[0] != seen.shape[1]:
            raise DataValidationError(f"vectors for {users.shape[0]} users x {items.shape[0]} items do not match "
                                      f"the {seen.shape} interactions.")
        self.seen_, self.serving_ = seen, EmbeddingServing(users, items, index=self.index)
        return self

    def scores(self, users) -> np.ndarray:
        """Inner products with every item."""
        return self.serving_.scores(self._rows(users))

    def candidates(self, users, k: int, filters: FiltersArg = None) -> tuple[np.ndarray, np.ndarray]:
        """The index's top ``k`` (filters passed through; the user's training items excluded)."""
        rows = self._rows(users)
        return self.serving_.candidates(rows, k, self.seen_, filters)


class GraphFilterChannel(_Fitted):
    """A training-free graph filter (:class:`~recsys.models.graph_filter.GraphFilter` or
    :class:`~recsys.models.graph_filter_cheby.ChebyFilter`), scored exactly: two sparse products per step."""

    name = "graph_filter"

    def __init__(self, *, filter=None) -> None:
        self.filter = filter

    def fit(self, interactions) -> GraphFilterChannel:
        """Fit the filter (default: ChebyCF's, the paper's Gowalla setting)."""
        from recsys.models.graph_filter_cheby import ChebyFilter

        self.seen_ = _binary(interactions)
        self.filter_ = (self.filter if self.filter is not None else ChebyFilter()).fit(self.seen_)
        return self

    def scores(self, users) -> np.ndarray:
        """The filter's score of every item."""
        return self.filter_.scores(self._rows(users))


class ItemToItemChannel(_Fitted):
    """An item-to-item top-M table: from a fitted graph filter's item neighbours, or (default) cosine
    co-occurrence ``C_ij / sqrt(d_i d_j)`` of the training interactions; a user's candidates are the neighbours
    of their items, scores summed (items no neighbour list reaches are not candidates)."""

    name = "item_to_item"

    def __init__(self, *, neighbours: int = 100, filter=None) -> None:
        self.neighbours = neighbours
        self.filter = filter

    def fit(self, interactions) -> ItemToItemChannel:
        """Build the table."""
        self.seen_ = _binary(interactions)
        if self.filter is not None:
            ids, vals = self.filter.fit(self.seen_).item_neighbours(self.neighbours)
        else:
            ids, vals = _cooccurrence_table(self.seen_, self.neighbours)
        self.serving_ = ItemTableServing(ids, vals)
        return self

    def scores(self, users) -> np.ndarray:
        """Summed neighbour weights; ``-inf`` where no neighbour list reaches the item."""
        block = self.serving_.scores(self.seen_[self._rows(users)])
        block[block == 0] = -np.inf
        return block


def _cooccurrence_table(seen: sp.csr_matrix, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``m`` most co-occurring items by cosine, itself left out (n_items x m, -1 / -inf padded): the
    serving table of :class:`recsys.feed.item_table.ItemTable`, padded into rows."""
    from recsys.feed.item_table import ItemTable

    n = seen.shape[1]
    table = ItemTable.build(seen, m)
    width = min(m, n)
    counts = np.diff(table.indptr)
    row = np.repeat(np.arange(n), counts)
    col = np.arange(len(table.indices)) - np.repeat(table.indptr[:-1], counts)
    ids = np.full((n, width), -1, np.int64)
    vals = np.full((n, width), -np.inf, np.float32)
    ids[row, col], vals[row, col] = table.indices, table.weights
    return ids, vals


class PopularChannel(_Fitted):
    """Items most popular with an audience: with ``audiences`` (partner id -> user rows) and ``partner_of``
    (user row -> partner id) a user gets what their partner's audience interacted with most; else global counts."""

    name = "popular"

    def __init__(self, *, audiences: Mapping | None = None, partner_of: Mapping | None = None) -> None:
        self.audiences = audiences
        self.partner_of = partner_of

    def fit(self, interactions) -> PopularChannel:
        """Count interactions per item, overall and within each partner's audience."""
        self.seen_ = _binary(interactions)
        self.counts_ = np.asarray(self.seen_.sum(0), np.float32).ravel()
        self.partner_counts_ = {p: np.asarray(self.seen_[user_rows(list(rows), self.seen_.shape[0])].sum(0),
                                              np.float32).ravel() for p, rows in (self.audiences or {}).items()}
        return self

    def scores(self, users) -> np.ndarray:
        """``log1p`` of the count in the user's partner's audience (global count for a user without one)."""
        rows = self._rows(users)
        part = self.partner_of or {}
        return np.stack([np.log1p(self.partner_counts_.get(part.get(int(r)), self.counts_)) for r in rows])


class FriendsChannel(_Fitted):
    """What a user's friends interacted with: ``edges`` (user row, friend row) pairs (both directions count);
    with ``recency`` (a users x items matrix of weights, e.g. ``exp(-age / half_life)``) recent items weigh more."""

    name = "friends"

    def __init__(self, *, edges=None, recency: sp.spmatrix | None = None) -> None:
        self.edges = edges
        self.recency = recency

    def fit(self, interactions) -> FriendsChannel:
        """Build the symmetric friendship graph and the weighted friend-item matrix."""
        self.seen_ = _binary(interactions)
        n = self.seen_.shape[0]
        e = np.asarray(self.edges if self.edges is not None else np.zeros((0, 2)), np.int64).reshape(-1, 2)
        if e.size and (e.min() < 0 or e.max() >= n):
            raise DataValidationError(f"social edges must join user rows in [0, {n}); got a pair outside.")
        adj = sp.csr_matrix((np.ones(len(e) * 2, np.float32), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])),
                            shape=(n, n))
        adj.data[:] = 1.0
        weights = self.seen_ if self.recency is None else sp.csr_matrix(self.recency, dtype=np.float32)
        self.friends_items_ = (adj @ weights).tocsr()
        return self

    def scores(self, users) -> np.ndarray:
        """Summed (recency-weighted) friend interactions per item; ``-inf`` where no friend interacted."""
        block = self.friends_items_[self._rows(users)].toarray().astype(np.float32)
        block[block == 0] = -np.inf
        return block
