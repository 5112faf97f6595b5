"""K whenever K items are eligible (issue 16 item 7): the category cap is relaxed only when the capped scan
cannot fill the feed, the feed says so, and a short feed's note gives the real count of eligible items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.feed.catalogue import Catalogue
from recsys.feed.rules import BusinessRules, RequestScope, apply_rules, eligible, feed_violations


def _catalogue() -> Catalogue:
    # i7 is invite-only and i9 out of stock: eligible are i0..i6 and i8 (six A, one B, one C)
    return Catalogue.from_items(pd.DataFrame({
        "item_id": [f"i{n}" for n in range(10)], "category": list("AAAAAABBCC"),
        "in_stock": [True] * 9 + [False], "eligibility": [""] * 7 + ["vip", "", ""]}))


def test_the_scan_relaxes_the_cap_when_the_capped_pool_cannot_fill_k():
    cat, rules = _catalogue(), BusinessRules(max_per_category=2)
    # one ranked candidate (i0): the capped scan adds i1 (A), i6 (B), i8 (C) = 4 of 8 eligible; the rest
    # of the pool (i2..i5, catalogue order) fills the feed beyond the cap
    sel = apply_rules(cat, RequestScope(), rules, 8, [(np.array([0]), np.array([1.0]))])
    assert cat.ids[sel.positions].tolist() == ["i0", "i1", "i6", "i8", "i2", "i3", "i4", "i5"]
    assert sel.relaxed == 4 and sel.tiers.tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    assert feed_violations(cat, RequestScope(), rules, sel.positions, 8) == []
    # asking for more than is eligible: every eligible item, once
    assert len(apply_rules(cat, RequestScope(), rules, 50, [(np.array([0]), np.array([1.0]))]).positions) == 8
    # a feed the cap can fill is not relaxed
    assert apply_rules(cat, RequestScope(), rules, 4, [(np.array([0]), np.array([1.0]))]).relaxed == 0


def test_a_feed_fills_k_whenever_k_items_are_eligible_and_notes_tell_the_truth():
    from tests.test_partner_separation import _variant
    from tests.test_recommender import expected_scope

    # few ranked candidates, so the rest of guide-0's pool comes from the scan (the path that stopped at the cap)
    rec = _variant(n_candidates=5)
    cat, scope = expected_scope(3, "guide-0")
    n_eligible = int(eligible(cat, np.arange(len(cat)), scope, BusinessRules()).sum())
    k = n_eligible - 1
    feed = rec.recommend(3, k=k, media_id="guide-0")
    assert len(feed) == k and feed.items["item_id"].is_unique
    assert len(feed.notes) == 1 and feed.notes[0].startswith("category cap relaxed: ")
    assert feed_violations(cat, scope, BusinessRules(max_per_category=2), cat.positions(feed.item_ids), k) == []
    short = rec.recommend(3, k=n_eligible + 10, media_id="guide-0")
    assert len(short) == n_eligible
    assert short.notes[0].startswith(f"only {n_eligible} eligible items for this request (asked for {n_eligible + 10})")
