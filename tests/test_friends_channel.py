"""The friends recall channel inside ``Recommender.recommend``: candidates are what the user's friends engaged with
on the same partner, checked against the raw tables; listed friends replace the graph's; rules hold; batch equals
single. The components are the shared Recommender's of tests/test_recommender.py, served with 10 two-tower
candidates so the channel's items reach the feeds."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from recsys.feed.rules import RequestScope, feed_violations
from tests.test_item_to_item import users_with_history
from tests.test_recommender import fitted, world


@functools.cache
def friends_rec():
    from recsys.recommender import Recommender

    s, w = fitted()._state, world()
    return Recommender.from_components(
        pipeline=s.pipeline, model=s.model, items=w.items, events=w.events, ranker=s.ranker,
        feature_builder=s.builder, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools,
        item_embeddings=s.item_emb, n_candidates=10, max_per_category=2, no_partner="catalogue", friends=15)


def friends_of(user) -> set:
    soc = world().social
    return set(soc.loc[soc["user_id"] == user, "friend_id"]) | set(soc.loc[soc["friend_id"] == user, "user_id"])


def engaged(users: set, media: str) -> set:
    """Items ``users`` engaged with positively on ``media``, from the raw events."""
    ev = world().events
    positive = fitted()._state.pipeline.positive_events
    m = ev["user_id"].isin(users) & (ev["media_id"] == media) & ev["event_type"].astype(str).isin(list(positive))
    return set(ev.loc[m, "item_id"])


def test_friends_rows_are_what_friends_engaged_with_on_the_partner_and_rules_hold():
    rec = friends_rec()
    s = rec._state
    n_rows = 0
    for user in users_with_history():
        for media in ("app-0", "guide-0"):
            feed = rec.recommend(user, k=12, media_id=media).items
            mine = feed[feed["source"] == "friends"]
            n_rows += len(mine)
            assert set(mine["item_id"]) <= engaged(friends_of(user), media)
            row = int(s.users.rows([user])[0])
            scope = RequestScope(pool=s.pools.get(media), excluded=np.unique(s.users.bought(row)),
                                 segments=frozenset([s.users.segments[row]]) if s.users.segments[row] else frozenset())
            assert feed_violations(s.catalogue, scope, s.config.rules, s.catalogue.positions(feed["item_id"]), 12) == []
            assert set(mine["reason_code"]) <= {"friends", "trending", "viewed"}
    assert n_rows > 20
    assert rec.info["channels"] == ["two_tower", "friends", "popular"]


def test_listed_friends_replace_the_graphs_and_reach_a_new_user():
    rec = friends_rec()
    ev = world().events
    buyer = ev.loc[(ev["media_id"] == "app-0") & (ev["event_type"].astype(str) == "click"), "user_id"].iloc[0]
    feed = rec.recommend("someone-new", k=12, media_id="app-0", context={"friends": [buyer]}).items
    mine = feed[feed["source"] == "friends"]
    assert len(mine) and set(mine["item_id"]) <= engaged({buyer}, "app-0")
    assert (mine["reason_code"] == "friends").any()
    alone = rec.recommend("someone-new", k=12, media_id="app-0").items
    assert not (alone["source"] == "friends").any()


def test_batch_equals_single_with_the_friends_channel():
    rec = friends_rec()
    users = users_with_history(20)
    batch = rec.recommend_batch(pd.DataFrame({"user_id": users, "media_id": "app-0"}), k=12)
    single = pd.concat([rec.recommend(u, k=12, media_id="app-0").items for u in users], ignore_index=True)
    cols = ["item_id", "score", "source", "reason"]
    pd.testing.assert_frame_equal(batch[cols].reset_index(drop=True), single[cols])
    assert (batch["source"] == "friends").any()


def test_the_setting_is_checked_and_kept_in_the_bundle(tmp_path):
    import pytest

    import recsys
    from recsys.errors import ConfigError
    from recsys.feed.state import ServingConfig
    from recsys.fit.parsing import parse
    from recsys.fit.settings import RecommenderConfig

    with pytest.raises(ConfigError, match="friends"):
        ServingConfig(friends=-2)
    assert parse(RecommenderConfig, {"friends": 30}).friends == 30
    rec = friends_rec()
    loaded = recsys.load(rec.save(tmp_path / "bundle"))
    assert loaded.friends == 15 and loaded.info["channels"] == ["two_tower", "friends", "popular"]
    users = users_with_history(10)
    a = rec.recommend_batch(users, k=12, media_id="guide-0")
    b = loaded.recommend_batch(users, k=12, media_id="guide-0")
    pd.testing.assert_frame_equal(a[["item_id", "source", "reason"]], b[["item_id", "source", "reason"]])


def test_without_a_partner_the_channel_reads_the_friends_histories():
    rec = friends_rec()
    ev = world().events
    positive = list(fitted()._state.pipeline.positive_events)
    n_rows = 0
    for user in users_with_history():
        mine = rec.recommend(user, k=12, media_id=None).items
        mine = mine[mine["source"] == "friends"]
        n_rows += len(mine)
        theirs = ev.loc[ev["user_id"].isin(friends_of(user)) & ev["event_type"].astype(str).isin(positive), "item_id"]
        assert set(mine["item_id"]) <= set(theirs)
    assert n_rows > 0
