"""Products to carry and partners to recruit: known answers with fixed probabilities, the feed's own scores,
pool and eligibility rules, typed errors, determinism (the v1 fixture bundle: 100 items, 100 users, a GBDT ranker)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import recsys
import recsys.partners.selection as selection
from recsys.errors import ConfigError, DataValidationError
from recsys.partners.engagement import audiences
from recsys.partners.pair_scores import pair_probabilities
from recsys.partners.selection import partners_to_recruit, products_to_carry
from tests.test_service_support import V1

CARRY_KEYS = {"rank", "item_id", "title", "category", "brand", "shop", "price", "paid_price", "commission_rate",
              "pctr", "pcvr", "purchases_per_1000", "gmv_per_1000", "commission_per_1000", "category_lift",
              "network_purchases", "reason"}
RECRUIT_KEYS = {"rank", "media_id", "audience_size", "items_considered", "items_in_pool", "purchases_per_1000",
                "gmv_per_1000", "commission_per_1000", "expected_purchases", "expected_gmv", "expected_commission",
                "category", "category_lift", "reason"}


@pytest.fixture(scope="module")
def rec() -> recsys.Recommender:
    return recsys.load(V1)


def _paid(rec, ids):
    frame = rec._ready().catalogue.frame.set_index("item_id")
    return np.maximum(frame.loc[ids, "price"].to_numpy() - frame.loc[ids, "coupon"].to_numpy(), 0.01)


def test_carry_with_fixed_probabilities_ranks_by_paid_price_times_rate(rec, monkeypatch) -> None:
    # every pair: pCTR 0.1, pCVR 0.5, so one impression earns 0.05 x paid price x rate: the order is paid x rate's
    monkeypatch.setattr(selection, "pair_probabilities",
                        lambda state, users, media, pos: (np.full((len(users), len(pos)), 0.1),
                                                          np.full((len(users), len(pos)), 0.5)))
    items = rec._ready().catalogue.frame
    pool = set(rec.pool("guide-0").tolist())
    cand = items[~items["item_id"].isin(pool) & items["in_stock"] & (items["eligibility"] == "")].copy()
    cand["value"] = _paid(rec, cand["item_id"].to_numpy()) * cand["commission_rate"].to_numpy()
    want = cand.sort_values(["value", "item_id"], ascending=[False, True])
    got = products_to_carry(rec, "guide-0", n=7)
    assert [r["item_id"] for r in got] == want["item_id"].head(7).tolist()
    for r, v in zip(got, want["value"].head(7), strict=True):
        # the same product taken in another order: equal up to float rounding
        assert r["commission_per_1000"] == pytest.approx(1000 * 0.05 * v, rel=1e-9)
        assert r["purchases_per_1000"] == pytest.approx(50.0, rel=1e-9)
        assert set(r) == CARRY_KEYS and r["reason"]


def test_carry_proposes_only_items_the_partner_lacks_and_may_show(rec) -> None:
    got = products_to_carry(rec, "guide-0", n=200)
    frame = rec._ready().catalogue.frame.set_index("item_id")
    ids = [r["item_id"] for r in got]
    assert ids and not set(ids) & set(rec.pool("guide-0").tolist())
    assert frame.loc[ids, "in_stock"].all() and (frame.loc[ids, "eligibility"] == "").all()
    values = [r["commission_per_1000"] for r in got]
    assert values == sorted(values, reverse=True) and [r["rank"] for r in got] == list(range(1, len(got) + 1))
    assert got == products_to_carry(rec, "guide-0", n=200)  # seeded sample: the same answer twice
    # an unrestricted pool (app-0 lists the whole catalogue) leaves nothing to carry
    assert products_to_carry(rec, "app-0") == []


def test_pair_scores_are_the_feed_s_own(rec) -> None:
    state = rec._ready()
    for media in ("app-0", "guide-0"):
        for user in rec.audience(media)[:4]:
            feed = rec.recommend(user, k=5, media_id=media).items
            pos = state.catalogue.positions(feed["item_id"].to_numpy())
            pctr, pcvr = pair_probabilities(state, np.array([user], object), np.array([media], object), pos)
            # the same features and trees as the feed, in another batch: equal up to float rounding
            np.testing.assert_allclose(pctr[0], feed["pctr"].to_numpy(), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(pcvr[0], feed["pcvr"].to_numpy(), rtol=1e-9, atol=1e-12)


def test_recruit_with_fixed_probabilities_ranks_by_audience_times_value(rec, monkeypatch) -> None:
    per_media = {m: 0.01 * (j + 1) for j, m in enumerate(rec.partners())}  # pCTR grows with the partner's index

    def fake(state, users, media, pos):
        return (np.array([per_media[m] for m in media])[:, None] * np.ones(len(pos)),
                np.full((len(users), len(pos)), 0.2))

    monkeypatch.setattr(selection, "pair_probabilities", fake)
    item = 3
    paid, rate = _paid(rec, [item])[0], float(rec._ready().catalogue.frame.set_index("item_id").loc[item,
                                                                                                 "commission_rate"])
    carrying = {m for m in rec.partners() if item in set(rec.pool(m).tolist())}
    got = partners_to_recruit(rec, item_id=item, n=50)
    want = {m: len(rec.audience(m)) * per_media[m] * 0.2 * paid * rate for m in rec.partners()
            if m not in carrying and len(rec.audience(m))}
    assert [r["media_id"] for r in got] == sorted(want, key=lambda m: (-want[m], m))
    for r in got:
        assert set(r) == RECRUIT_KEYS and r["items_in_pool"] == 0 and r["reason"]
        assert r["expected_commission"] == pytest.approx(want[r["media_id"]], rel=1e-9)  # another order of products
    every = partners_to_recruit(rec, item_id=item, n=50, include_current=True)
    assert {r["media_id"] for r in every} - set(want) == {m for m in carrying if len(rec.audience(m))}
    by_buys = partners_to_recruit(rec, item_id=item, n=2, by="purchases")
    assert len(by_buys) == 2 and by_buys[0]["expected_purchases"] >= by_buys[1]["expected_purchases"]


def test_one_pass_audiences_are_the_recommender_s(rec) -> None:
    got = audiences(rec._ready())
    assert set(got) == set(rec.partners())
    for media in rec.partners():
        want = rec.audience(media)
        assert np.array_equal(got[media], want) and got[media].dtype == want.dtype


def test_recruit_for_a_brand_or_shop_uses_its_items(rec) -> None:
    frame = rec._ready().catalogue.frame
    brand = frame["brand"].value_counts().index[0]
    shop = frame["shop"].value_counts().index[0]
    got = partners_to_recruit(rec, brand=brand, n=3, max_items=2)
    assert got and all(r["items_considered"] == 2 for r in got)
    values = [r["expected_commission"] for r in got]
    assert values == sorted(values, reverse=True)
    assert partners_to_recruit(rec, shop=shop, n=3)[0]["items_considered"] == int((frame["shop"] == shop).sum())


@pytest.mark.parametrize("call, match", [
    (lambda r: products_to_carry(r, "GUIDE-0"), "did you mean 'guide-0'"),
    (lambda r: products_to_carry(r, "guide-0", n=0), "n must be a positive int"),
    (lambda r: partners_to_recruit(r, item_id=999_999), "unknown item_id 999999"),
    (lambda r: partners_to_recruit(r, brand="no-such-brand"), "unknown brand 'no-such-brand'"),
    (lambda r: partners_to_recruit(r), "exactly one of item_id, shop or brand"),
    (lambda r: partners_to_recruit(r, item_id=1, shop="x"), "exactly one of item_id, shop or brand"),
    (lambda r: partners_to_recruit(r, item_id=1, by="gmv"), "by must be one of"),
])
def test_bad_input_raises_a_typed_error(rec, call, match) -> None:
    with pytest.raises(DataValidationError, match=match):
        call(rec)


def test_without_a_ranker_it_says_what_to_do(rec) -> None:
    bare = copy.copy(rec)
    bare._state = rec._ready().evolve(ranker=None, builder=None)
    with pytest.raises(ConfigError, match="need the Recommender's ranker"):
        products_to_carry(bare, "guide-0")
