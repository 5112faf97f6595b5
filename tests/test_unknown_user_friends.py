"""Unknown users have no one else's history: no shared user code, no friends' signal unless the request lists
friends (``context={"friends": [...]}``), which then counts exactly like the social graph would."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataValidationError
from recsys.features.ranking_features import RankingFeatureBuilder
from tests.test_cvr_ranking_features import ITEMS, _at, _ev
from tests.test_recommender import fitted, world

UNKNOWN = (99_999_999, 88_888_888)
USER_KEYED = ("friends_clicks", "friends_purchases", "user_item_log_clicks", "user_item_log_purchases",
              "brand_stage", "user_brand_log_seen")


def _graph_friends(user_id) -> list:
    s = world().social
    return sorted(set(s.loc[s["user_id"] == user_id, "friend_id"]) | set(s.loc[s["friend_id"] == user_id, "user_id"]))


@functools.cache
def _user_with_friends_reason():
    """The user (of the first 100) whose guide-0 feed shows the most "popular with your friends" reasons."""
    feeds = fitted().recommend_batch(sorted(set(world().events["user_id"]))[:100], k=20, media_id="guide-0")
    return feeds.loc[feeds["reason_code"] == "friends", "user_id"].value_counts().index[0]


def _catalogue_rows(user_ids) -> pd.DataFrame:
    state = fitted()._state
    ids = state.catalogue.ids
    return pd.DataFrame({"user_id": np.repeat(np.asarray(user_ids, dtype=object), len(ids)),
                         "item_id": np.tile(ids, len(user_ids)), "timestamp": state.as_of, "media_id": "guide-0"})


def _matrix(user_ids, friends=None) -> pd.DataFrame:
    """The serving feature matrix (array path) of every catalogue item for each user."""
    state = fitted()._state
    n, cols = len(state.catalogue), state.ranking_columns()
    req = np.repeat(np.arange(len(user_ids)), n)
    x = state.candidate_features().matrix(np.asarray(user_ids, dtype=object), np.asarray(["guide-0"] * len(user_ids),
                                          dtype=object), req, np.tile(np.arange(n), len(user_ids)),
                                          np.zeros(len(req)), np.ones(len(req)), cols, friends)
    return pd.DataFrame(x, columns=cols)


def test_social_graph_users_without_events_do_not_lend_friends_to_unknown_users():
    social = pd.DataFrame({"user_id": [5], "friend_id": [6]})  # user 5 has no events of its own
    ev = _ev([(6, 10, _at(0), "click", "m"), (6, 10, _at(1), "purchase", "m"), (1, 11, _at(0), "click", "m")])
    b = RankingFeatureBuilder(windows=(None,), friend_window="7D").fit(ev, ITEMS, social)
    rows = pd.DataFrame({"user_id": [5, 99, 98], "item_id": 10, "timestamp": _at(3), "media_id": "m"})
    f = b.transform(rows)
    assert np.expm1(f["friends_clicks"]).round().tolist() == [1, 0, 0]  # 5's friend clicked; 99, 98 know no one
    assert np.expm1(f["friends_purchases"]).round().tolist() == [1, 0, 0]
    listed = b.transform(rows, friends=[None, [6, 6, 12345], []])  # a listed friend counts once; strangers add 0
    assert np.expm1(listed["friends_clicks"]).round().tolist() == [1, 1, 0]


def test_two_unknown_users_get_no_user_keyed_features_and_no_friends_reason():
    state = fitted()._state
    frame = state.builder.transform(_catalogue_rows(UNKNOWN))
    matrix = _matrix(UNKNOWN)
    for col in USER_KEYED:
        assert (frame[col] == 0).all(), col  # exactly zero: no event is stored under an unknown user's code
        assert (matrix[col] == 0).all(), col
    for user in UNKNOWN:
        for media in ("guide-0", "kol-0", None):
            feed = fitted().recommend(user, k=20, media_id=media)
            assert "friends" not in set(feed.items["reason_code"]), (user, media)


def test_known_user_with_friends_keeps_their_signal():
    user = _user_with_friends_reason()
    assert _graph_friends(user)
    feed = fitted().recommend(user, k=20, media_id="guide-0")
    assert "popular with your friends" in set(feed.items["reason"])
    assert (fitted()._state.builder.transform(_catalogue_rows([user]))["friends_clicks"] > 0).any()


def test_an_unknown_user_whose_request_lists_friends_gets_their_signal():
    user = _user_with_friends_reason()
    friends = _graph_friends(user)
    state = fitted()._state
    known = state.builder.transform(_catalogue_rows([user]))
    rows = _catalogue_rows([UNKNOWN[0]])
    listed = state.builder.transform(rows, friends=[friends] * len(rows))
    listed_matrix = _matrix([UNKNOWN[0]], friends=[friends])
    assert (known["friends_clicks"] > 0).any()
    for col in ("friends_clicks", "friends_purchases"):
        # graph edges vs the listed friends' own events are two computations of the same counts (float32 logs)
        np.testing.assert_allclose(listed[col].to_numpy(), known[col].to_numpy(), atol=1e-6)
        np.testing.assert_allclose(listed_matrix[col].to_numpy(), known[col].to_numpy(), atol=1e-6)
    feed = fitted().recommend(UNKNOWN[0], k=20, media_id="guide-0", context={"friends": friends})
    assert "friends" in set(feed.items["reason_code"])
    batch = fitted().recommend_batch(pd.DataFrame({"user_id": [UNKNOWN[0]], "friends": [friends]}), k=20,
                                     media_id="guide-0")
    assert batch["item_id"].tolist() == feed.item_ids  # a friends column per row works as the context does
    as_text = fitted().recommend(UNKNOWN[0], k=20, media_id="guide-0", context={"friends": [str(f) for f in friends]})
    assert as_text.item_ids == feed.item_ids  # "59" is user 59 on a model with integer ids (recsys.ids)


def test_friends_in_context_must_be_a_list_of_ids():
    with pytest.raises(DataValidationError, match="friends"):
        fitted().recommend(UNKNOWN[0], k=5, context={"friends": "42"})
    with pytest.raises(DataValidationError, match="friends"):
        fitted().recommend(UNKNOWN[0], k=5, context={"friends": [[59]]})
