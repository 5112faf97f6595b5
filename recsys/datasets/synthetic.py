"""A synthetic affiliate world: the embedded default data for the demo and most tests.

Merchants' items (category, brand, shop, lognormal prices, 1-30% commission, coupons), users with
latent interests, price sensitivity and friends, and media partners of three kinds (shopping-guide
sites, content apps, influencers), each with its own audience and product pool. Over ``n_days``
days users open partners' feeds: impressions -> clicks (CTR a few percent) -> cart / fav ->
purchases (1-5% of clicks). Some items appear only late (cold start); some are invite-only and only
"vip" users ever see them. The same seed gives identical frames; cost grows linearly with
``n_events`` (10k to 10M). ``world.truth`` holds the generating latent factors and the exact
click/purchase probability functions, so tests can check that models recover them.

Conventions specific to the synthetic world:

- ``user_id`` and ``item_id`` are dense int64 ids equal to the row index into ``world.truth`` arrays.
- ``events`` has two columns beyond the contract: ``impression_id`` (every click, cart, fav and
  purchase carries the id of the impression it followed; an impression carries its own id) and
  ``position`` (slot on the feed page, 0 = top).
- ``media_pools`` lists every (partner, item) pair a partner may show. Content apps have no
  restriction, so their pools list the whole catalogue; guides carry coupon and high-commission
  items; influencers their niche categories. Invite-only items sit in pools like any other; the
  feed shows them to "vip" users only.
- The log ends with the window: follow-up events that would land after it are not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.datasets.synthetic_benefits import partner_benefits
from recsys.datasets.synthetic_events import simulate_events
from recsys.datasets.synthetic_truth import OBJECTIVES, WorldParams, WorldTruth
from recsys.datasets.synthetic_world import build_static_world, default_sizes
from recsys.errors import ConfigError

__all__ = ["AffiliateWorld", "WorldParams", "WorldTruth", "OBJECTIVES", "generate_world"]


@dataclass
class AffiliateWorld:
    """The tables of a synthetic affiliate world plus its generating truth."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    social: pd.DataFrame
    media: pd.DataFrame
    media_pools: pd.DataFrame
    media_audience: pd.DataFrame
    truth: WorldTruth
    start: pd.Timestamp
    end: pd.Timestamp
    seed: int
    benefits: pd.DataFrame | None = None  # partner coupons (recsys.datasets.synthetic_benefits)

    def summary(self) -> dict:
        """Counts and rates: events per type, CTR, purchases per click, cold and invite-only items."""
        counts = self.events["event_type"].value_counts()
        n = {k: int(counts.get(k, 0)) for k in ("impression", "click", "cart", "fav", "purchase")}
        clicks = max(n["click"], 1)
        buys = self.events.loc[self.events["event_type"] == "purchase", ["item_id", "value"]]
        rate = self.items["commission_rate"].to_numpy()[buys["item_id"].to_numpy()]
        cold = self.items["available_from"] > self.start
        return {
            "events": len(self.events), "users": len(self.users), "items": len(self.items),
            "media": len(self.media), "days": int((self.end - self.start) / pd.Timedelta(days=1)),
            "events_per_type": n,
            "ctr": n["click"] / max(n["impression"], 1),
            "cart_per_click": n["cart"] / clicks, "fav_per_click": n["fav"] / clicks,
            "purchase_per_click": n["purchase"] / clicks,
            "gmv": float(buys["value"].sum()), "commission": float((buys["value"].to_numpy() * rate).sum()),
            "cold_items": int(cold.sum()), "invite_only_items": int((self.items["eligibility"] == "vip").sum()),
            "vip_users": int((self.users["segment"] == "vip").sum()),
            "social_edges": len(self.social), "users_with_events": int(self.events["user_id"].nunique()),
            "items_with_events": int(self.events["item_id"].nunique()),
        }


def generate_world(n_events: int = 200_000, *, n_users: int | None = None, n_items: int | None = None,
                   n_days: int = 14, seed: int = 0, start: str = "2026-01-01",
                   params: WorldParams | None = None, progress: bool = True) -> AffiliateWorld:
    """Generate a seeded synthetic affiliate world with about ``n_events`` events (within a few percent).

    Sizes default to scale with ``n_events`` (about 100 events per user and 200 per item), so memory
    and time grow linearly. ``params`` tunes rates and structure (see :class:`WorldParams`).
    """
    if not isinstance(n_events, (int, np.integer)) or n_events < 1_000:
        raise ConfigError(f"n_events must be an integer >= 1000, got {n_events!r}.")
    if n_days < 1:
        raise ConfigError(f"n_days must be >= 1, got {n_days!r}.")
    du, di = default_sizes(int(n_events))
    n_users, n_items = n_users or du, n_items or di
    if n_users < 10 or n_items < 10:
        raise ConfigError(f"n_users and n_items must be >= 10, got {n_users} and {n_items}.")
    try:
        start_ts = pd.Timestamp(start)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"start must be a date such as '2026-01-01', got {start!r} ({e}).") from None
    start64 = np.datetime64(start_ts.tz_localize(None) if start_ts.tzinfo else start_ts, "ns")
    params = params or WorldParams()
    static_rng, event_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    static = build_static_world(int(n_users), int(n_items), int(n_days), start64, static_rng, params)
    events = simulate_events(static, n_events=int(n_events), n_days=int(n_days),
                             start_ns=int(start64.astype(np.int64)), rng=event_rng, progress=progress)
    return AffiliateWorld(
        events=events, items=static.items, users=static.users, social=static.social, media=static.media,
        media_pools=static.media_pools, media_audience=static.media_audience, truth=static.truth,
        start=pd.Timestamp(start64), end=pd.Timestamp(start64) + pd.Timedelta(days=n_days), seed=seed,
        benefits=partner_benefits(static.media_pools, static.items, pd.Timestamp(start64), int(n_days), seed))
