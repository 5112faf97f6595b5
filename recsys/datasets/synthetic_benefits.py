"""Partner coupons for the synthetic affiliate world (the benefits table of :mod:`recsys.features.benefits`).

Each partner with a pool hands out coupons on a few of its items: 5-20% off, half of them with a minimum
spend of the list price, each valid for 2-10 days somewhere in the world's time span (some expire before its
end, a few start after it). The coupons are drawn from their own random stream, so the rest of the world is the
same with or without them; the world's buyers do not react to them (its generating truth ignores coupons), so
they move GMV and commission objectives and the price after benefit, not the simulated purchases.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["partner_benefits"]


def partner_benefits(media_pools: pd.DataFrame, items: pd.DataFrame, start: pd.Timestamp, n_days: int,
                     seed: int, *, share: float = 0.02, most: int = 200) -> pd.DataFrame:
    """A benefits table: per partner, ``share`` of its pool (at most ``most`` items) with a coupon."""
    rng = np.random.default_rng([int(seed), 0xB3E])
    price = items.set_index("item_id")["price"]
    frames = []
    for media, part in media_pools.groupby("media_id", sort=True):
        pool = part["item_id"].to_numpy()
        n = min(most, max(1, int(round(share * len(pool)))))
        chosen = rng.choice(pool, size=n, replace=False)
        p = price.reindex(chosen).to_numpy(np.float64)
        begin = start + pd.to_timedelta(rng.uniform(-2, n_days, n), unit="D")
        frames.append(pd.DataFrame({
            "media_id": media, "item_id": chosen, "kind": "coupon",
            "amount": np.maximum(np.round(p * rng.uniform(0.05, 0.2, n), 2), 0.01),
            "min_spend": np.where(rng.random(n) < 0.5, p, 0.0),
            "valid_from": begin.floor("h"),
            "valid_to": (begin + pd.to_timedelta(rng.uniform(2, 10, n), unit="D")).floor("h")}))
    cols = ["media_id", "item_id", "kind", "amount", "min_spend", "valid_from", "valid_to"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
