"""The static part of the synthetic affiliate world: catalogue, users, friends, media partners.

Everything is drawn with numpy in a handful of vectorised passes, so its cost grows linearly with
the number of users and items. Ids are dense integers (``user_id``/``item_id`` = row index into
:class:`~recsys.datasets.synthetic_truth.WorldTruth` arrays).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.datasets.synthetic_truth import OBJECTIVES, WorldParams, WorldTruth

DAY = np.timedelta64(1, "D").astype("timedelta64[ns]")

# category -> (attribute words for titles, median price, base commission rate, gender skew (+ = female))
CATEGORIES: dict[str, tuple[tuple[str, ...], float, float, float]] = {
    "dress": (("floral", "maxi", "silk", "summer", "lace"), 150, 0.20, 1.2),
    "sneakers": (("running", "canvas", "chunky", "breathable", "retro"), 300, 0.12, -0.3),
    "lipstick": (("matte", "velvet", "nude", "longwear", "glossy"), 200, 0.25, 1.4),
    "skincare": (("hydrating", "serum", "toner", "sensitive", "spf"), 250, 0.22, 0.9),
    "phone": (("5g", "dualsim", "128gb", "flagship", "camera"), 3000, 0.03, -0.4),
    "earbuds": (("wireless", "anc", "bluetooth", "sport", "bass"), 400, 0.08, -0.3),
    "laptop": (("ultrabook", "gaming", "14inch", "ssd", "touch"), 5000, 0.02, -0.7),
    "snacks": (("spicy", "nuts", "jerky", "giftbox", "crispy"), 40, 0.12, 0.1),
    "tea": (("oolong", "jasmine", "puer", "green", "looseleaf"), 120, 0.18, -0.2),
    "diapers": (("newborn", "ultrathin", "pants", "overnight", "sizem"), 100, 0.06, 0.6),
    "toys": (("lego", "plush", "puzzle", "rc", "educational"), 150, 0.10, 0.2),
    "cookware": (("nonstick", "wok", "castiron", "steamer", "ceramic"), 200, 0.10, 0.4),
    "bedding": (("cotton", "duvet", "pillow", "mulberry", "queen"), 300, 0.12, 0.4),
    "furniture": (("sofa", "desk", "shelf", "oak", "foldable"), 1200, 0.08, 0.0),
    "fitness": (("yoga", "dumbbell", "mat", "resistance", "treadmill"), 180, 0.12, -0.2),
    "outdoor": (("tent", "hiking", "waterproof", "camping", "backpack"), 350, 0.10, -0.6),
    "pet": (("catfood", "litter", "leash", "chew", "grainfree"), 90, 0.10, 0.2),
    "watch": (("smartwatch", "quartz", "leather", "automatic", "steel"), 1500, 0.06, -0.5),
    "handbag": (("tote", "crossbody", "calfskin", "mini", "woven"), 600, 0.15, 1.1),
    "coffee": (("arabica", "beans", "drip", "capsule", "coldbrew"), 80, 0.12, -0.1),
}
GENERIC_WORDS = np.array(["", "", "", "new", "hot", "2026", "sale", "premium", "classic", "gift"], dtype=object)
SYLLABLES = ("ka", "lu", "mi", "zen", "ro", "va", "ti", "no", "sa", "qi", "bo", "re", "xi", "da", "fu",
             "mo", "li", "ya", "ne", "ha")
AGE_BUCKETS = np.array(["18-24", "25-34", "35-44", "45-54", "55+"], dtype=object)
KOL_FOLLOWS = 0.8  # expected influencers a user follows
FIRST_APP = 3  # media order: guide-0..2, app-0..1, kol-0..
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 4, 4, 5, 5, 6, 8, 9, 10, 8, 5], float)


@dataclass
class StaticWorld:
    """Tables and truth of a world before any events happen."""

    items: pd.DataFrame
    users: pd.DataFrame
    social: pd.DataFrame
    media: pd.DataFrame
    media_pools: pd.DataFrame
    media_audience: pd.DataFrame
    truth: WorldTruth
    audience_matrix: np.ndarray      # (n_users, n_media) bool
    item_available_ns: np.ndarray    # (n_items,) int64 ns
    user_signup_ns: np.ndarray       # (n_users,) int64 ns
    user_vip: np.ndarray             # (n_users,) bool
    item_vip: np.ndarray             # (n_items,) bool


def default_sizes(n_events: int) -> tuple[int, int]:
    """Users and items that scale linearly with the number of events (~100 events/user, ~200/item)."""
    return max(100, n_events // 100), max(100, n_events // 200)


def build_static_world(n_users: int, n_items: int, n_days: int, start: np.datetime64,
                       rng: np.random.Generator, params: WorldParams) -> StaticWorld:
    """Draw catalogue, users, friendships, partners, their pools and audiences, and the truth."""
    start_ns = start.astype("datetime64[ns]").astype(np.int64)
    cats = _categories(min(params.n_categories, max(1, n_items // 5)))
    centroids = rng.normal(0, 1 / np.sqrt(params.dim), (len(cats), params.dim))
    items, item_f, quality, popularity, item_vip, avail, item_cat = _items(n_items, n_days, start_ns, cats, centroids,
                                                                 rng, params)
    users, interests, sens, activity, user_vip, community, signup = _users(n_users, n_days, start_ns, cats,
                                                                           rng, params)
    user_f = interests @ centroids + rng.normal(0, 0.25 / np.sqrt(params.dim), (n_users, params.dim))
    social = _social(community, rng, params)
    media, click_bias, buy_bias, focus = _media(n_users, len(cats), rng)
    pools = _pools(media, focus, items, item_cat, rng)
    audience = _audience(media, focus, interests, sens, rng)
    truth = WorldTruth(
        user_factors=user_f.astype(np.float32), item_factors=item_f.astype(np.float32),
        user_interests=interests, item_category=item_cat.astype(np.int64), price_sensitivity=sens, user_activity=activity, item_popularity=popularity,
        item_quality=quality, price=items["price"].to_numpy(), coupon=items["coupon"].to_numpy(),
        commission_rate=items["commission_rate"].to_numpy(), media_ids=tuple(media["media_id"]),
        media_click_bias=click_bias, media_purchase_bias=buy_bias, params=params)
    mids, uids = np.nonzero(audience.T)
    return StaticWorld(
        items=items, users=users, social=social, media=media,
        media_pools=pools, media_audience=pd.DataFrame({"media_id": media["media_id"].to_numpy()[mids],
                                                        "user_id": uids.astype(np.int64)}),
        truth=truth, audience_matrix=audience, item_available_ns=avail, user_signup_ns=signup,
        user_vip=user_vip, item_vip=item_vip)


def _categories(k: int) -> list[str]:
    names = list(CATEGORIES)[:k]
    return names + [f"category{j}" for j in range(len(names), k)]


def _cat_info(name: str) -> tuple[tuple[str, ...], float, float, float]:
    return CATEGORIES.get(name, (tuple(f"{name}w{j}" for j in range(5)), 150.0, 0.10, 0.0))


def _brand_names(n: int) -> np.ndarray:
    g = np.arange(n)
    s = np.array(SYLLABLES, dtype=object)
    names = s[g % 20] + s[(g // 20) % 20]
    suffix = np.where(g >= 400, (g // 400).astype(str), "").astype(object)
    return names + suffix


def _items(n_items, n_days, start_ns, cats, centroids, rng, params):
    # every draw from rng happens in one fixed order (here and in the steps), so a seed gives one world
    k, d = centroids.shape
    info = [_cat_info(c) for c in cats]
    cat = rng.choice(k, size=n_items, p=rng.dirichlet(np.full(k, 5.0)))
    brand, brand_offset, n_brands = _item_brands(cat, k, rng)
    brand_vec = rng.normal(0, 1 / np.sqrt(d), (brand_offset[-1], d))
    item_f = centroids[cat] + 0.5 * brand_vec[brand] + rng.normal(0, 0.4 / np.sqrt(d), (n_items, d))
    price, rate, coupon = _item_prices(info, cat, brand, brand_offset[-1], rng, params)
    item_vip = rng.random(n_items) < params.vip_item_fraction
    avail = _available_from(n_items, n_days, start_ns, rng, params)
    z = rng.normal(0, 1, n_items)
    popularity = np.exp(1.0 * z)
    quality = 0.25 * z + rng.normal(0, 0.2, n_items)
    brand_names = _brand_names(brand_offset[-1])
    cat_names = np.array(cats, dtype=object)
    shop, title = _shops_and_titles(info, cat, brand, n_brands, brand_names, cat_names, rng)
    items = pd.DataFrame({
        "item_id": np.arange(n_items, dtype=np.int64), "category": cat_names[cat].astype(str),
        "brand": brand_names[brand].astype(str), "shop": shop.astype(str), "price": price,
        "commission_rate": rate, "title": title.astype(str), "coupon": coupon,
        "eligibility": np.where(item_vip, "vip", ""), "in_stock": rng.random(n_items) >= params.out_of_stock_fraction,
        "available_from": avail.astype("datetime64[ns]"),
    })
    return items, item_f, quality, popularity, item_vip, avail, cat


def _item_brands(cat, k, rng):
    """Each item's brand (global index), the first brand index of each category, and brands per category."""
    n_items = len(cat)
    per_cat = np.bincount(cat, minlength=k)
    n_brands = np.clip(np.round(per_cat / 12).astype(int), 2, 60)
    brand_offset = np.concatenate([[0], np.cumsum(n_brands)])
    # Zipf-like brand shares inside a category, drawn with one uniform per item
    u = rng.random(n_items)
    brand = np.empty(n_items, dtype=np.int64)
    for c in range(k):
        w = 1.0 / np.arange(1, n_brands[c] + 1) ** 0.8
        brand[cat == c] = brand_offset[c] + np.searchsorted(np.cumsum(w) / w.sum(), u[cat == c], side="right")
    brand = np.minimum(brand, brand_offset[cat + 1] - 1)
    return brand, brand_offset, n_brands


def _item_prices(info, cat, brand, n_all_brands, rng, params):
    """Price (category median, brand premium, noise), commission rate and coupon of each item."""
    n_items = len(cat)
    brand_premium = rng.normal(0, 0.3, n_all_brands)
    median = np.array([i[1] for i in info])[cat]
    price = np.floor(median * np.exp(brand_premium[brand] + rng.normal(0, 0.5, n_items))) + 0.99
    rate = np.clip(np.array([i[2] for i in info])[cat] * rng.lognormal(0, 0.3, n_items), 0.01, 0.30).round(4)
    coupon = np.where(rng.random(n_items) < params.coupon_fraction,
                      np.floor(price * rng.uniform(0.05, 0.3, n_items)), 0.0)
    return price, rate, coupon


def _available_from(n_items, n_days, start_ns, rng, params):
    """When each item becomes available (ns): cold items during the logged window, the rest up to a year before."""
    cold = rng.random(n_items) < params.cold_item_fraction
    window = n_days * DAY.astype(np.int64)
    return np.where(cold, start_ns + (params.cold_start_after + (1 - params.cold_start_after) *
                                      rng.random(n_items)) * window * 0.95,
                    start_ns - rng.uniform(0, 365, n_items) * DAY.astype(np.int64)).astype(np.int64)


def _shops_and_titles(info, cat, brand, n_brands, brand_names, cat_names, rng):
    """Each item's shop (the brand's official one or a category reseller) and title (brand, category, two
    category words and a generic word)."""
    n_items = len(cat)
    resellers = np.maximum(1, n_brands // 3)
    reseller = (rng.random(n_items) * resellers[cat]).astype(int)
    shop = np.where(rng.random(n_items) < 0.6, brand_names[brand] + "-official",
                    cat_names[cat] + "-mall-" + reseller.astype(str).astype(object))
    attrs = np.array([i[0] for i in info], dtype=object)
    a = rng.integers(0, 5, n_items)
    b = (a + rng.integers(1, 5, n_items)) % 5
    generic = GENERIC_WORDS[rng.integers(0, len(GENERIC_WORDS), n_items)]
    title = pd.Series(brand_names[brand] + " " + cat_names[cat] + " " + attrs[cat, a] + " " + attrs[cat, b]
                      + " " + generic).str.strip()
    return shop, title


def _users(n_users, n_days, start_ns, cats, rng, params):
    k = len(cats)
    skew = np.array([_cat_info(c)[3] for c in cats])
    age_skew = rng.normal(0, 0.5, k)
    n_comm = max(1, n_users // params.community_size)
    community = rng.integers(0, n_comm, n_users)
    comm_interest = rng.dirichlet(np.full(k, 0.3), n_comm)
    female = rng.random(n_users) < 0.55
    age = rng.choice(len(AGE_BUCKETS), size=n_users, p=[0.18, 0.32, 0.25, 0.15, 0.10])
    tier = rng.choice(4, size=n_users, p=[0.2, 0.3, 0.3, 0.2]) + 1
    vip = rng.random(n_users) < params.vip_user_fraction
    tilt = np.exp(0.6 * np.where(female, 1.0, -1.0)[:, None] * skew[None, :]
                  + 0.3 * ((age - 2) / 2.0)[:, None] * age_skew[None, :])
    alpha = 3.0 * comm_interest[community] * tilt + 0.03
    g = rng.gamma(alpha)
    interests = g / g.sum(axis=1, keepdims=True)
    sens = rng.lognormal(np.log(0.5), 0.5, n_users) * np.array([0.8, 1.0, 1.2, 1.4])[tier - 1] * np.where(vip, 0.6, 1.0)
    activity = rng.lognormal(0, 0.8, n_users) * np.where(vip, 1.5, 1.0)
    day = DAY.astype(np.int64)
    new = rng.random(n_users) < params.new_user_fraction
    signup = np.where(new, start_ns + rng.uniform(0, 0.8 * n_days, n_users) * day,
                      start_ns - rng.uniform(1, 730, n_users) * day).astype(np.int64)
    users = pd.DataFrame({
        "user_id": np.arange(n_users, dtype=np.int64), "age_bucket": AGE_BUCKETS[age].astype(str),
        "gender": np.where(female, "F", "M"), "city_tier": tier.astype(np.int64),
        "segment": np.where(vip, "vip", "regular"), "signup": signup.astype("datetime64[ns]"),
    })
    return users, interests, sens, activity, vip, community, signup


def _social(community, rng, params) -> pd.DataFrame:
    n = len(community)
    k = rng.poisson(params.friends_per_user / 2, n)
    src = np.repeat(np.arange(n), k)
    order = np.argsort(community, kind="stable")
    counts = np.bincount(community, minlength=community.max() + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = community[src]
    same = order[starts[c] + (rng.random(len(src)) * counts[c]).astype(np.int64)]
    dst = np.where(rng.random(len(src)) < 0.8, same, rng.integers(0, n, len(src)))
    a = np.concatenate([src, dst])
    b = np.concatenate([dst, src])
    keep = a != b
    pairs = np.unique(a[keep] * n + b[keep])
    return pd.DataFrame({"user_id": (pairs // n).astype(np.int64), "friend_id": (pairs % n).astype(np.int64)})


def _media(n_users, k, rng):
    n_kol = int(np.clip(n_users // 400, 3, 40))
    kinds = ["shopping_guide"] * 3 + ["content_app"] * 2 + ["influencer"] * n_kol
    ids = [f"guide-{j}" for j in range(3)] + [f"app-{j}" for j in range(2)] + [f"kol-{j}" for j in range(n_kol)]
    hints = ["commission", "purchases", "gmv", "clicks", "commission"]
    hints += [OBJECTIVES[(j + 2) % 4] for j in range(n_kol)]
    base_click = {"shopping_guide": 0.2, "content_app": -0.2, "influencer": 0.4}
    base_buy = {"shopping_guide": 0.4, "content_app": -0.3, "influencer": 0.2}
    click_bias = np.array([base_click[x] for x in kinds]) + rng.normal(0, 0.1, len(kinds))
    buy_bias = np.array([base_buy[x] for x in kinds]) + rng.normal(0, 0.1, len(kinds))
    focus = [None] * 5 + [rng.choice(k, size=min(k, int(rng.integers(1, 4))), replace=False) for _ in range(n_kol)]
    media = pd.DataFrame({"media_id": ids, "kind": kinds, "objective": hints}).astype({"media_id": str})
    return media, click_bias, buy_bias, focus


def _pools(media, focus, items, cat, rng) -> pd.DataFrame:
    """Guides: coupon items plus high-commission ones; apps: the whole catalogue; influencers: their niches."""
    n = len(items)
    coupon = items["coupon"].to_numpy() > 0
    rate = items["commission_rate"].to_numpy()
    frames = []
    for m, (mid, kind) in enumerate(zip(media["media_id"], media["kind"], strict=True)):
        u = rng.random(n)
        if kind == "shopping_guide":
            keep = coupon | (u < np.clip(0.1 + 1.5 * rate, 0, 0.7))
        elif kind == "content_app":
            keep = np.ones(n, bool)
        else:
            keep = (np.isin(cat, focus[m]) & (u < 0.85)) | (u < 0.01)
        idx = np.nonzero(keep)[0]
        frames.append(pd.DataFrame({"media_id": mid, "item_id": idx.astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


def _audience(media, focus, interests, sens, rng) -> np.ndarray:
    """Which users visit which partner: apps broadly, guides the price-sensitive, influencers their fans."""
    n = len(interests)
    n_kol = int((media["kind"] == "influencer").sum())
    prob = np.empty((n, len(media)))
    rel_sens = sens / sens.mean()
    for m, kind in enumerate(media["kind"]):
        if kind == "shopping_guide":
            prob[:, m] = np.clip(0.08 + 0.12 * rel_sens, 0, 0.6)
        elif kind == "content_app":
            prob[:, m] = 0.55 if m == FIRST_APP else 0.3
        else:
            # ~KOL_FOLLOWS influencers per user whatever their number, so rates do not drift with size
            prob[:, m] = np.clip(KOL_FOLLOWS * len(interests[0]) / (n_kol * len(focus[m]))
                                 * interests[:, focus[m]].sum(axis=1), 0.001, 0.6)
    member = rng.random(prob.shape) < prob
    member[~member.any(axis=1), FIRST_APP] = True  # everyone reaches the feed through at least app-0
    return member
