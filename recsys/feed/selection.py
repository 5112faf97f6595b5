"""The business rules of :mod:`recsys.feed.rules` for every request of a batch in one NumPy pass.

:func:`select_feeds` gives each request the :class:`~recsys.feed.rules.Selection` that
:func:`~recsys.feed.rules.apply_rules` gives it (same items, order, scores, tiers), sorting and capping the
concatenated candidate rows of all requests at once instead of one request at a time. A request whose candidates
cannot fill ``k`` slots under the category cap (its feed needs the pool scan or a relaxed cap) goes through
:func:`~recsys.feed.rules.apply_rules` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.feed.catalogue import Catalogue
from recsys.feed.rules import BusinessRules, RequestScope, Selection, apply_rules

__all__ = ["select_feeds"]


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries share its ``group`` value (entries in their given order)."""
    n = len(group)
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.concatenate(([0], np.flatnonzero(g[1:] != g[:-1]) + 1))  # (np.r_ costs more on a request's rows)
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    return out


def select_feeds(catalogue: Catalogue, scopes: Sequence[RequestScope], rules: BusinessRules, ks: Sequence[int],
                 req: np.ndarray, tier: np.ndarray, pos: np.ndarray, scores: np.ndarray, n_tiers: int
                 ) -> list[Selection]:
    """Per request ``i`` the Selection of ``apply_rules(catalogue, scopes[i], rules, ks[i], tiers)`` where tier
    ``t`` of request ``i`` is ``(pos[m], scores[m])`` for ``m = (req == i) & (tier == t)``.

    The rows (``req``, ``tier``, ``pos``, ``scores``) must already be eligible for their request's scope, as the
    engine's candidates are (retrieval and the popular tiers filter with :func:`~recsys.feed.rules.eligible`):
    rows are not checked again here.
    """
    n_req = len(scopes)
    req = np.asarray(req, np.int64)
    tier = np.asarray(tier, np.int64)
    pos = np.asarray(pos, np.int64)
    scores = np.asarray(scores, np.float64)
    # walk order: by request, tier, score (highest first, NaN last), then input order (lexsort is stable)
    walk = np.lexsort((-np.nan_to_num(scores, nan=-np.inf), tier, req))
    w_req, w_pos = req[walk], pos[walk]
    stride = np.int64(len(catalogue) + 1)
    first = np.unique(w_req * stride + w_pos, return_index=True)[1]  # first occurrence of each (request, item)
    keep = np.zeros(len(walk), bool)
    keep[first] = True
    walk, w_req, w_pos = walk[keep], w_req[keep], w_pos[keep]
    cap = rules.max_per_category
    k_of = np.asarray(ks, np.int64)
    if cap is None:
        under = np.ones(len(walk), bool)
    else:
        codes = catalogue.category_code[w_pos].astype(np.int64)
        under = _rank_in_group(w_req * np.int64(catalogue.n_categories + 1) + codes) < cap
    # the first k rows under the cap of each request, in walk order
    u_req = w_req[under]
    u_rank = _rank_in_group(u_req)  # rows are grouped by request already: this is the running count
    take = np.flatnonzero(under)[u_rank < k_of[u_req]]
    full = np.bincount(u_req, minlength=n_req) >= k_of
    bounds = np.searchsorted(w_req[take], np.arange(n_req + 1))
    rows = walk[take]
    out = []
    for i in range(n_req):
        if full[i]:
            r = rows[bounds[i]:bounds[i + 1]]
            out.append(Selection(pos[r], scores[r], tier[r], relaxed=0))
        else:  # short under the cap: the pool scan or a relaxed cap, as apply_rules does them
            m = req == i
            t, p, s = tier[m], pos[m], scores[m]
            out.append(apply_rules(catalogue, scopes[i], rules, int(k_of[i]),
                                   [(p[t == j], s[t == j]) for j in range(n_tiers)]))
    return out
