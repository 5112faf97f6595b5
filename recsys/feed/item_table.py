"""The item-to-item recall channel of the Recommender: a top-M neighbour table over catalogue positions.

:meth:`ItemTable.build` counts how often two items share a user's history (the serving log's recent positive
items, the same rows the user tower reads) and keeps each item's ``neighbours`` most similar items by cosine,
``C_ij / sqrt(d_i d_j)`` (``C``: users holding both, ``d``: users holding each), itself left out.
:meth:`ItemTable.reach` gives a request's candidates: the neighbours of the user's items, weights summed, and
for each the user's item that lends it the most weight (the item a reason names: "because you viewed ...").

The table is rebuilt from the serving log whenever a serving state is built (a fit, a load), so a saved bundle
needs no new file and a reloaded one serves the same candidates. It is a CSR over positions: rows of items that
no history holds are empty, so a 1M-item catalogue with a small log costs little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError

__all__ = ["ItemTable", "NEIGHBOURS", "SEED_ITEMS", "best", "history_table"]

NEIGHBOURS = 50  # neighbours kept per item
SEED_ITEMS = 50  # a request's most recent history items whose neighbours it reaches
BLOCK_ENTRIES = 20_000_000  # co-occurrence entries held at once while building (about 240 MB)


@dataclass(frozen=True)
class ItemTable:
    """``indptr`` (n_items + 1), ``indices`` (neighbour positions) and ``weights`` (cosine, float32): row ``i``
    lists item ``i``'s neighbours, best first (ties: lower position first)."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray

    @property
    def n_items(self) -> int:
        """Rows of the table (catalogue positions it covers)."""
        return len(self.indptr) - 1

    @classmethod
    def build(cls, interactions: sp.spmatrix, neighbours: int = NEIGHBOURS, *,
              block_entries: int = BLOCK_ENTRIES) -> ItemTable:
        """The table of a users x items matrix (any nonzero counts once). Items are processed in blocks holding
        at most about ``block_entries`` co-occurrence entries, so memory is bounded whatever the log's size."""
        if isinstance(neighbours, bool) or not isinstance(neighbours, int | np.integer) or neighbours < 1:
            raise ConfigError(f"neighbours must be a positive integer; got {neighbours!r}.")
        x = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
        x.sum_duplicates()
        x.data[:] = 1.0
        x.eliminate_zeros()
        n = x.shape[1]
        deg = np.asarray(x.sum(axis=0)).ravel()
        active = np.flatnonzero(deg > 0)
        xa = x[:, active].tocsr()
        xt = xa.T.tocsr()
        inv = (1.0 / np.sqrt(deg[active])).astype(np.float32)
        # entries item i's row of C can hold: the summed history lengths of its users (an upper bound)
        bound = xt @ np.diff(xa.indptr).astype(np.float64)
        cum = np.cumsum(bound)
        rows, cols, vals = [], [], []
        start = 0
        while start < len(active):
            done = cum[start - 1] if start else 0.0
            stop = max(start + 1, int(np.searchsorted(cum, done + block_entries, side="right")))
            block = xt[start:stop] @ xa
            block.sort_indices()  # each row's entries by column: the stable sort below keeps that order on ties
            counts = np.diff(block.indptr)
            r = np.repeat(np.arange(start, stop, dtype=np.int64), counts)
            c = block.indices.astype(np.int64)
            w = (block.data * inv[r] * inv[c]).astype(np.float32)
            keep = r != c
            r, c, w = r[keep], c[keep], w[keep]
            # per row, heaviest first, then lower position: one stable sort of (row, inverted weight bits); the
            # bits of a positive float32 order as the float does
            key = (r << 31) | (0x7FFFFFFF - w.view(np.int32).astype(np.int64))
            order = np.argsort(key, kind="stable")
            r, c, w = r[order], c[order], w[order]
            per_row = np.bincount(r - start, minlength=stop - start)
            top = np.arange(len(r)) - np.repeat(np.cumsum(per_row) - per_row, per_row) < neighbours
            rows.append(active[r[top]])
            cols.append(active[c[top]])
            vals.append(w[top])
            start = stop
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        indptr = np.concatenate(([0], np.cumsum(np.bincount(r, minlength=n)))).astype(np.int64)
        return cls(indptr, np.concatenate(cols) if cols else np.zeros(0, np.int64),
                   np.concatenate(vals) if vals else np.zeros(0, np.float32))

    def reach(self, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items the neighbour lists of ``seeds`` (positions) reach: ``(items, summed weights, anchor)``, items in
        ascending order, ``anchor`` the seed lending each item the most weight (ties: the earlier seed)."""
        seeds = np.asarray(seeds, np.int64)
        seeds = seeds[(seeds >= 0) & (seeds < self.n_items)]
        starts, lengths = self.indptr[seeds], self.indptr[seeds + 1] - self.indptr[seeds]
        total = int(lengths.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.int64)
        flat = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
        items, w, seed_of = self.indices[flat], self.weights[flat], np.repeat(seeds, lengths)
        # by item, heaviest contribution first, the earlier seed on ties: one stable sort of (item, inverted weight
        # bits); the bits of a positive float32 order as the float does
        order = np.argsort((items << 31) | (0x7FFFFFFF - w.view(np.int32).astype(np.int64)), kind="stable")
        items, w, seed_of = items[order], w[order].astype(np.float64), seed_of[order]
        first = np.concatenate(([0], np.flatnonzero(items[1:] != items[:-1]) + 1))
        return items[first], np.add.reduceat(w, first), seed_of[first]


def best(items: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest ``scores``, highest first, the lower item on ties (the channel's order): a
    partition first, so only the few at the top are sorted."""
    if len(scores) > n:
        cut = -np.partition(-scores, n - 1)[n - 1]
        keep = np.flatnonzero(scores >= cut)  # the top n and any tied with the n-th
    else:
        keep = np.arange(len(scores))
    return keep[np.lexsort((items[keep], -scores[keep]))[:n]]


def history_table(history: sp.csr_matrix, vocab_to_pos: np.ndarray | None, n_items: int,
                  neighbours: int = NEIGHBOURS) -> ItemTable:
    """The table of the serving histories (users x the pipeline's item vocabulary, :class:`~recsys.feed.users.
    UserState`), their columns mapped to catalogue positions by ``vocab_to_pos`` (items without one dropped)."""
    h = sp.csr_matrix(history)
    cols = h.indices.astype(np.int64)
    if vocab_to_pos is not None:  # it covers the whole vocabulary (recsys.feed.state.vocab_positions)
        cols = vocab_to_pos[cols]
    rows = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
    ok = (cols >= 0) & (cols < n_items)
    x = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (rows[ok], cols[ok])), shape=(h.shape[0], n_items))
    return ItemTable.build(x, neighbours)
