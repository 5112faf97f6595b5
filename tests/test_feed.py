"""Feeds hand on: ``to_dict`` / ``to_json`` (JSON-safe, with title and price), one fallback convention
(None) in recommend, recommend_batch and the MLflow model's frame, and ``score_kind`` saying what a score is."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from tests.test_ids import _csv_recommender, _known_user
from tests.test_recommender import fitted, world

ITEM_KEYS = ["rank", "item_id", "title", "price", "price_paid", "commission_rate", "score", "pctr", "pcvr", "reason",
             "reason_code", "source"]


def _plain(value) -> bool:
    return value is None or type(value) in (int, float, str, bool)


def test_to_dict_is_plain_python_with_each_items_title_and_price():
    feed = fitted().recommend(_known_user(), k=6, media_id="guide-0")
    d = feed.to_dict()
    assert list(d) == ["user_id", "media_id", "fallback", "notes", "score_kind", "objective", "items"]
    assert d["user_id"] == _known_user() and d["media_id"] == "guide-0" and d["fallback"] is None
    assert [list(i) for i in d["items"]] == [ITEM_KEYS] * 6
    table = world().items.set_index("item_id")
    for item, row in zip(d["items"], feed.items.itertuples(), strict=True):
        assert all(_plain(v) for v in item.values()), item
        assert item["item_id"] == row.item_id and item["rank"] == row.rank and item["reason"] == row.reason
        assert item["title"] == table.loc[row.item_id, "title"] and item["price"] == table.loc[row.item_id, "price"]
        assert item["commission_rate"] == table.loc[row.item_id, "commission_rate"]
        # no partner benefits in this world's fit: the price paid is the price less the item's own coupon
        paid = max(table.loc[row.item_id, "price"] - table.loc[row.item_id, "coupon"], 0.0)
        assert math.isclose(item["price_paid"], paid, rel_tol=1e-12, abs_tol=1e-9)  # one subtraction, either side
        assert math.isclose(item["score"], row.score)  # the same float64, unwrapped from numpy
    assert json.loads(feed.to_json()) == d


def test_nan_becomes_null_and_json_is_strict():
    similar = fitted().similar_items(int(world().items["item_id"].iloc[3]), k=4)
    assert similar.items["pctr"].isna().all()  # similar items carry no pctr / pcvr
    text = similar.to_json()
    assert "NaN" not in text and json.loads(text)["items"][0]["pctr"] is None
    cold = fitted().recommend(float("nan"), k=3)  # a NaN user id: served as unknown, null in JSON
    assert json.loads(cold.to_json())["user_id"] is None and cold.to_dict()["fallback"] is not None


def test_fallback_is_none_on_the_normal_path_everywhere():
    rec, uid = fitted(), _known_user()
    assert rec.recommend(uid, k=5).fallback is None
    batch = rec.recommend_batch([uid, 10**9], k=5)
    known, new = batch[batch["user_id"] == uid], batch[batch["user_id"] == 10**9]
    assert known["fallback"].tolist() == [None] * 5  # not "" and not NaN
    assert new["fallback"].tolist() == [rec.recommend(10**9, k=5).fallback] * 5 and new["fallback"].notna().all()
    from recsys.tracking.feeds import predict_feeds

    out = predict_feeds(rec, pd.DataFrame({"user_id": [uid, 10**9], "k": [5, 5]}))
    assert out.loc[out["request"] == 0, "fallback"].tolist() == [None] * 5


def test_score_kind_with_a_ranker_is_the_objective_on_every_path():
    rec, uid = fitted(), _known_user()
    normal, cold = rec.recommend(uid, k=5, media_id="guide-0"), rec.recommend(10**9, k=5, media_id="guide-0")
    popular = rec.recommend(10**9, k=5)
    assert (normal.fallback, cold.fallback, popular.fallback) == (None, "cold_user_features", "popular")
    assert {normal.score_kind, cold.score_kind, popular.score_kind} == {"objective"}
    assert normal.objective == rec._state.objectives.get("guide-0", rec.default_objective)
    batch = rec.recommend_batch(pd.DataFrame({"user_id": [uid, 10**9], "media_id": ["guide-0", None]}), k=5)
    assert set(batch["score_kind"]) == {"objective"}


def test_score_kind_without_a_ranker_tells_two_tower_from_popularity():
    _, rec = _csv_recommender()
    uid = int(rec._state.users.ids[np.flatnonzero(rec._state.users.has_history)[0]])
    normal, popular = rec.recommend(uid, k=5), rec.recommend(10**9, k=5)
    assert (normal.fallback, popular.fallback) == (None, "popular")
    assert (normal.score_kind, popular.score_kind) == ("two_tower", "popularity")
    assert normal.objective is None and popular.to_dict()["score_kind"] == "popularity"
    # popularity scores are weighted engagement counts (each engagement weighs at least 1), two-tower scores
    # inner products of unit-scale embeddings: the scales differ, which is why score_kind says which it is
    assert (popular.items["score"] >= 1.0).all()
    batch = rec.recommend_batch([uid, 10**9], k=5)
    assert batch["score_kind"].tolist() == ["two_tower"] * 5 + ["popularity"] * 5
