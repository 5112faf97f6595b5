"""The synthetic affiliate world: contract, determinism, realistic rates, structure, and a recoverable truth."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

from recsys.datasets.synthetic import AffiliateWorld, WorldParams, WorldTruth, generate_world
from recsys.errors import ConfigError
from recsys.features.schema import (
    EVENT_TYPES,
    validate_events,
    validate_items,
    validate_social,
    validate_users,
)


@pytest.fixture(scope="module")
def world() -> AffiliateWorld:
    return generate_world(150_000, seed=3, progress=False)


@pytest.fixture(scope="module")
def events(world) -> pd.DataFrame:
    return world.events


def test_same_seed_gives_identical_frames_and_truth():
    a = generate_world(20_000, seed=7, progress=False)
    b = generate_world(20_000, seed=7, progress=False)
    for name in ("events", "items", "users", "social", "media", "media_pools", "media_audience"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.truth.user_factors, b.truth.user_factors)
    np.testing.assert_array_equal(a.truth.item_factors, b.truth.item_factors)
    c = generate_world(20_000, seed=8, progress=False)
    assert not a.events[["user_id", "item_id"]].equals(c.events[["user_id", "item_id"]])


def test_tables_meet_the_data_contracts_unchanged(world, events):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicates to drop, no sorting needed
        checked = validate_events(events)
        validate_items(world.items)
        validate_users(world.users)
        validate_social(world.social)
    assert len(checked) == len(events)
    assert checked["user_id"].equals(events["user_id"]) and checked["item_id"].equals(events["item_id"])
    assert events["user_id"].dtype == np.int64 and events["item_id"].dtype == np.int64
    assert events["timestamp"].dtype == "datetime64[ns]" and events["impression_id"].dtype == np.int64
    assert set(events["event_type"].astype(str)) == set(EVENT_TYPES)
    assert events["timestamp"].is_monotonic_increasing
    assert events["timestamp"].min() >= world.start and events["timestamp"].max() < world.end
    assert set(events["media_id"]) <= set(world.media["media_id"])
    buys = events["event_type"] == "purchase"
    assert (events.loc[buys, "value"] > 0).all() and events.loc[~buys, "value"].isna().all()
    assert set(world.media["kind"]) == {"shopping_guide", "content_app", "influencer"}
    assert set(world.media["objective"]) == {"clicks", "purchases", "gmv", "commission"}
    assert {"age_bucket", "gender", "city_tier", "segment", "signup"} <= set(world.users.columns)


def test_sizes_and_rates_are_realistic(world):
    s = world.summary()
    assert abs(s["events"] - 150_000) < 0.03 * 150_000
    assert 0.01 <= s["ctr"] <= 0.08, s
    assert 0.01 <= s["purchase_per_click"] <= 0.06, s
    assert s["purchase_per_click"] < s["cart_per_click"] < 0.5
    assert s["cold_items"] > 0 and s["invite_only_items"] > 0 and s["vip_users"] > 0
    items = world.items
    assert items["commission_rate"].between(0.01, 0.30).all()
    assert (items["price"] > 0).all() and (items["coupon"] < items["price"]).all()
    assert 0.1 < (items["coupon"] > 0).mean() < 0.5
    assert items.groupby("category")["price"].median().pipe(lambda m: m.max() / m.min()) > 10
    title_has_category = [c in t.split() for c, t in zip(items["category"], items["title"], strict=True)]
    assert all(title_has_category)


def test_events_span_the_days_with_daily_traffic(world, events):
    per_day = events["timestamp"].dt.floor("D").value_counts()
    assert len(per_day) == 14 and per_day.min() > 0.5 * per_day.mean()


def _peak_bytes(n_events: int) -> int:
    tracemalloc.start()
    try:
        generate_world(n_events, seed=0, progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_grows_linearly():
    small, large = _peak_bytes(25_000), _peak_bytes(100_000)
    assert large / small < 6.0, (small, large)  # 4x the events: ~4x the memory, far from 16x
    assert large / 100_000 < 300  # peak bytes per event, everything included (about 80 measured)


def test_invite_only_items_are_shown_to_vip_users_only(world, events):
    vip_items = set(world.items.loc[world.items["eligibility"] == "vip", "item_id"])
    vip_users = set(world.users.loc[world.users["segment"] == "vip", "user_id"])
    shown = events.loc[events["item_id"].isin(vip_items), "user_id"]
    assert len(shown) > 0 and set(shown) <= vip_users


def test_cold_items_have_no_events_before_they_appear(world, events):
    avail = world.items.set_index("item_id")["available_from"]
    assert (events["timestamp"].to_numpy() >= avail.loc[events["item_id"]].to_numpy()).all()
    cold = world.items.loc[world.items["available_from"] > world.start, "item_id"]
    assert events["item_id"].isin(cold).any()  # cold items do get shown once they arrive
    signup = world.users.set_index("user_id")["signup"]
    assert (events["timestamp"].to_numpy() >= signup.loc[events["user_id"]].to_numpy()).all()


def test_every_action_follows_its_impression_and_purchases_follow_clicks(events):
    imp = events[events["event_type"] == "impression"].set_index("impression_id")
    assert imp.index.is_unique
    act = events[events["event_type"] != "impression"]
    src = imp.loc[act["impression_id"]]
    for col in ("user_id", "item_id", "media_id"):
        assert (src[col].to_numpy() == act[col].to_numpy()).all()
    assert (act["timestamp"].to_numpy() > src["timestamp"].to_numpy()).all()
    click = events[events["event_type"] == "click"].set_index("impression_id")
    assert click.index.is_unique
    for kind in ("cart", "fav", "purchase"):
        rows = events[events["event_type"] == kind]
        assert rows["impression_id"].isin(click.index).all()
        assert (rows["timestamp"].to_numpy() > click.loc[rows["impression_id"], "timestamp"].to_numpy()).all()
    buys = events[events["event_type"] == "purchase"]
    assert buys.duplicated(["user_id", "item_id"]).mean() < 0.05  # repeat purchases are rare


def test_impressions_come_from_the_partners_pool_and_audience(world, events):
    imp = events[events["event_type"] == "impression"]
    pool = pd.MultiIndex.from_frame(world.media_pools[["media_id", "item_id"]])
    audience = pd.MultiIndex.from_frame(world.media_audience[["media_id", "user_id"]])
    assert pd.MultiIndex.from_frame(imp[["media_id", "item_id"]]).isin(pool).all()
    assert pd.MultiIndex.from_frame(imp[["media_id", "user_id"]]).isin(audience).all()
    apps = world.media.loc[world.media["kind"] == "content_app", "media_id"]
    for app in apps:  # content apps have no restriction: their pool is the whole catalogue
        assert (world.media_pools["media_id"] == app).sum() == len(world.items)
    kol = world.media.loc[world.media["kind"] == "influencer", "media_id"].iloc[0]
    kol_items = world.media_pools.loc[world.media_pools["media_id"] == kol, "item_id"]
    assert len(kol_items) < 0.5 * len(world.items)
    assert (imp["position"] >= 0).all() and imp.groupby("impression_id").size().max() == 1


def test_clicks_and_purchases_match_the_truth(world, events):
    t = world.truth
    imp = events[events["event_type"] == "impression"]
    clicked = imp["impression_id"].isin(events.loc[events["event_type"] == "click", "impression_id"]).to_numpy()
    u, i = imp["user_id"].to_numpy(), imp["item_id"].to_numpy()
    p = t.click_probability(u, i, position=imp["position"].to_numpy(), media=imp["media_id"].to_numpy())
    # clicks are Bernoulli(p): their count matches the sum of p within a few standard deviations
    assert abs(clicked.sum() - p.sum()) < 5 * np.sqrt((p * (1 - p)).sum())
    aff = t.affinity(u, i)
    low, high = aff < np.quantile(aff, 0.2), aff > np.quantile(aff, 0.8)
    assert clicked[high].mean() > 3 * clicked[low].mean()  # users click more on items they truly like
    clicks = events[events["event_type"] == "click"]
    bought = clicks["impression_id"].isin(events.loc[events["event_type"] == "purchase", "impression_id"])
    q = t.purchase_probability(clicks["user_id"].to_numpy(), clicks["item_id"].to_numpy(),
                               media=clicks["media_id"].to_numpy())
    assert abs(bought.sum() - q.sum()) < 5 * np.sqrt((q * (1 - q)).sum()) + 0.05 * q.sum()
    assert q[bought.to_numpy()].mean() > 1.5 * q[~bought.to_numpy()].mean()


def test_price_sensitive_users_buy_cheaper_items(world, events):
    t = world.truth
    buys = events[events["event_type"] == "purchase"]
    sens = t.price_sensitivity[buys["user_id"].to_numpy()]
    paid = buys["value"].to_numpy()
    hi, lo = sens > np.median(t.price_sensitivity), sens <= np.median(t.price_sensitivity)
    assert np.median(paid[hi]) < np.median(paid[lo])
    assert 0 < float(t.purchase_probability(0, 0)) < 1  # scalar ids work too


def test_friends_share_interests(world):
    interests = world.truth.user_interests
    s = world.social
    assert (s["user_id"] != s["friend_id"]).all() and not s.duplicated().any()

    def cosine(a, b):
        x, y = interests[a], interests[b]
        return ((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)).mean()

    rng = np.random.default_rng(0)
    rand = cosine(rng.integers(0, len(interests), 5000), rng.integers(0, len(interests), 5000))
    assert cosine(s["user_id"].to_numpy(), s["friend_id"].to_numpy()) > rand + 0.1


def test_truth_exposes_objectives_consistently(world):
    t: WorldTruth = world.truth
    u, i = np.arange(5), np.arange(5, 10)
    ctr = t.expected_value(u, i, "clicks", media="guide-0")
    buys = t.expected_value(u, i, "purchases", media="guide-0")
    gmv = t.expected_value(u, i, "gmv", media="guide-0")
    commission = t.expected_value(u, i, "commission", media="guide-0")
    np.testing.assert_allclose(buys, ctr * t.purchase_probability(u, i, media="guide-0"))
    np.testing.assert_allclose(commission, gmv * world.items["commission_rate"].to_numpy()[i])
    code = list(t.media_ids).index("guide-0")
    np.testing.assert_allclose(t.click_probability(u, i, media=code), t.click_probability(u, i, media="guide-0"))
    np.testing.assert_allclose(t.affinity(u[:, None], i[None, :])[np.arange(5), np.arange(5)], t.affinity(u, i),
                               rtol=1e-5)
    with pytest.raises(ConfigError, match="objective"):
        t.expected_value(u, i, "revenue")
    with pytest.raises(ConfigError, match="unknown media"):
        t.click_probability(u, i, media="nope-1")


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="n_events"):
        generate_world(10, progress=False)
    with pytest.raises(ConfigError, match="start"):
        generate_world(5_000, start="not a date", progress=False)
    with pytest.raises(ConfigError, match="cold_item_fraction"):
        WorldParams(cold_item_fraction=1.5)


def test_sizes_can_be_set_and_tiny_worlds_work():
    w = generate_world(5_000, n_users=50, n_items=40, n_days=3, seed=1, progress=False)
    assert len(w.users) == 50 and len(w.items) == 40
    assert w.events["user_id"].max() < 50 and w.events["item_id"].max() < 40
    assert w.summary()["days"] == 3


def test_generation_benchmark_writes_json_and_markdown(tmp_path):
    from recsys.bench.synthetic import run_synthetic_benchmark

    result = run_synthetic_benchmark([2_000, 4_000], repeats=1, out_dir=tmp_path)
    rows = result["rows"]
    assert [r["n_events_requested"] for r in rows] == [2_000, 4_000]
    assert all(r["seconds_median"] > 0 and r["peak_rss_mib"] > 0 for r in rows)
    assert rows[0]["size_ratio"] == 1.0 and rows[1]["size_ratio"] > 1.5
    assert (tmp_path / "results.json").exists() and "| events |" in (tmp_path / "README.md").read_text()
