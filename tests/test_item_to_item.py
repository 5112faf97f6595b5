"""The item-to-item recall channel inside ``Recommender.recommend``: the neighbour table against a dense
reference, the reach of a request's seeds, and feeds that merge the channel's candidates with the two-tower's
(rules hold, batch equals single, a reloaded bundle serves the same, the reason names the item that brought a row).

The Recommender is the shared one of tests/test_recommender.py, recomposed with ``item_to_item`` and only 10
two-tower candidates, so the channel's items reach the feeds of a small world.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.feed.item_table import SEED_ITEMS, ItemTable, best
from recsys.feed.partners import partner_items
from recsys.feed.rules import RequestScope, feed_violations, in_sorted
from recsys.feed.state import ServingConfig
from tests.test_recommender import fitted, world

PARTNERS = ["app-0", "guide-0", "kol-0", None]


def dense_cosine(x: np.ndarray) -> np.ndarray:
    """Cosine between the binary columns of ``x`` (self and no overlap: 0), in float64, computed densely."""
    b = (x != 0).astype(np.float64)
    co = b.T @ b
    deg = np.diag(co).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(np.outer(deg, deg) > 0, co / np.sqrt(np.outer(deg, deg)), 0.0)
    np.fill_diagonal(cos, 0.0)
    return cos


@pytest.mark.parametrize("block_entries", [50, 20_000_000])
def test_the_table_is_the_dense_cosine_top_m(block_entries):
    rng = np.random.default_rng(3)
    x = (rng.random((120, 40)) < 0.12) * rng.integers(1, 4, (120, 40))  # counts: any nonzero counts once
    x[:, 7] = 0  # an item nobody holds has an empty row
    table = ItemTable.build(sp.csr_matrix(x), 6, block_entries=block_entries)  # 50 entries: many blocks
    cos = dense_cosine(x)
    assert table.n_items == 40
    assert table.indptr[8] == table.indptr[7]
    for i in range(40):
        lo, hi = table.indptr[i], table.indptr[i + 1]
        ids, w = table.indices[lo:hi], table.weights[lo:hi]
        want = np.sort(cos[i][cos[i] > 0])[::-1][:6]
        # float32 weights against float64 cosines: equal to float32 rounding. Ids are checked through their
        # cosines, so two neighbours within rounding of each other may come in either order on another CPU
        np.testing.assert_allclose(w, want, rtol=1e-6)
        np.testing.assert_allclose(cos[i, ids], w, rtol=1e-6)
        assert len(set(ids.tolist())) == len(ids) and i not in ids.tolist()
        assert np.all(np.diff(w) <= 0)  # best first
        ties = np.flatnonzero(np.diff(w) == 0)
        assert np.all(ids[ties] < ids[ties + 1])  # exact ties in the table: the lower position first


def test_reach_sums_the_seeds_lists_and_names_the_heaviest_seed():
    table = ItemTable(indptr=np.array([0, 2, 4, 4, 5]), indices=np.array([1, 3, 0, 3, 1]),
                      weights=np.array([0.5, 0.2, 0.5, 0.4, 0.9], np.float32))
    items, sums, anchor = table.reach(np.array([0, 1, 3, 9]))  # 9 is beyond the table: ignored
    assert items.tolist() == [0, 1, 3]
    np.testing.assert_allclose(sums, [0.5, 0.5 + 0.9, 0.2 + 0.4], rtol=1e-6)
    assert anchor.tolist() == [1, 3, 1]  # item 1: seed 3 lends 0.9 > 0.5; item 3: seed 1 lends 0.4 > 0.2
    empty = table.reach(np.array([2], np.int64))
    assert [len(a) for a in empty] == [0, 0, 0]


def test_best_is_the_full_sort_cut_at_n_even_through_ties():
    rng = np.random.default_rng(7)
    for _ in range(50):
        m = int(rng.integers(1, 60))
        items = rng.permutation(200)[:m]
        scores = rng.integers(0, 6, m) / 4.0  # few distinct values: ties at the cut are common
        n = int(rng.integers(1, 70))
        want = np.lexsort((items, -scores))[:n]
        assert best(items, scores, n).tolist() == want.tolist()


def test_item_to_item_must_be_a_non_negative_int():
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ConfigError, match="item_to_item"):
            ServingConfig(item_to_item=bad)


@functools.cache
def channel_rec(item_to_item: int = 20):
    """The shared Recommender's components, served with 10 two-tower candidates and the item-to-item channel."""
    from recsys.recommender import Recommender

    s, w = fitted()._state, world()
    return Recommender.from_components(
        pipeline=s.pipeline, model=s.model, items=w.items, events=w.events, ranker=s.ranker,
        feature_builder=s.builder, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools,
        item_embeddings=s.item_emb, n_candidates=10, max_per_category=2, no_partner="catalogue",
        item_to_item=item_to_item)


def users_with_history(n: int = 40) -> list:
    ev = world().events
    return ev.loc[ev["event_type"].astype(str) == "click", "user_id"].drop_duplicates().head(n).tolist()


def seeds_of(rec, user_id, media_id) -> np.ndarray:
    """The request's seed items, rebuilt from the user's history and the partner's citable items."""
    s = rec._state
    row = int(s.users.rows([user_id])[0])
    seeds = s.vocab_to_pos[s.users.history_items(row)]
    seeds = seeds[seeds >= 0]
    allowed = partner_items(s, row, media_id)
    if allowed is not None:
        seeds = seeds[in_sorted(seeds, allowed)]
    return np.unique(seeds[-SEED_ITEMS:])


def test_channel_rows_are_reached_by_the_users_items_and_rules_hold():
    rec = channel_rec()
    s = rec._state
    cat = s.catalogue
    two_tower_only = channel_rec(0)
    assert two_tower_only._state.item_table is None
    n_channel_rows = 0
    for user in users_with_history():
        for media in PARTNERS:
            feed = rec.recommend(user, k=12, media_id=media).items
            mine = feed[feed["source"] == "item_to_item"]
            n_channel_rows += len(mine)
            if len(mine):
                reached = s.item_table.reach(seeds_of(rec, user, media))[0]
                assert set(cat.positions(mine["item_id"].to_numpy()).tolist()) <= set(reached.tolist())
                seed_titles = {cat.title[p] or str(cat.ids[p]) for p in seeds_of(rec, user, media)}
                for code, reason in zip(mine["reason_code"], mine["reason"], strict=True):
                    if code == "viewed":  # the named item is one of the seeds that brought the row
                        assert reason.removeprefix("because you viewed ") in seed_titles
            # never a row the two-tower's own 10 already hold twice, and every rule holds
            assert not feed["item_id"].duplicated().any()
            row = int(s.users.rows([user])[0])
            scope = RequestScope(pool=s.pools.get(media) if media else None,
                                 segments=frozenset([s.users.segments[row]]) if s.users.segments[row] else frozenset(),
                                 excluded=np.unique(s.users.bought(row)))
            assert feed_violations(cat, scope, s.config.rules, cat.positions(feed["item_id"].to_numpy()), 12) == []
    assert n_channel_rows > 50  # the channel does reach the feeds (10 two-tower candidates cannot fill them)


def test_channel_rows_name_their_viewed_item_unless_stronger_evidence_drove_the_score():
    rec = channel_rec()
    feeds = pd.concat([rec.recommend(u, k=12, media_id="app-0").items for u in users_with_history()])
    mine = feeds[feeds["source"] == "item_to_item"]
    # "viewed" by default; the ranker's evidence (friends, trending) when removing it costs more score
    assert set(mine["reason_code"]) <= {"viewed", "friends", "trending"}
    assert (mine["reason_code"] == "viewed").sum() >= 20
    assert (feeds.loc[feeds["source"] == "retrieval", "reason_code"] != "popular").all()


def test_batch_equals_single_and_a_reloaded_bundle_serves_the_same(tmp_path):
    import recsys

    rec = channel_rec()
    users = users_with_history(25)
    requests = pd.DataFrame({"user_id": users, "media_id": "app-0"})
    batch = rec.recommend_batch(requests, k=12)
    single = pd.concat([rec.recommend(u, k=12, media_id="app-0").items for u in users], ignore_index=True)
    cols = ["item_id", "score", "source", "reason"]
    # the same code path on a batch of one and of many: the rows are identical
    pd.testing.assert_frame_equal(batch[cols].reset_index(drop=True), single[cols])
    assert (batch["source"] == "item_to_item").any()
    loaded = recsys.load(rec.save(tmp_path / "bundle"))
    assert loaded.item_to_item == 20 and loaded._state.config.item_to_item == 20
    # integer positions from the same deterministic build of the same log on this machine: exactly equal
    np.testing.assert_array_equal(loaded._state.item_table.indices, rec._state.item_table.indices)
    again = loaded.recommend_batch(requests, k=12)
    pd.testing.assert_frame_equal(again[cols].reset_index(drop=True), batch[cols].reset_index(drop=True))


def test_a_user_without_history_gets_no_channel_rows():
    feed = channel_rec().recommend("someone-new", k=12, media_id="app-0").items
    assert len(feed) == 12 and not (feed["source"] == "item_to_item").any()


def test_info_names_the_channels():
    info = channel_rec().info
    assert info["channels"] == ["two_tower", "item_to_item", "popular"] and info["item_table_entries"] > 0
    assert info["config"]["item_to_item"] == 20
    off = channel_rec(0).info
    assert off["channels"] == ["two_tower", "popular"] and off["item_table_entries"] is None


def test_a_train_config_sets_the_channel_and_refuses_a_negative_count():
    from recsys.fit.parsing import parse
    from recsys.fit.settings import RecommenderConfig

    assert parse(RecommenderConfig, {"item_to_item": 40}).item_to_item == 40
    assert parse(RecommenderConfig, {}).item_to_item == 0
    with pytest.raises(ConfigError, match="item_to_item"):
        parse(RecommenderConfig, {"item_to_item": -3}, path="recommender")


def test_catalogue_updates_keep_the_channel_and_removed_items_leave_it():
    from recsys.recommender import Recommender

    base = channel_rec()
    s, w = base._state, world()
    rec = Recommender.from_components(
        pipeline=s.pipeline, model=s.model, items=w.items, events=w.events, ranker=s.ranker,
        feature_builder=s.builder, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools,
        item_embeddings=s.item_emb, n_candidates=10, max_per_category=2, no_partner="catalogue", item_to_item=20)
    user = next(u for u in users_with_history()
                if (rec.recommend(u, k=12, media_id="app-0").items["source"] == "item_to_item").any())
    before = rec.recommend(user, k=12, media_id="app-0").items
    table = rec._state.item_table
    gone = before.loc[before["source"] == "item_to_item", "item_id"].tolist()
    rec.remove_items(gone)
    new = w.items.head(3).assign(item_id=lambda d: d["item_id"] + 10**6)  # beyond the table's rows
    rec.add_items(new, media_pools=pd.DataFrame({"media_id": "app-0", "item_id": new["item_id"]}))
    assert rec._state.item_table is table  # updates carry the table over (it is rebuilt only from a serving log)
    after = rec.recommend(user, k=12, media_id="app-0").items
    assert len(after) == 12 and not set(gone) & set(after["item_id"])


def test_batch_scoring_writes_the_channels_rows_as_recommend_batch_gives_them(tmp_path):
    from recsys.batch.job import score

    rec = channel_rec()
    users = users_with_history(30)
    score(rec, tmp_path / "out", media_id="app-0", users=users, k=12, chunk_size=8, progress=False, workers=1,
          scored_at="2026-01-02 03:04:05")
    got = pd.read_parquet(tmp_path / "out").sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)
    want = rec.recommend_batch(users, k=12, media_id="app-0").sort_values(["user_id", "rank"], kind="stable")
    cols = ["user_id", "rank", "item_id", "reason"]
    assert "item_to_item" in set(want["source"])
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True).astype(object),
                                  want[cols].reset_index(drop=True).astype(object))
    # the job scores chunks of 8 users, recommend_batch all 30 at once: the user tower's products may round the
    # last bits differently with the batch's size, so the scores agree to float rounding, not bit for bit
    np.testing.assert_allclose(got["score"].to_numpy(float), want["score"].to_numpy(float), rtol=1e-9)


def test_a_live_click_seeds_the_channel_at_once():
    from recsys.recommender import Recommender

    s, w = fitted()._state, world()
    rec = Recommender.from_components(
        pipeline=s.pipeline, model=s.model, items=w.items, events=w.events, ranker=s.ranker,
        feature_builder=s.builder, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools,
        item_embeddings=s.item_emb, n_candidates=10, max_per_category=2, no_partner="catalogue", item_to_item=20)
    user = users_with_history()[0]
    table, cat = rec._state.item_table, rec._state.catalogue
    pool = set(w.media_pools.loc[w.media_pools["media_id"] == "app-0", "item_id"])
    seeds = set(seeds_of(rec, user, "app-0").tolist())
    x = next(i for i in cat.ids if i in pool and (p := cat.positions([i])[0]) not in seeds
             and table.indptr[p + 1] - table.indptr[p] > 10)  # an item with neighbours the user never engaged with
    title = cat.title[cat.positions([x])[0]]
    named = lambda feed: feed.loc[feed["source"] == "item_to_item", "reason"].eq(f"because you viewed {title}")  # noqa: E731
    assert not named(rec.recommend(user, k=12, media_id="app-0").items).any()
    at = w.events["timestamp"].max() + pd.Timedelta(1, "s")
    rec.observe(pd.DataFrame({"user_id": [user] * 2, "item_id": [x] * 2, "timestamp": [at] * 2,
                              "event_type": ["impression", "click"], "media_id": ["app-0"] * 2}))
    assert cat.positions([x])[0] in set(seeds_of(rec, user, "app-0").tolist())
    assert named(rec.recommend(user, k=12, media_id="app-0").items).any()  # no retraining, no reload
