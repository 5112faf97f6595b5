"""Who engages with what, per partner and across the network, from the serving log (for reasons and lifts).

Counts are of positive events (the feature pipeline's ``positive_events``: click, cart, fav, purchase) by
partner and category, and purchases by item across the network. A partner's figures come only from its own
events; network figures are the whole log's aggregates, which the network owns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from recsys.feed.state import ServingState

__all__ = ["audiences", "category_counts", "category_lift", "item_purchases", "item_engagement", "MIN_GROUP"]

MIN_GROUP = 5  # events a partner needs in a category before a reason cites its lift there
_SMOOTH = 1.0  # events added to every category (Laplace), so a small count does not give a wild lift


def _positive(state: ServingState) -> pd.DataFrame:
    events = state.tables["events"]
    keep = events["event_type"].astype(str).isin(list(state.pipeline.positive_events)).to_numpy()
    pos = state.catalogue.positions(events["item_id"].to_numpy()[keep])
    media = (events["media_id"].astype(object).to_numpy()[keep] if "media_id" in events.columns
             else np.full(int(keep.sum()), None, dtype=object))
    ok = pos >= 0
    return pd.DataFrame({"media_id": media[ok], "category": state.catalogue.category[pos[ok]],
                         "purchase": (events["event_type"].astype(str).to_numpy()[keep] == "purchase")[ok],
                         "pos": pos[ok]})


def category_counts(state: ServingState) -> pd.DataFrame:
    """Positive events per category (columns) for each partner (rows) and for the whole network (row None is
    not used: the network total is the column sum). Cached per serving state."""
    hit = state.filters_cache.get("partner_category_counts")
    if hit is None:
        frame = _positive(state)
        with_partner = frame.dropna(subset=["media_id"])
        hit = (with_partner.groupby([with_partner["media_id"].astype(str), "category"]).size().unstack(fill_value=0)
               if len(with_partner) else pd.DataFrame(dtype=np.int64))
        hit.attrs["network"] = frame.groupby("category").size()
        state.filters_cache["partner_category_counts"] = hit
    return hit


def category_lift(state: ServingState, media_id: str) -> tuple[pd.Series, pd.Series]:
    """(lift, count) per category for ``media_id``'s audience: its share of the partner's positive events over
    the category's share of the network's, smoothed; a log without partner ids compares the network with itself
    (every lift 1)."""
    counts = category_counts(state)
    network = counts.attrs["network"].astype(np.float64)
    cats = network.index
    own = (counts.loc[media_id].reindex(cats, fill_value=0).astype(np.float64) if media_id in counts.index
           else pd.Series(0.0, index=cats))
    if not len(counts):
        own = network
    k = max(len(cats), 1)
    share = (own + _SMOOTH) / (own.sum() + _SMOOTH * k)
    base = (network + _SMOOTH) / (network.sum() + _SMOOTH * k)
    return share / base, own


def item_purchases(state: ServingState) -> np.ndarray:
    """Logged purchases of each catalogue position across the network (cached per serving state)."""
    hit = state.filters_cache.get("item_purchases")
    if hit is None:
        frame = _positive(state)
        hit = np.bincount(frame["pos"].to_numpy()[frame["purchase"].to_numpy()], minlength=len(state.catalogue))
        state.filters_cache["item_purchases"] = hit
    return hit


def item_engagement(state: ServingState) -> np.ndarray:
    """Logged positive events of each catalogue position across the network (cached per serving state)."""
    hit = state.filters_cache.get("item_engagement")
    if hit is None:
        hit = np.bincount(_positive(state)["pos"].to_numpy(), minlength=len(state.catalogue))
        state.filters_cache["item_engagement"] = hit
    return hit


def audiences(state: ServingState) -> dict[str, np.ndarray]:
    """Every known partner's audience (:func:`recsys.feed.audience.audience`, the same sorted ids), from one pass
    over the log instead of one per partner (cached per serving state)."""
    hit = state.filters_cache.get("partner_audiences")
    if hit is not None:
        return hit
    from recsys.feed.audience import _sorted_ids, audience, partners

    names = partners(state)
    events = state.tables["events"]
    media = events["media_id"] if "media_id" in events.columns else None
    if media is None or not media.notna().any() or not names:
        every = audience(state, names[0]) if names else np.zeros(0, np.int64)
        hit = {m: every for m in names}  # a log without partner ids: one audience for all (the rule's own)
    else:
        keep = events["event_type"].astype(str).isin(list(state.pipeline.positive_events)).to_numpy()
        keep &= media.notna().to_numpy()
        users = events["user_id"].to_numpy()[keep]
        known = state.users.ids.get_indexer(users) >= 0
        frame = pd.DataFrame({"media_id": media.to_numpy(dtype=object)[keep][known], "user_id": users[known]})
        groups = frame.drop_duplicates().groupby("media_id", sort=False)["user_id"]
        found = {str(m): _sorted_ids(u.to_numpy()) for m, u in groups}
        empty = _sorted_ids(np.zeros(0, dtype=state.users.ids.dtype))
        hit = {m: found.get(m, empty) for m in names}
    state.filters_cache["partner_audiences"] = hit
    return hit
