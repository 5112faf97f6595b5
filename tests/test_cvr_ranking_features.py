"""The ranker's feature frame: friends' activity, brand lifecycle stage, labels per impression, leakage check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataValidationError, LeakageError
from recsys.features.ranking_features import RankingFeatureBuilder, check_feature_leakage, impression_labels

T0 = pd.Timestamp("2024-03-01")
ITEMS = pd.DataFrame({"item_id": [10, 11, 12], "category": ["shoes", "shoes", "tea"], "brand": ["nike", "nike", "lipton"],
                      "shop": ["s1", "s1", "s2"], "price": [100.0, 80.0, 5.0], "commission_rate": [0.1, 0.1, 0.2],
                      "coupon": [10.0, 0.0, 0.0]})


def _ev(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type", "media_id"])


def _at(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def test_friends_recent_clicks_and_purchases_of_the_item():
    social = pd.DataFrame({"user_id": [1, 1], "friend_id": [2, 3]})  # 3 -> 1 counts too (edges are mutual)
    ev = _ev([(2, 10, _at(0), "click", "m"), (3, 10, _at(1), "click", "m"), (3, 10, _at(2), "purchase", "m"),
              (4, 10, _at(1), "click", "m"),            # not a friend
              (2, 10, _at(-200), "click", "m")])        # a friend, but outside the 7-day window
    b = RankingFeatureBuilder(windows=(None,), friend_window="7D").fit(ev.sort_values("timestamp"), ITEMS, social)
    rows = pd.DataFrame({"user_id": [1, 1, 1, 3], "item_id": [10, 10, 11, 1 + 9],
                         "timestamp": [_at(1.5), _at(3), _at(3), _at(3)], "media_id": "m"})
    f = b.transform(rows)
    assert np.expm1(f["friends_clicks"]).round().tolist() == [2, 2, 0, 0]
    assert np.expm1(f["friends_purchases"]).round().tolist() == [0, 1, 0, 0]


def test_lifecycle_stage_for_the_items_brand_follows_awareness_interest_purchase_loyalty():
    ev = _ev([(1, 10, _at(0), "impression", "m"), (1, 11, _at(1), "fav", "m"), (1, 10, _at(2), "purchase", "m"),
              (1, 11, _at(3), "purchase", "m"), (1, 12, _at(0), "impression", "m")])
    b = RankingFeatureBuilder(windows=(None,)).fit(ev.sort_values("timestamp"), ITEMS)
    times = [-1, 0.5, 1.5, 2.5, 3.5]
    rows = pd.DataFrame({"user_id": 1, "item_id": 11, "timestamp": [_at(h) for h in times], "media_id": "m"})
    f = b.transform(rows)
    assert f["brand_stage"].tolist() == [0, 1, 2, 3, 4]  # none, awareness, interest, purchase, loyalty
    assert np.expm1(f["user_item_log_purchases"]).round().tolist() == [0, 0, 0, 0, 1]  # own history of item 11
    other = pd.DataFrame({"user_id": [1, 2], "item_id": [12, 11], "timestamp": [_at(5), _at(5)], "media_id": "m"})
    assert b.transform(other)["brand_stage"].tolist() == [1, 0]  # tea brand only seen; an unknown user has none


def test_frame_has_price_commission_coupon_two_tower_and_ids():
    ev = _ev([(1, 10, _at(0), "impression", "m")])
    rows = pd.DataFrame({"user_id": [1], "item_id": [10], "timestamp": [_at(1)], "media_id": ["m"],
                         "two_tower_score": [0.7], "two_tower_rank": [3]})
    f = RankingFeatureBuilder(windows=(None,)).fit(ev, ITEMS).transform(rows).iloc[0]
    assert f["price"] == 100 and f["commission_rate"] == pytest.approx(0.1) and f["coupon"] == 10
    assert f["log_commission_value"] == pytest.approx(np.log1p(10.0))
    assert f["two_tower_score"] == pytest.approx(0.7) and f["two_tower_rank"] == 3
    assert f["brand"] == "nike" and f["item_id"] == 10 and "item_all_ctr" in f.index
    lean = RankingFeatureBuilder(windows=(None,), include_cvr=False, include_ids=False).fit(ev, ITEMS).transform(rows)
    assert not [c for c in lean.columns if c.endswith(("_ctr", "_cvr"))] and "item_id" not in lean.columns


def test_impression_labels_follow_impression_ids():
    ev = pd.DataFrame({"user_id": 1, "item_id": [10, 11, 10, 10, 11],
                       "timestamp": [_at(0), _at(0.1), _at(0.2), _at(0.3), _at(0.4)],
                       "event_type": ["impression", "impression", "click", "purchase", "purchase"],
                       "impression_id": [100, 101, 100, 100, 101]})
    rows = impression_labels(ev)
    assert rows["impression_id"].tolist() == [100, 101]
    assert rows["click"].tolist() == [1, 0] and rows["purchase"].tolist() == [1, 0]  # no purchase without a click
    with pytest.raises(DataValidationError, match="impression_id"):
        impression_labels(ev.drop(columns="impression_id"))


def test_leakage_check_passes_honest_features_and_catches_labels_in_disguise():
    rng = np.random.default_rng(0)
    n = 5000
    click = (rng.random(n) < 0.1).astype(int)
    purchase = click * (rng.random(n) < 0.3)
    labels = {"click": click, "purchase": purchase}
    honest = pd.DataFrame({"score": click * 0.5 + rng.normal(size=n), "media_id": pd.Categorical(rng.integers(0, 4, n))})
    check_feature_leakage(honest, labels)
    with pytest.raises(LeakageError, match="label"):
        check_feature_leakage(honest.assign(is_clicked=click), labels)
    with pytest.raises(LeakageError, match="outcome"):
        check_feature_leakage(honest.assign(outcome=pd.Categorical(np.where(click, "yes", "no"))), labels)
    with pytest.raises(LeakageError, match="paid.*purchase"):
        check_feature_leakage(honest.assign(paid=purchase * rng.uniform(5, 50, n)), labels)
    with pytest.raises(LeakageError, match="timestamp"):
        check_feature_leakage(honest.assign(event_time=pd.Timestamp("2024-01-01")), labels)
