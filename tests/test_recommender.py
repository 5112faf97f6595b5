"""Recommender: feeds with scores and reasons, rules under a property test, cold start, unknown ids,
bad arguments, batch equals single, catalogue updates.

One small synthetic world (30k events) and one fitted Recommender are built once per test process
(:func:`fitted`) and shared with the bundle tests.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.errors import DataValidationError
from recsys.feed.catalogue import Catalogue
from recsys.feed.reasons import REASON_CODES
from recsys.feed.rules import BusinessRules, RequestScope, feed_violations

SETTINGS = dict(dim=16, epochs=2, title_buckets=256, ranker_max_iter=15,
                ranker_options={"check_leakage": False, "num_threads": 1})


@functools.cache
def world():
    """The shared world; a few items are out of stock so the stock rule has something to refuse."""
    from recsys.datasets.synthetic import generate_world

    w = generate_world(30_000, seed=0, progress=False)
    items = w.items.copy()
    items.loc[items.index % 9 == 4, "in_stock"] = False
    w.items = items
    return w


@functools.cache
def fitted():
    """A Recommender fitted on :func:`world` (two-tower, exact index, GBDT ranker). ``no_partner="catalogue"``:
    the tests sharing it ask the whole catalogue with ``media_id=None`` (the "auto" default refuses that here,
    since the world's partners have restricted pools: tests/test_partner_separation.py)."""
    import torch

    from recsys.fit.components import TrainSettings
    from recsys.recommender import Recommender

    w = world()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Recommender(max_per_category=2, train=TrainSettings(**SETTINGS), no_partner="catalogue").fit(
            w.events, w.items, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools,
            progress=False)
    finally:
        torch.set_num_threads(threads)


def bought(user_id) -> set:
    ev = world().events
    return set(ev.loc[(ev["user_id"] == user_id) & (ev["event_type"].astype(str) == "purchase"), "item_id"])


def expected_scope(user_id, media_id, segment: str | None = None, exclude=()) -> tuple[Catalogue, RequestScope]:
    """The scope a request should have, rebuilt from the raw tables (independently of the engine)."""
    w = world()
    cat = fitted()._state.catalogue
    pools = w.media_pools
    pool = None
    if media_id is not None and (pools["media_id"] == media_id).any():
        pool = np.zeros(len(cat), bool)
        pool[cat.positions(pools.loc[pools["media_id"] == media_id, "item_id"].to_numpy())] = True
    seg = w.users.set_index("user_id")["segment"].get(user_id, "") if segment is None else segment
    excluded = cat.positions(list(bought(user_id) | set(exclude)))
    return cat, RequestScope(pool=pool, segments=frozenset([seg]) if seg else frozenset(),
                             excluded=np.unique(excluded[excluded >= 0]))


@pytest.fixture(scope="module")
def rec():
    return fitted()


def test_feed_has_k_items_with_scores_and_reasons(rec):
    buyer = int(world().events.loc[world().events["event_type"].astype(str) == "purchase", "user_id"].iloc[0])
    feed = rec.recommend(buyer, k=12, media_id="app-1")
    assert len(feed) == 12 and feed.fallback is None and feed.notes == []
    assert list(feed.items.columns) == ["rank", "item_id", "score", "pctr", "pcvr", "reason", "reason_code", "source"]
    assert feed.items["rank"].tolist() == list(range(1, 13))
    assert feed.items["item_id"].is_unique
    assert np.isfinite(feed.items["score"]).all()
    assert feed.items["reason"].map(lambda s: isinstance(s, str) and len(s) > 5).all()
    assert set(feed.items["reason_code"]) <= set(REASON_CODES)
    assert not set(feed.item_ids) & bought(buyer)
    ranked = feed.items[feed.items["source"] == "retrieval"]
    assert (np.diff(ranked["score"].to_numpy()) <= 1e-12).all()  # best first
    assert ((feed.items["pctr"] >= 0) & (feed.items["pctr"] <= 1)).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.sampled_from([0, 1, 3, 17, 42, 99, 150, 299, 10**6, "new-user"]),
       media=st.sampled_from([None, "guide-0", "guide-2", "app-0", "kol-0", "kol-2", "no-such-partner"]),
       k=st.integers(1, 40), n_exclude=st.integers(0, 30), vip=st.booleans())
def test_rules_hold_for_every_request(rec, user, media, k, n_exclude, vip):
    exclude = list(range(0, 150, 5))[:n_exclude]
    context = {"segment": "vip"} if vip else None
    if media == "no-such-partner":  # an unknown partner is refused (unknown_partner="refuse"), never widened
        with pytest.raises(DataValidationError, match="unknown media_id 'no-such-partner'"):
            rec.recommend(user, k=k, media_id=media, exclude=exclude, context=context)
        return
    feed = rec.recommend(user, k=k, media_id=media, exclude=exclude, context=context)
    # checked from the raw tables with pandas, independently of the rules module ...
    items = world().items.set_index("item_id")
    # the segment is the users table's; a context segment unlocks nothing (trust_context_segment=False)
    segment = world().users.set_index("user_id")["segment"].get(user, "")
    pool = world().media_pools.loc[world().media_pools["media_id"] == media, "item_id"]
    ok = items["in_stock"] & ((items["eligibility"] == "") | (items["eligibility"] == segment))
    ok &= ~items.index.isin(list(bought(user) | set(exclude)))
    if len(pool):
        ok &= items.index.isin(pool)
    shown = items.loc[feed.item_ids]
    assert feed.items["item_id"].is_unique
    assert ok.reindex(feed.item_ids).all(), "an ineligible item was served"
    assert len(feed) == min(k, int(ok.sum()))
    per_cat = items.loc[ok[ok].index, "category"].value_counts()
    if np.minimum(per_cat.to_numpy(), 2).sum() >= len(feed):  # the pool can fill the feed under the cap
        assert shown["category"].value_counts().max() <= 2
    # ... and by the rules module's own audit
    cat, scope = expected_scope(user, media, None, exclude)
    assert feed_violations(cat, scope, BusinessRules(max_per_category=2), cat.positions(feed.item_ids), k) == []


def test_k_is_guaranteed_even_when_the_category_cap_cannot_be_met(rec):
    # kol-2's pool is small: after the rules it holds fewer items than asked, so every eligible one comes back
    cat, scope = expected_scope(3, "kol-2")
    from recsys.feed.rules import eligible

    n_eligible = int(eligible(cat, np.arange(len(cat)), scope, BusinessRules()).sum())
    feed = rec.recommend(3, k=n_eligible + 5, media_id="kol-2")
    assert len(feed) == n_eligible and n_eligible > 2
    assert feed.notes[0] == (f"only {n_eligible} eligible items for this request (asked for {n_eligible + 5}): the "
                             "partner's pool, stock, segment and exclusions leave no more")
    assert feed.notes[1:] == [] or feed.notes[1].startswith("category cap relaxed")
    feed = rec.recommend(3, k=n_eligible, media_id="kol-2")
    assert len(feed) == n_eligible and feed.items["item_id"].is_unique


def test_invite_only_items_only_for_their_segment(rec):
    vip_items = set(world().items.loc[world().items["eligibility"] == "vip", "item_id"])
    regular = world().users.loc[world().users["segment"] == "regular", "user_id"].head(30).tolist()
    shown = rec.recommend_batch(regular, k=40, media_id="app-0")
    assert not vip_items & set(shown["item_id"])
    # a known user's segment is the users table's: a context segment unlocks nothing (and the feed says so)
    claimed = rec.recommend_batch(regular, k=150, media_id="app-0", context={"segment": "vip"})
    assert not vip_items & set(claimed["item_id"])
    assert "context segment 'vip' ignored" in claimed.attrs["notes"][regular[0]][0]
    vip_users = world().users.loc[world().users["segment"] == "vip", "user_id"].tolist()
    vip_feed = rec.recommend_batch(vip_users, k=150, media_id="app-0")
    assert vip_items & set(vip_feed["item_id"])  # with the segment, invite-only items become eligible


def test_repeat_purchase_categories_let_bought_items_back(rec):
    from recsys.feed.engine import Request, _scope
    from recsys.recommender import Recommender

    ev = world().events
    buy = ev[ev["event_type"].astype(str) == "purchase"].iloc[0]
    cat = world().items.set_index("item_id").loc[buy["item_id"], "category"]
    state = rec._state
    relaxed = state.evolve(config=Recommender(repeat_purchase_categories=[cat])._config())
    pos = state.catalogue.positions([buy["item_id"]])[0]
    row = int(state.users.rows([buy["user_id"]])[0])
    assert pos not in _scope(relaxed, Request(buy["user_id"], None, 5, row=row)).excluded
    assert pos in _scope(state, Request(buy["user_id"], None, 5, row=row)).excluded


def test_unknown_ids_fall_back_and_say_so(rec):
    feed = rec.recommend("someone-new", k=10, media_id="guide-1")
    assert len(feed) == 10 and feed.fallback == "cold_user_features"
    assert any("unknown user_id 'someone-new'" in n for n in feed.notes)
    with pytest.raises(DataValidationError, match="unknown media_id 'partner-we-never-met'"):
        rec.recommend(5, k=10, media_id="partner-we-never-met", exclude=["no-such-item", 10**9])
    similar = rec.similar_items("no-such-item", k=6, media_id="guide-0")
    assert len(similar) == 6 and similar.fallback == "popular" and any("unknown item_id" in n for n in similar.notes)
    assert rec.remove_items(["no-such-item"]) == 0


def test_cold_start_paths(rec):
    # a new user with no partner and no profile: popular with everyone, ranked by the objective
    feed = rec.recommend(10**7, k=8)
    assert feed.fallback == "popular" and len(feed) == 8
    assert set(feed.items["reason_code"]) <= {"popular", "trending", "friends", "for_you"}
    # the same user on a partner: the features-only tower, and the feed follows the partner's pool
    on_kol = rec.recommend(10**7, k=5, media_id="kol-0")
    pool = set(world().media_pools.loc[world().media_pools["media_id"] == "kol-0", "item_id"])
    assert on_kol.fallback == "cold_user_features" and set(on_kol.item_ids) <= pool
    # a profile alone is enough for the tower
    profiled = rec.recommend(10**7, k=5, context={"gender": "F", "age_bucket": "25-34"})
    assert profiled.fallback == "cold_user_features"
    # popular-only mode
    from recsys.recommender import Recommender

    popular = rec._state.evolve(config=Recommender(cold_start="popular", max_per_category=2)._config())
    from recsys.feed.engine import Request, run_batch

    rows = run_batch(popular, [Request(10**7, "kol-0", 5)])
    assert (rows["fallback"] == "popular").all() and set(rows["item_id"]) <= pool


def test_bad_arguments_raise_clear_errors(rec):
    for k in (0, -3):
        with pytest.raises(DataValidationError, match="k must be >= 1"):
            rec.recommend(1, k=k)
    for k in (2.5, "3", True, None):
        with pytest.raises(DataValidationError, match="k must be a positive int"):
            rec.recommend(1, k=k)
    for uid in ([1], None, True):  # 1.5 is an id of no integer-id model: served as unknown (tests/test_ids.py)
        with pytest.raises(DataValidationError, match="user_id must be an int or a str"):
            rec.recommend(uid)
    with pytest.raises(DataValidationError, match="wrap a single id"):
        rec.recommend(1, exclude="abc")
    with pytest.raises(DataValidationError, match="context must be a dict"):
        rec.recommend(1, context=["vip"])
    with pytest.raises(DataValidationError, match="media_id"):
        rec.recommend(1, media_id=["guide-0"])
    with pytest.raises(DataValidationError, match="user_id"):
        rec.recommend_batch(pd.DataFrame({"uid": [1, 2]}))
    with pytest.raises(DataValidationError, match="k must be"):
        rec.similar_items(3, k=0)


def test_batch_equals_single(rec):
    users = pd.DataFrame({"user_id": [0, 5, 7, 123, 10**6, 5], "media_id": ["guide-0", "app-1", None, "kol-1",
                                                                           "guide-2", "kol-2"]})
    batch = rec.recommend_batch(users, k=9, exclude={5: [41, 108]})
    singles = []
    for uid, media in zip(users["user_id"], users["media_id"], strict=True):
        f = rec.recommend(uid, k=9, media_id=media, exclude=[41, 108] if uid == 5 else ())
        singles.append(f.items.assign(user_id=uid, media_id=f.media_id, fallback=f.fallback, score_kind=f.score_kind))
    single = pd.concat(singles, ignore_index=True)[list(batch.columns)]
    pd.testing.assert_frame_equal(batch.reset_index(drop=True), single, check_dtype=False)
    assert batch.attrs["notes"][10**6] == ["unknown user_id 1000000: served as a new user"]


def test_reasons_name_what_drove_the_score(rec):
    users = world().events["user_id"].drop_duplicates().head(60).tolist()
    out = rec.recommend_batch(users, k=10, media_id="guide-0")
    titles = world().items.set_index("item_id")["title"]
    viewed = out[out["reason_code"] == "viewed"]
    assert len(viewed) and (out["reason_code"] == "trending").any()
    pos_ev = world().events[world().events["event_type"].astype(str) != "impression"]
    cat = rec._state.catalogue
    for _, r in viewed.iterrows():
        history = pos_ev.loc[pos_ev["user_id"] == r["user_id"], "item_id"].unique()
        named = history[titles.reindex(history).to_numpy() == r["reason"].removeprefix("because you viewed ")]
        assert len(named)  # a viewed item of the user's own history ...
        p_item, p_named = cat.positions([r["item_id"]])[0], cat.positions(named)
        alike = rec._state.item_emb[p_named] @ rec._state.item_emb[p_item]
        assert ((cat.category[p_named] == cat.category[p_item]) | (alike >= 0.3)).any()  # ... related to the item
    trending = out[out["reason_code"] == "trending"].iloc[0]
    assert trending["reason"].startswith("trending in ") and trending["reason"].endswith(" on guide-0")


def test_a_viewed_reason_names_an_item_of_the_same_category_never_an_unrelated_one(rec):
    from recsys.feed.engine import Request, _reason_codes, _resolve
    from recsys.feed.ranking import Ranked

    state = rec._state
    cat = state.catalogue.category_code
    row, hist = next((r, h[h >= 0]) for r in range(len(state.users.ids))
                     for h in [state.vocab_to_pos[state.users.history_items(r)]] if len(np.unique(cat[h[h >= 0]])) >= 2)
    seen = np.isin(cat, cat[hist])
    seen[hist] = False  # candidates: not the history items themselves
    same, unrelated = np.flatnonzero(seen)[0], np.flatnonzero(~np.isin(cat, cat[hist]))[0]
    emb = state.item_emb.copy()  # this tiny world's items are all alike: make one unlike the user's history
    away = -emb[hist].mean(axis=0)
    emb[unrelated] = away / np.linalg.norm(away)
    assert (emb[hist] @ emb[unrelated]).max() < 0.3
    state = replace(state, item_emb=emb)
    req = Request(state.users.ids[row], None, 2)  # no partner: every event of the history may be cited
    _resolve(state, [req])
    pos = np.array([same, unrelated])
    ranked = Ranked(np.ones(2), np.ones(2), np.ones(2),  # history evidence drives both scores
                    contributions=lambda idx, base: (["viewed"], np.ones((len(idx), 1))))
    codes, anchor = _reason_codes(state, [req], ranked, np.zeros(2, np.int64), pos, np.ones(2),
                                  np.array(["retrieval"] * 2, dtype=object), np.arange(2), np.ones(2, bool))
    assert codes.tolist() == ["viewed", "for_you"]
    assert anchor[0] in hist and cat[anchor[0]] == cat[same]


def test_ablation_picks_the_evidence_the_score_depends_on():
    from recsys.feed.reasons import choose_reasons, reason_contributions

    frame = pd.DataFrame({"friends_clicks": [2.0, 0.0, 0.0], "item_1D_log_clk": [0.0, 3.0, 0.0],
                          "item_1D_ctr": [0.05, 0.30, 0.05], "category_1D_ctr": [0.05, 0.05, 0.05],
                          "brand_stage": [0.0, 0.0, 2.0], "price": [1.0, 1.0, 1.0]})

    def score(f):  # a ranker that loves friends' clicks, a hot item, and brands the user engaged with
        return 0.1 + f["friends_clicks"] * 0.2 + (f["item_1D_ctr"] - 0.05) + f["brand_stage"] * 0.05

    base = score(frame).to_numpy()
    contrib = reason_contributions(frame, lambda f, rows: score(f).to_numpy(), base)
    assert set(contrib.columns) == {"friends", "trending", "viewed"}
    codes = choose_reasons(contrib, base, similarity=np.array([0.1, 0.1, 0.9]), default=np.array(["for_you"] * 3))
    assert codes.tolist() == ["friends", "trending", "viewed"]
    # without a viewed item to name, history evidence cannot be the reason
    codes = choose_reasons(contrib, base, similarity=np.full(3, np.nan), default=np.array(["for_you"] * 3))
    assert codes.tolist() == ["friends", "trending", "for_you"]
    # a viewed item of another category and unlike the item is not named; one of its category is
    unlike = dict(similarity=np.array([0.1, 0.1, 0.1]), default=np.array(["for_you"] * 3))
    assert choose_reasons(contrib, base, **unlike, anchor_fits=np.zeros(3, bool)).tolist()[2] == "for_you"
    assert choose_reasons(contrib, base, **unlike, anchor_fits=np.ones(3, bool)).tolist()[2] == "viewed"


def test_added_items_enter_from_content_and_removed_items_vanish(rec):
    from recsys.recommender import Recommender

    w = world()
    clone = Recommender.from_components(
        pipeline=rec._state.pipeline, model=rec._state.model, items=w.items, events=w.events, users=w.users,
        social=w.social, media=w.media, media_pools=w.media_pools, max_per_category=None,
        no_partner="catalogue")  # the feeds below ask the whole catalogue (media_id=None)
    src = w.items[w.items["in_stock"] & (w.items["eligibility"] == "")].iloc[3]
    new = pd.DataFrame([src, src]).assign(item_id=[10_000, 10_001])  # two never-seen ids, same content
    assert clone.add_items(new, media_pools=pd.DataFrame({"media_id": ["guide-0"], "item_id": [10_000]})) == 2
    # embedded from content alone: identical content gives identical vectors, so each is the other's neighbour
    assert clone.similar_items(10_000, k=3).item_ids[0] == 10_001
    assert clone.similar_items(10_001, k=3).items["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert 10_001 not in clone.similar_items(10_000, k=3, media_id="guide-0").item_ids  # not in guide-0's pool
    feeds = clone.recommend_batch(list(range(40)), k=150)
    assert {10_000, 10_001} <= set(feeds["item_id"])  # no partner, no pool: new items are served
    clone.set_in_stock([10_001], False)
    assert 10_001 not in set(clone.recommend_batch(list(range(40)), k=150)["item_id"])
    clone.set_in_stock([10_001], True)
    assert clone.remove_items([10_000, src["item_id"]]) == 2
    feeds = clone.recommend_batch(list(range(40)), k=30, media_id="app-0")
    assert not {10_000, src["item_id"]} & set(feeds["item_id"])
    assert 10_000 not in clone.similar_items(int(w.items["item_id"].iloc[0]), k=100).item_ids


def test_offline_evaluation_sees_the_serving_feeds(rec):
    from recsys.feed.engine import Request, _scope
    from recsys.feed.rules import apply_rules_batch

    users = [0, 5, 10**6, 7]
    recs = rec.recommend_ids(users, k=6, media_id="kol-2")
    batch = rec.recommend_batch(users, k=6, media_id="kol-2")
    assert recs.shape == (4, 6)
    for row, uid in zip(recs, users, strict=True):
        served = batch.loc[batch["user_id"] == uid, "item_id"].tolist()
        assert [i for i in row if i != -1] == served
    idx = rec.recommend_ids(users, k=6, media_id="kol-2", item_ids=world().items["item_id"].to_numpy()[::-1])
    assert idx[0, 0] == len(world().items) - 1 - recs[0, 0]
    # the serving rules applied to offline candidate lists: same eligibility, cap and padding
    state = rec._state
    rows = state.users.rows(users)
    scopes = [_scope(state, Request(u, "kol-2", 6, row=int(r))) for u, r in zip(users, rows, strict=True)]
    cands = np.tile(np.arange(len(state.catalogue)), (len(users), 1))
    feeds = apply_rules_batch(state.catalogue, scopes, state.config.rules, 6, cands)
    for f, scope in zip(feeds, scopes, strict=True):
        real = f[f >= 0]
        assert feed_violations(state.catalogue, scope, state.config.rules, real, 6) == []


def test_request_time_sets_point_in_time_features(rec):
    early = rec.recommend(5, k=10, media_id="app-1", context={"timestamp": "2026-01-02"})
    late = rec.recommend(5, k=10, media_id="app-1")
    assert early.items["score"].tolist() != late.items["score"].tolist()
    with pytest.raises(DataValidationError, match=r"context\['timestamp'\] must be a time"):
        rec.recommend(5, k=10, context={"timestamp": "not a time"})


def test_rules_by_hand_cap_scan_and_relaxation():
    from recsys.feed.rules import apply_rules

    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(10)], "category": list("AAAAAABBCC"),
                          "in_stock": [True] * 9 + [False], "eligibility": [""] * 7 + ["vip", "", ""]})
    cat = Catalogue.from_items(items)
    rules = BusinessRules(max_per_category=2)
    a_items = np.arange(6)
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.2])
    # candidates all in category A: the two best A items, then the scan fills B and C under the cap
    sel = apply_rules(cat, RequestScope(), rules, 5, [(a_items, scores)])
    assert cat.ids[sel.positions].tolist() == ["i1", "i4", "i6", "i8", "i2"]
    # i7 is invite-only and i9 out of stock: with both gone the pool cannot fill 5 under the cap,
    # so the cap is relaxed for the last slot with the best remaining candidate (i2)
    assert sel.tiers.tolist() == [0, 0, 1, 1, 0]
    vip = apply_rules(cat, RequestScope(segments=frozenset(["vip"])), rules, 5, [(a_items, scores)])
    assert cat.ids[vip.positions].tolist() == ["i1", "i4", "i6", "i7", "i8"]
    # a pool of A items only: the cap cannot hold, k still comes back; exclusions and duplicates never
    pool = np.zeros(10, bool)
    pool[a_items] = True
    dup = np.concatenate([a_items, a_items])
    sel = apply_rules(cat, RequestScope(pool=pool, excluded=np.array([1])), rules, 5,
                      [(dup, np.concatenate([scores, scores]))])
    assert cat.ids[sel.positions].tolist() == ["i4", "i2", "i3", "i5", "i0"]
    assert len(apply_rules(cat, RequestScope(pool=pool), rules, 50, [(a_items, scores)]).positions) == 6
