"""The batch's one-pass business rules (recsys.feed.selection.select_feeds) give every request the Selection that
apply_rules gives it alone: same items in the same order, scores, tiers and relaxed count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.feed.catalogue import Catalogue
from recsys.feed.rules import BusinessRules, RequestScope, apply_rules
from recsys.feed.selection import select_feeds


def _catalogue(n: int = 60) -> Catalogue:
    rng = np.random.default_rng(3)
    return Catalogue.from_items(pd.DataFrame({"item_id": np.arange(n), "category": rng.choice(list("ABCDEFG"), n)}))


def _batch(rng: np.random.Generator, n_items: int, n_req: int):
    """Two tiers per request: tier 0 distinct items, tier 1 may repeat tier 0's; tied and NaN scores."""
    req, tier, pos, score = [], [], [], []
    for i in range(n_req):
        for t, size in ((0, int(rng.integers(0, 25))), (1, int(rng.integers(0, 10)))):
            p = rng.choice(n_items, size=size, replace=False)
            s = rng.choice([0.1, 0.2, 0.3, np.nan], size) if t == 1 else np.round(rng.random(size), 1)
            req += [i] * size
            tier += [t] * size
            pos += p.tolist()
            score += s.tolist()
    return np.array(req, np.int64), np.array(tier, np.int64), np.array(pos, np.int64), np.array(score)


@pytest.mark.parametrize("cap", [1, 2, 3, None])
def test_select_feeds_equals_apply_rules_per_request(cap):
    cat, rules = _catalogue(), BusinessRules(max_per_category=cap)
    rng = np.random.default_rng(cap or 0)
    n_req = 40
    req, tier, pos, score = _batch(rng, len(cat), n_req)
    scopes = [RequestScope() for _ in range(n_req)]
    ks = rng.integers(1, 12, n_req).tolist()
    got = select_feeds(cat, scopes, rules, ks, req, tier, pos, score, 2)
    short = 0
    for i in range(n_req):
        m = req == i
        want = apply_rules(cat, scopes[i], rules, ks[i], [(pos[m & (tier == t)], score[m & (tier == t)])
                                                          for t in range(2)])
        short += want.relaxed > 0 or len(want.positions) < ks[i] or (want.tiers == 2).any()
        assert got[i].positions.tolist() == want.positions.tolist(), i
        # the very same numbers picked from the inputs (no arithmetic): equal NaN-aware, bit for bit
        np.testing.assert_array_equal(got[i].scores, want.scores)
        assert got[i].tiers.tolist() == want.tiers.tolist()
        assert got[i].relaxed == want.relaxed
    assert short < n_req  # most requests take the one-pass path; some (short ones) the per-request one


def test_select_feeds_of_an_empty_batch_and_of_requests_without_candidates():
    cat, rules = _catalogue(10), BusinessRules(max_per_category=2)
    assert select_feeds(cat, [], rules, [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros(0), 2) == []
    sels = select_feeds(cat, [RequestScope(), RequestScope()], rules, [3, 3], np.array([1]), np.array([0]),
                        np.array([4]), np.array([0.5]), 2)
    # neither can fill 3 slots from its candidates: both come from apply_rules, the pool scan filling them
    assert [len(s.positions) for s in sels] == [3, 3]
    assert sels[1].positions[0] == 4 and sels[1].tiers[0] == 0


@pytest.mark.parametrize("MEDIA", ["guide-0", None])  # a small pool (backfill short: per request) and the catalogue
def test_a_batch_on_one_partner_equals_its_users_one_by_one(MEDIA):
    """Enough users on one partner that the backfill tier is taken per list in one matrix
    (recsys.feed.backfill.MIN_GROUP) and the rules in one pass; each single request takes the per-request paths."""
    from recsys.feed.backfill import MIN_GROUP
    from tests.test_partner_separation import _variant

    rec = _variant(n_candidates=12)  # fewer candidates than the pool: the backfill tier has items to add
    users = rec.audience(None)[: 2 * MIN_GROUP + 5].tolist() + [10**6]  # + an unknown user (popular path)
    exclude = {users[0]: rec.pool("guide-0")[:30].tolist()}
    batch = rec.recommend_batch(users, k=7, media_id=MEDIA, exclude=exclude)
    singles = []
    for uid in users:
        f = rec.recommend(uid, k=7, media_id=MEDIA, exclude=exclude.get(uid, ()))
        singles.append(f.items.assign(user_id=uid, media_id=f.media_id, fallback=f.fallback, score_kind=f.score_kind))
    single = pd.concat(singles, ignore_index=True)[list(batch.columns)]
    assert len(users) > MIN_GROUP and len(batch) == 7 * len(users)
    pd.testing.assert_frame_equal(batch.reset_index(drop=True), single, check_dtype=False)


def test_popular_tiers_equal_the_per_request_backfill():
    from recsys.feed import engine
    from recsys.feed.backfill import MIN_GROUP, popular_tiers
    from recsys.feed.request import Request
    from tests.test_recommender import fitted

    state = fitted()._state
    users = fitted().audience(None)[: MIN_GROUP + 8].tolist()
    reqs = [Request(user_id=u, media_id="app-1", k=5) for u in users]
    engine._resolve(state, reqs)
    scopes = [engine._scope(state, r) for r in reqs]
    rng = np.random.default_rng(0)
    top = state.popular.top(state.catalogue, "app-1", None)[0]
    # skips: some of the list's head (so the matrix must drop them), one request skipping nearly all of the head
    skips = [rng.choice(top[:40], size=int(rng.integers(0, 20)), replace=False) for _ in reqs]
    skips[3] = top[: len(top) - 2]
    ns = [int(n) for n in rng.integers(1, 12, len(reqs))]
    assert len(reqs) >= MIN_GROUP and len({(r.segment, r.pool) for r in reqs}) < len(reqs)  # groups take the matrix
    got = popular_tiers(state, reqs, scopes, ns, skips, lambda i: engine._popular(state, reqs[i], scopes[i], ns[i],
                                                                                      skips[i]))
    for i, r in enumerate(reqs):
        want = engine._popular(state, r, scopes[i], ns[i], skips[i])
        assert got[i][0].tolist() == want[0].tolist(), i
        np.testing.assert_array_equal(got[i][1], want[1])  # the same scores picked from one list: bit for bit


@pytest.mark.parametrize("n_trees", [3, 9, 49, 130, 300])
def test_forest_sums_row_slices_in_place_as_it_sums_their_copies(n_trees):
    """CompiledForest._sum reads each ensemble's columns of a row-major leaves matrix in place: the sums must be
    bit for bit those of a contiguous copy (NumPy's pairwise order over each row), for short and long ensembles."""
    from recsys.models.rankers.forest import CompiledForest

    leaves = np.random.default_rng(n_trees).normal(size=(700, n_trees + 11))
    forest = CompiledForest.__new__(CompiledForest)
    forest.baselines, forest.bounds = [0.25, -1.5], [0, n_trees, n_trees + 11]
    got = forest._sum(leaves)
    for e, (a, b) in enumerate(((0, n_trees), (n_trees, n_trees + 11))):
        want = np.full(len(leaves), forest.baselines[e]) + np.ascontiguousarray(leaves[:, a:b]).sum(axis=1)
        np.testing.assert_array_equal(got[e], want)
    np.testing.assert_array_equal(forest._sum(np.asfortranarray(leaves))[0], got[0])  # column-major: copied first
