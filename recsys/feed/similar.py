"""Items like this one: nearest neighbours of an item's embedding, within a partner's pool and the rules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.feed.rules import BusinessRules, RequestScope, apply_rules
from recsys.feed.state import ServingState

__all__ = ["similar_items"]


def similar_items(state: ServingState, item_id: Any, k: int, media_id: str | None):
    """A :class:`~recsys.recommender.Feed` of the ``k`` items closest to ``item_id`` (cosine/inner product).

    Shown to anyone, so invite-only items are left out; no category cap (similar items share one).
    An unknown item id falls back to what is popular on the partner, and the feed says so.
    """
    from recsys.feed.result import Feed

    cat = state.catalogue
    pos = cat.live_positions([item_id])
    from recsys.feed.partners import check_partner, partner_pool, pool_key

    note = check_partner(state, media_id)  # a partner the configuration refuses raises here
    key = pool_key(state, media_id)
    pool = partner_pool(state, key)
    rules = BusinessRules(max_per_category=None, require_in_stock=state.config.rules.require_in_stock)
    notes, fallback = [note] if note else [], None
    if len(pos):
        scope = RequestScope(pool=pool, excluded=pos[:1])
        from recsys.feed.engine import _filters

        f, share = _filters(state, key, "")
        fetch = max(1, min(len(state.index), int(np.ceil((k + 1) / share * 1.1)) + 8))
        scores, ids = state.index.search(state.item_emb[pos[:1]], fetch, f)
        cand = cat.positions(ids[0])
        cand[~np.isfinite(scores[0])] = -1
        sel = apply_rules(cat, scope, rules, k, [(cand, scores[0].astype(np.float64))])
        title = cat.title[pos[0]] or str(item_id)
        reasons = [f"similar to {title}"] * len(sel.positions)
        codes, source = ["similar"] * len(sel.positions), ["similar"] * len(sel.positions)
    else:
        fallback = "popular"
        notes.append(f"unknown item_id {item_id!r}: showing what is popular" + (f" on {media_id}" if media_id else ""))
        scope = RequestScope(pool=pool)
        top, score = state.popular.top(cat, media_id, None)
        sel = apply_rules(cat, scope, rules, k, [(top, score)])
        where = f" on {media_id}" if media_id else ""
        reasons = [f"popular{where}"] * len(sel.positions)
        codes, source = ["popular"] * len(sel.positions), ["popular"] * len(sel.positions)
    items = pd.DataFrame({"rank": np.arange(1, len(sel.positions) + 1), "item_id": cat.ids[sel.positions],
                          "score": sel.scores, "pctr": np.nan, "pcvr": np.nan, "reason": reasons,
                          "reason_code": codes, "source": source})
    return Feed(user_id=None, media_id=media_id, items=items, fallback=fallback, notes=notes,
                score_kind="popularity" if fallback else "similarity", catalogue=cat)
