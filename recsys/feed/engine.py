"""One vectorised pass for a batch of feed requests: retrieve -> rank -> rules -> reasons.

``recommend`` is this pass on a batch of one, so a single request and a batch give the same feeds.
Per batch: one user-tower forward, one index search per (partner, segment) group, one feature
frame and one ranker call for every (request, candidate) row, one ablation call for the reasons.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.feed.backfill import popular_tiers
from recsys.feed.fallback import cold_start_path
from recsys.feed.item_score import attach_scores
from recsys.feed.output import (
    OUTPUT_COLUMNS,
    _assemble,
    _reason_codes,  # noqa: F401  (re-exported: tests import it from here)
    score_kind,
)
from recsys.feed.partners import (
    check_partner,
    partner_pool,
    pool_key,
    pool_positions,
    request_segment,
)
from recsys.feed.ranking import candidates, rank
from recsys.feed.request import Request
from recsys.feed.rules import RequestScope, eligible, in_sorted
from recsys.feed.selection import select_feeds
from recsys.feed.state import ServingState

# OUTPUT_COLUMNS and score_kind (output.py) are re-exported here
__all__ = ["Request", "run_batch", "OUTPUT_COLUMNS", "score_kind", "partner_objective"]


def partner_objective(state: ServingState, req: Request) -> str:
    """The objective the ranker's scores of this request are in (the partner's, else the default)."""
    return state.objectives.get(req.media_id, state.config.default_objective)


def _scope(state: ServingState, req: Request) -> RequestScope:
    bought = state.users.bought(req.row)
    repeat = state.config.rules.repeat_purchase_categories
    if repeat and len(bought):
        bought = bought[~np.isin(state.catalogue.category[bought], list(repeat))]
    extra = state.catalogue.positions(list(req.exclude)) if req.exclude else np.zeros(0, np.int64)
    excluded = np.unique(np.concatenate([bought, extra[extra >= 0]]))
    pool = partner_pool(state, req.pool)
    return RequestScope(pool=pool, segments=frozenset([req.segment]) if req.segment else frozenset(), excluded=excluded,
                        pool_positions=pool_positions(state, req.pool) if pool is not None else None)


def _resolve(state: ServingState, reqs: list[Request]) -> None:
    """User rows, segments, partner pools (recsys.feed.partners), notes on unknown ids, and the cold-start path
    of each request. A partner the configuration refuses raises DataValidationError before any work."""
    for r in reqs:
        try:
            note = check_partner(state, r.media_id)
        except DataValidationError as e:
            raise DataValidationError(f"user_id {r.user_id!r}: {e}" if len(reqs) > 1 else str(e)) from None
        r.pool = pool_key(state, r.media_id)
        if note:
            r.notes.append(note)
    rows = state.users.rows([r.user_id for r in reqs])
    model_ctx = state.users.context_key is not None
    for r, row in zip(reqs, rows, strict=True):
        r.row = int(row)
        if r.row < 0:
            r.notes.append(f"unknown user_id {r.user_id!r}: served as a new user")
        r.segment = request_segment(state, r.row, r.context, r.notes)
        has_hist = r.row >= 0 and bool(state.users.has_history[r.row])
        profile = any((r.context or {}).get(c) is not None for c in state.users.profile_keys)
        has_feats = (model_ctx and r.media_id is not None) or profile or (r.row >= 0 and bool(state.users.profile_keys))
        r.path = cold_start_path(state.config.cold_start, has_history=has_hist, has_features=has_feats)


USER_VECTOR_MEMO = 100_000  # (known user, partner) vectors a serving state remembers before starting over


def _user_vectors(state: ServingState, reqs: list[Request]) -> np.ndarray:
    """User-tower vectors of the requests. A single known user's vector is remembered per partner (the tower's
    inputs for a known user are fixed until the state changes, and a new state starts with an empty memo), so a
    returning user skips the tower; the memo holds the very vector the tower gave for that one request."""
    memo = None
    if len(reqs) == 1 and reqs[0].row >= 0:
        memo = state.filters_cache.setdefault("user_vectors", {})
        key = (reqs[0].row, reqs[0].media_id)
        hit = memo.get(key)
        if hit is not None:
            return hit
    vecs = _tower(state, reqs)
    if memo is not None:
        if len(memo) >= USER_VECTOR_MEMO:
            memo.clear()
        vecs.setflags(write=False)
        memo[key] = vecs
    return vecs


def _tower(state: ServingState, reqs: list[Request]) -> np.ndarray:
    args = (np.asarray([r.user_id for r in reqs], dtype=object), np.asarray([r.row for r in reqs], dtype=np.int64),
            [r.media_id for r in reqs], [r.context for r in reqs])
    folded = state.folded_tower()
    if folded is not None:  # NumPy: the same vectors without torch's per-call overhead
        return folded(state.users.tower_arrays(*args))
    import torch

    if state.model.training:
        state.model.eval()
    with torch.inference_mode():  # no autograd bookkeeping at all: the same kernels, less dispatch than no_grad
        return state.model.user_embeddings(state.users.tower_inputs(*args)).cpu().numpy().astype(np.float32)


def _filters(state: ServingState, media: Any, segment: str):
    """Cached SearchFilters for a (pool key, segment) group and the pool share it leaves to post-filter.

    A pool smaller than ``allow_fraction`` of the live catalogue is an allow-list (searched exactly or with
    widened ANN effort by the index); a larger one is over-fetched by 1 / its share and filtered here (its
    ids would cost the index a lookup of most of the catalogue on every update). Stock and segments are the
    index's filters, applied at its own knobs through a selector (``widen=False``): the best eligible items
    of the lists the search scans, without over-fetching for them."""
    key = (media, segment)
    hit = state.filters_cache.get(key)
    if hit is not None:
        return hit
    from recsys.index import SearchFilters

    pool = partner_pool(state, media)
    share, allow = 1.0, None
    if pool is not None:
        live = state.catalogue.alive
        share = max(float(pool[live].mean()) if live.any() else 1.0, 1e-6)
        if share < state.config.allow_fraction:
            allow, share = state.catalogue.ids[pool & live].tolist(), 1.0
    f = SearchFilters(allow=allow, segments=frozenset([segment]) if segment else frozenset(),
                      require_in_stock=state.config.rules.require_in_stock, widen=allow is not None)
    state.filters_cache[key] = (f, share)
    return f, share


def _retrieve(state: ServingState, reqs: list[Request], scopes: list[RequestScope], idx: list[int]
              ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Top ``n_candidates`` eligible positions and two-tower scores per request in ``idx``; user vectors."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if not idx:
        return out, np.zeros((0, state.item_emb.shape[1]), np.float32)
    q = _user_vectors(state, [reqs[i] for i in idx])
    n_cand, n_index = state.config.n_candidates, state.index_size()
    groups: dict[tuple, list[int]] = {}
    for j, i in enumerate(idx):
        groups.setdefault((reqs[i].pool, reqs[i].segment), []).append(j)
    for (media, segment), js in groups.items():
        f, share = _filters(state, media, segment)
        n_excl = max(len(scopes[idx[j]].excluded) for j in js)  # the user's own exclusions are checked here
        fetch = max(1, min(n_index, math.ceil((n_cand + n_excl) / share * 1.1) + 8))
        scores, ids = state.index.search(q[js], fetch, f)
        pos = state.catalogue.positions(ids.reshape(-1)).reshape(ids.shape)
        pos[~np.isfinite(scores)] = -1
        for row, j in enumerate(js):
            ok = eligible(state.catalogue, pos[row], scopes[idx[j]], state.config.rules)
            out[idx[j]] = (pos[row][ok][:n_cand], scores[row][ok][:n_cand].astype(np.float64))
    return out, q


def _popular(state: ServingState, req: Request, scope: RequestScope, n: int, skip: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    pos, score = state.popular.top(state.catalogue, req.media_id, req.segment or None)
    head = 4 * n + len(skip)  # the best-ranked usually suffice: check those first, the rest only if short
    skip_sorted = np.sort(skip)  # in_sorted needs it sorted; a repeated value finds itself all the same
    for part in (slice(0, head), slice(0, len(pos))) if head < len(pos) else (slice(0, len(pos)),):
        ok = eligible(state.catalogue, pos[part], scope, state.config.rules)
        if len(skip):
            ok &= ~in_sorted(pos[part], skip_sorted)
        if ok.sum() >= n or part.stop >= len(pos):
            break
    return pos[part][ok][:n], score[part][ok][:n]


def _item_to_item(state: ServingState, req: Request, scope: RequestScope, skip: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The item-to-item channel's candidates for one request: the best ``config.item_to_item`` eligible items the
    neighbour lists of its user's recent items reach, not in ``skip`` (the two-tower's); ``(positions, summed
    weights, anchor)``. The seeds are the items a reason on this partner may cite (recsys.feed.partners), so the
    viewed item a row names is always one the user engaged with there."""
    from recsys.feed.item_score import request_reach
    from recsys.feed.item_table import best

    items, sums, anchor = request_reach(state, req)  # from the same items the reasons may name
    ok = eligible(state.catalogue, items, scope, state.config.rules)
    if len(skip):
        ok &= ~in_sorted(items, np.sort(skip))
    items, sums, anchor = items[ok], sums[ok], anchor[ok]
    top = best(items, sums, state.config.item_to_item)  # heaviest first, then lower position
    return items[top], sums[top], anchor[top]


def _friends(state: ServingState, req: Request, scope: RequestScope, skip: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The friends channel's candidates for one request: the best ``config.friends`` eligible items that most of
    the user's friends (``context['friends']``, else the social graph) engaged with on its partner, not in
    ``skip``; ``(positions, friends who engaged, no anchor)``."""
    from recsys.feed.friends import MAX_FRIENDS, friends_items
    from recsys.feed.item_table import best

    listed = (req.context or {}).get("friends")
    if listed is not None:
        rows = state.users.rows(list(listed))
        rows = np.unique(rows[rows >= 0])
    else:
        rows = state.friend_graph.of(req.row)
    rows = rows[rows != req.row][:MAX_FRIENDS]
    items, counts = friends_items(state, rows, req.media_id)
    ok = eligible(state.catalogue, items, scope, state.config.rules)
    if len(skip):
        ok &= ~in_sorted(items, np.sort(skip))
    items, counts = items[ok], counts[ok].astype(np.float64)
    top = best(items, counts, state.config.friends)  # most friends first, then lower position
    return items[top], counts[top], np.full(len(top), -1, np.int64)


# channel code -> (the ServingConfig setting that turns it on, the ServingState field it serves from, candidates)
CHANNELS = {1: ("item_to_item", "item_table", _item_to_item), 2: ("friends", "friend_graph", _friends)}


def _merge_channels(state: ServingState, reqs: list[Request], scopes: list[RequestScope], idx: list[int],
                    firsts: list) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Append each extra channel's candidates (item-to-item, then friends) to the first tier of each retrieved
    request in ``idx`` (in place), each skipping what earlier channels brought; returns per request the channel
    code (0 two-tower, then :data:`CHANNELS`'s) and anchor of its first-tier rows."""
    on = [(code, fn) for code, (setting, field, fn) in CHANNELS.items()
          if getattr(state.config, setting) and getattr(state, field) is not None]
    out = {}
    if not on:
        return out
    for i in idx:
        pos, score = firsts[i]
        parts = [(pos, score, np.zeros(len(pos), np.int8), np.full(len(pos), -1, np.int64))]
        for code, fn in on:
            extra, weight, anchor = fn(state, reqs[i], scopes[i], np.concatenate([p[0] for p in parts]))
            parts.append((extra, weight, np.full(len(extra), code, np.int8), anchor))
        firsts[i] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        out[i] = (np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]))
    return out


def run_batch(state: ServingState, reqs: list[Request], timings: dict[str, float] | None = None, *,
              with_request: bool = False, cpu_timings: dict[str, float] | None = None,
              drop: tuple[str, ...] = (), as_columns: bool = False) -> pd.DataFrame | dict[str, Any]:
    """Feeds for validated requests: one row per (request, item), in feed order (see OUTPUT_COLUMNS).

    ``timings`` (optional) accumulates the seconds spent per stage: retrieve, features, ranker,
    rules, reasons (benchmarks read it), ``cpu_timings`` this thread's CPU seconds per stage;
    ``with_request`` adds ``_request``, each row's request number; ``drop`` leaves out output columns;
    ``as_columns`` returns the columns as a dict of arrays instead of a DataFrame (one feed's few rows:
    the frame is the larger cost, and a caller may never need it).
    """
    clock = _Clock(timings, cpu_timings)
    _resolve(state, reqs)
    scopes = [_scope(state, r) for r in reqs]
    n_cand = state.config.n_candidates
    ret_idx = [i for i, r in enumerate(reqs) if r.path != "popular"]
    retrieved, q = _retrieve(state, reqs, scopes, ret_idx)
    vector_of = np.full(len(reqs), -1, np.int64)
    vector_of[ret_idx] = np.arange(len(ret_idx))
    clock.lap("retrieve")
    firsts = [retrieved.get(i) or _popular(state, r, scopes[i], n_cand, np.zeros(0, np.int64))
              for i, r in enumerate(reqs)]
    merged = _merge_channels(state, reqs, scopes, ret_idx, firsts)
    # backfill tier: the partner's popular items, twice k so that it can also restore category variety
    ns = [2 * r.k for r in reqs]
    backfill = popular_tiers(state, reqs, scopes, ns, [f[0] for f in firsts],
                             lambda i: _popular(state, reqs[i], scopes[i], ns[i], firsts[i][0]))
    blocks = [b for i in range(len(reqs)) for b in ((i, 0, *firsts[i]), (i, 1, *backfill[i]))]
    first_blocks = {i: b for b, (i, t, _, _) in enumerate(blocks) if t == 0}
    cand = candidates(state, blocks, q, vector_of, {first_blocks[i]: v for i, v in merged.items()})
    attach_scores(state, reqs, cand)  # item_to_item_score, when the ranker reads it
    ranked = rank(state, reqs, cand, clock)
    sels = select_feeds(state.catalogue, scopes, state.config.rules, [r.k for r in reqs], cand.req, cand.tier,
                        cand.pos, ranked.scores, 2)  # apply_rules per request, in one pass over the batch
    picked = []
    for i, (r, sel) in enumerate(zip(reqs, sels, strict=True)):
        r.notes.extend(_feed_notes(state, scopes[i], r.k, sel))
        picked.append((i, sel))
    clock.lap("rules")
    out = _assemble(state, reqs, cand, ranked, picked, with_request, drop)
    if not as_columns:
        cols, out = out, pd.DataFrame(out)
        for c in ("media_id", "fallback"):  # None stays None (pandas would make these str columns with NaN)
            if c in cols:
                out[c] = pd.Series(cols[c], dtype=object, index=out.index)
    clock.lap("reasons")
    return out


def _feed_notes(state: ServingState, scope: RequestScope, k: int, sel) -> list[str]:
    """What a feed owes the caller: that it is short (with the real count of eligible items), or that the
    category cap was relaxed to fill it."""
    out = []
    if len(sel.positions) < k:
        where = scope.pool_positions if scope.pool_positions is not None else (
            np.flatnonzero(scope.pool) if scope.pool is not None else np.arange(len(state.catalogue)))
        n = int(eligible(state.catalogue, where, scope, state.config.rules).sum())
        out.append(f"only {n} eligible items for this request (asked for {k}): the partner's pool, stock, segment "
                   "and exclusions leave no more")
    if sel.relaxed:
        cap = state.config.rules.max_per_category
        out.append(f"category cap relaxed: {sel.relaxed} of {len(sel.positions)} items go beyond {cap} per "
                   f"category, because the eligible items fill only {len(sel.positions) - sel.relaxed} slots under it")
    return out


class _Clock:
    """Stage timer (wall seconds into ``timings``, this thread's CPU seconds into ``cpu``) that costs nothing
    when neither dict is given."""

    def __init__(self, timings: dict[str, float] | None, cpu: dict[str, float] | None = None) -> None:
        import time

        self.timings, self.cpu, self._now, self._cpu_now = timings, cpu, time.perf_counter, time.thread_time
        self.t = self._now() if timings is not None else 0.0
        self.c = self._cpu_now() if cpu is not None else 0.0

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            t = self._now()
            self.timings[stage] = self.timings.get(stage, 0.0) + t - self.t
            self.t = t
        if self.cpu is not None:
            c = self._cpu_now()
            self.cpu[stage] = self.cpu.get(stage, 0.0) + c - self.c
            self.c = c
