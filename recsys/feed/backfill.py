"""The popular backfill tier of many requests at once: per request the first ``n`` eligible items of its partner's
popular list that it does not already have, as :func:`recsys.feed.engine._popular` gives them one by one.

A batch's requests mostly share a few (partner, segment) lists; eligibility there differs between users only by
what each must not see (its exclusions and its first tier), so one mask per list and one boolean matrix
(requests x the head of the list) replace a membership search per request. A request with fewer than ``n`` such
items in the head goes through ``one`` (the per-request path), which reads further down the list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from recsys.feed.rules import RequestScope, eligible

__all__ = ["popular_tiers", "MIN_GROUP"]

MIN_GROUP = 32  # fewer requests on one list go one by one (the matrix's fixed cost is a pass over the catalogue)


def popular_tiers(state, reqs: Sequence, scopes: Sequence[RequestScope], ns: Sequence[int], skips: Sequence[np.ndarray],
                  one: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per request ``i``: ``one(i)``'s answer (positions, scores), the first ``ns[i]`` eligible items of its popular
    list not in ``skips[i]``, computed for groups of requests sharing a list and its filters in one pass."""
    out: list = [None] * len(reqs)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(reqs):
        groups.setdefault((r.media_id, r.segment or None, r.pool), []).append(i)
    for (media, segment, _), members in groups.items():
        if len(members) < MIN_GROUP:
            for i in members:
                out[i] = one(i)
            continue
        pos, score = state.popular.top(state.catalogue, media, segment)
        for i, got in zip(members, _group(state, pos, score, [scopes[i] for i in members], [ns[i] for i in members],
                                          [skips[i] for i in members]), strict=True):
            out[i] = got if got is not None else one(i)
    return out


def _group(state, pos: np.ndarray, score: np.ndarray, scopes: list[RequestScope], ns: list[int],
           skips: list[np.ndarray]) -> list:
    """The answers of one group's requests (None where the head of the list holds too few for a request)."""
    cat = state.catalogue
    head = min(len(pos), 4 * max(ns) + max(len(s) for s in skips))
    p = pos[:head]
    first = scopes[0]  # the group shares pool and segments; only exclusions differ
    if len(np.unique(p)) != len(p):  # a list naming an item twice: the per-request path, exactly as it treats it
        return [None] * len(scopes)
    base = eligible(cat, p, RequestScope(pool=first.pool, segments=first.segments,
                                         pool_positions=first.pool_positions), state.config.rules)
    rank_in_list = np.full(len(cat), -1, np.int64)
    valid = (p >= 0) & (p < len(cat))
    rank_in_list[p[valid]] = np.flatnonzero(valid)
    banned = [np.concatenate([np.asarray(s.excluded, np.int64), np.asarray(k, np.int64)]) for s, k in
              zip(scopes, skips, strict=True)]
    who = np.repeat(np.arange(len(scopes)), [len(b) for b in banned])
    flat = np.concatenate(banned) if banned else np.zeros(0, np.int64)
    inside = (flat >= 0) & (flat < len(cat))
    r = rank_in_list[flat[inside]]
    hit = r >= 0
    ok = np.broadcast_to(base, (len(scopes), head)).copy()
    ok[who[inside][hit], r[hit]] = False
    n = np.asarray(ns, np.int64)
    take = ok & (np.cumsum(ok, axis=1) <= n[:, None])
    enough = take.sum(axis=1) >= n
    rows, cols = np.nonzero(take)
    bounds = np.searchsorted(rows, np.arange(len(scopes) + 1))
    return [(p[cols[bounds[u]:bounds[u + 1]]], score[:head][cols[bounds[u]:bounds[u + 1]]]) if enough[u] else None
            for u in range(len(scopes))]

