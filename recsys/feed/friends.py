"""The friends recall channel of the Recommender: what the user's friends engaged with on the same partner.

:class:`FriendGraph` holds the social edges (both directions) between the serving users' rows. A request's
friends are the ones its ``context['friends']`` lists, else the graph's. Each item a friend engaged with positively
on the request's partner counts once per friend (from the partner's log; a request without a partner, or a log
without partner ids, reads the friends' recent history rows, the ones the user tower reads), and the items most
friends engaged with are the channel's candidates (ties: the lower catalogue position). Only a friend's events on
the request's partner count, so one partner's feed never carries what friends did on another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["FriendGraph", "MAX_FRIENDS", "friends_items"]

MAX_FRIENDS = 100  # friends of one request whose items are read (the first by user row)


@dataclass(frozen=True)
class FriendGraph:
    """Friends of each user row (CSR ``indptr`` / ``indices`` over the serving users' rows, sorted)."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def build(cls, social: pd.DataFrame | None, users) -> FriendGraph:
        """From a social table (``user_id``, ``friend_id``; both directions count) over the rows of ``users``
        (a :class:`~recsys.feed.users.UserState`; an edge to a user it lacks is dropped)."""
        n = len(users.ids)
        if social is None or not len(social):
            return cls(np.zeros(n + 1, np.int64), np.zeros(0, np.int64))
        a = users.rows(social["user_id"].to_numpy())
        b = users.rows(social["friend_id"].to_numpy())
        ok = (a >= 0) & (b >= 0) & (a != b)
        src, dst = np.concatenate([a[ok], b[ok]]), np.concatenate([b[ok], a[ok]])
        m = sp.csr_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
        m.sum_duplicates()
        m.sort_indices()
        return cls(m.indptr.astype(np.int64), m.indices.astype(np.int64))

    def of(self, row: int) -> np.ndarray:
        """The friends of user ``row`` (empty for an unknown user)."""
        if row < 0 or row >= len(self.indptr) - 1:
            return np.zeros(0, np.int64)
        return self.indices[self.indptr[row]:self.indptr[row + 1]]


def friends_items(state, friends: np.ndarray, media_id) -> tuple[np.ndarray, np.ndarray]:
    """Catalogue positions the ``friends`` (user rows) engaged with positively on ``media_id`` and how many of them
    did (sorted positions): from the partner's log when the log has partner ids and a partner is given, else from
    their recent history rows."""
    from recsys.feed.partners import log_index
    from recsys.sorted_unique import unique_sorted

    index = log_index(state) if media_id is not None else None
    if index is not None:
        code = index["codes"].get(media_id)
        if code is None or not len(friends):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys = friends.astype(np.int64) * len(index["codes"]) + code
        lo, hi = np.searchsorted(index["keys"], keys), np.searchsorted(index["keys"], keys + 1)
        lengths = hi - lo
        flat = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(lo, lengths)
        pos = state.catalogue.positions(index["items"][flat])
        who = np.repeat(np.arange(len(friends)), lengths)
    else:
        h = state.users.history[friends]
        pos = state.vocab_to_pos[h.indices] if state.vocab_to_pos is not None else np.zeros(0, np.int64)
        who = np.repeat(np.arange(len(friends)), np.diff(h.indptr))
    ok = pos >= 0
    pairs = unique_sorted(pos[ok] * np.int64(len(friends) + 1) + who[ok])  # each (item, friend) once
    items = pairs // np.int64(len(friends) + 1)
    if not len(items):
        return items, np.zeros(0, np.int64)
    first = np.concatenate(([0], np.flatnonzero(items[1:] != items[:-1]) + 1))
    return items[first], np.diff(np.append(first, len(items)))
