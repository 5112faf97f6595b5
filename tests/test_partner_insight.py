"""Audience insight on a hand-made log with known counts, its privacy rule, and a run on the fixture bundle."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from recsys.errors import ConfigError, DataValidationError
from recsys.partners import audience_insight, price_levels
from recsys.partners.privacy import OTHER, merge_small, wilson

T0 = pd.Timestamp("2026-01-01")
H, D = pd.Timedelta(hours=1), pd.Timedelta(days=1)
U = [f"user-{i:02d}" for i in range(14)]  # string ids, so the privacy test can search the JSON for any of them


def hand_made() -> dict:
    """Partner p: u0..u11 engaged (the audience), u12 only saw an impression; partner q: u13, and u0 elsewhere.

    On p: 13 impressions, 12 clicks (u0..u9 on item 1 of category a / shop s1, u10 and u11 on item 3 of
    category b / shop s2), 5 purchases (u0 at T0+2h, u1 and u2 at T0+1d of item 1; u4 at T0+2d and u3 at T0+10d
    of item 2, category a / shop s1). On q: u13 one impression, 21 clicks (20 on item 1, 1 on item 3) and a
    purchase of item 3; u0 two clicks on item 3. Friends: u0 with u1, u2, u3, u4.
    """
    rows = [(U[i], 1, T0, "impression", "p") for i in range(13)]
    rows += [(U[i], 1, T0 + H, "click", "p") for i in range(10)]
    rows += [(U[i], 3, T0 + H, "click", "p") for i in (10, 11)]
    rows += [(U[0], 1, T0 + 2 * H, "purchase", "p"), (U[1], 1, T0 + D, "purchase", "p"),
             (U[2], 1, T0 + D, "purchase", "p"), (U[4], 2, T0 + 2 * D, "purchase", "p"),
             (U[3], 2, T0 + 10 * D, "purchase", "p")]
    rows += [(U[13], 3, T0, "impression", "q"), (U[13], 3, T0 + H, "click", "q"),
             (U[13], 3, T0 + 2 * H, "purchase", "q")]
    rows += [(U[13], 1, T0 + k * H, "click", "q") for k in range(20)]
    rows += [(U[0], 3, T0 + k * H, "click", "q") for k in (3, 4)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type", "media_id"])
    items = pd.DataFrame({"item_id": [1, 2, 3, 4], "category": ["a", "a", "b", "b"], "brand": ["A", "A", "B", "B"],
                          "shop": ["s1", "s1", "s2", "s2"], "price": [10.0, 20.0, 100.0, 200.0]})
    gender = ["F"] * 8 + ["M"] * 4 + ["F", "M"]
    age = ["x"] * 6 + ["w"] * 4 + ["y", "z", "x", "y"]
    users = pd.DataFrame({"user_id": U, "gender": gender, "age": age,
                          "signup": pd.date_range("2025-01-01", periods=14, freq="D")})
    social = pd.DataFrame({"user_id": [U[0]] * 4, "friend_id": [U[1], U[2], U[3], U[4]]})
    return {"events": events, "items": items, "users": users, "social": social}


def rows_by_value(section: dict) -> dict:
    return {r["value"]: r for r in section["rows"]}


def test_sizes_activity_and_rates() -> None:
    r = audience_insight(hand_made(), "p", min_group=3)
    assert r["size"] == {"reached_users": 13, "audience_users": 12, "buyers": 5, "network_audience_users": 13}
    assert r["activity"]["events"] == {"click": 12, "impression": 13, "purchase": 5}
    ctr, cvr = r["rates"]["ctr"], r["rates"]["cvr"]
    assert (ctr["partner"]["successes"], ctr["partner"]["trials"]) == (12, 13)
    assert (cvr["partner"]["successes"], cvr["partner"]["trials"]) == (5, 12)
    # network: 14 impressions; 12 + 1 + 20 + 2 = 35 clicks; 6 purchases
    assert (ctr["network"]["trials"], cvr["network"]["trials"], cvr["network"]["successes"]) == (14, 35, 6)
    assert ctr["network"]["ci_low"] is None  # 35 clicks on 14 logged impressions: not a proportion, no interval
    # Wilson 95% for 5/12 worked out by hand: centre (p + z²/2n)/(1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²)
    # /(1 + z²/n); compared within 1e-12 (two float computations of the same formula)
    z, n, p = 1.959963984540054, 12, 5 / 12
    centre, half = (p + z * z / 24) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert cvr["partner"]["ci_low"] == pytest.approx(centre - half, abs=1e-12)
    assert cvr["partner"]["ci_high"] == pytest.approx(centre + half, abs=1e-12)


def test_profile_merges_small_groups_so_none_can_be_subtracted_out() -> None:
    r = audience_insight(hand_made(), "p", min_group=3)
    gender = rows_by_value(r["profile"]["gender"])
    assert {k: v["users"] for k, v in gender.items()} == {"F": 8, "M": 4}
    # network = users engaged anywhere: u0..u11 and u13 (8 F, 5 M); lift F = (8/12)/(8/13)
    assert gender["F"]["lift"] == pytest.approx(13 / 12, rel=1e-12)
    # age: x 6, w 4, y 1, z 1 -> y and z (2 users) are too few alone, so the smallest shown row (w) joins them
    age = r["profile"]["age"]
    assert [(row["value"], row["users"]) for row in age["rows"]] == [("x", 6), (OTHER, 6)] and age["merged"] == 3
    assert "signup" not in r["profile"] and any("signup" in n for n in r["notes"])


def test_top_categories_lift_and_suppression() -> None:
    r = audience_insight(hand_made(), "p", min_group=3)
    cats = r["top"]["category"]
    # category a: 10 clicks + 5 purchases by 10 users; b: 2 users, below min_group
    assert [row["value"] for row in cats["rows"]] == ["a"] and cats["suppressed"] == 1
    a = cats["rows"][0]
    assert (a["users"], a["events"], a["purchases"]) == (10, 15, 5)
    # share on p 15/17; network: a 15 + 20 = 35 of 41 engagement events
    assert a["lift"] == pytest.approx((15 / 17) / (35 / 41), rel=1e-12)


def test_merchant_converting_well_against_the_network() -> None:
    r = audience_insight(hand_made(), "p", min_group=3)
    m = r["merchants"]
    assert [row["shop"] for row in m["rows"]] == ["s1"] and m["suppressed"] == 1
    s1 = m["rows"][0]
    # on p: 5 purchases of 10 clicks; network: 5 of 30 (q's 20 clicks on item 1 bought nothing)
    assert (s1["clicks"], s1["purchases"]) == (10, 5)
    assert s1["network_cvr"] == pytest.approx(5 / 30, rel=1e-12)
    assert s1["cvr"]["ci_low"] > 5 / 30 and s1["converts_well"] and m["converts_well"] == ["s1"]


def test_spending_power_and_price_levels() -> None:
    t = hand_made()
    levels = price_levels(t["items"].set_index("item_id"))
    assert levels.to_dict() == {1: 3, 2: 5, 3: 3, 4: 5}  # ranks 1/2 and 2/2 within each category, in fifths
    r = audience_insight(t, "p", min_group=3)
    sp = r["spending_power"]
    # buyers: u0, u1, u2 at level 3 and u3, u4 at level 5 (2 users): both levels end up merged (rule 2)
    assert [(row["value"], row["users"]) for row in sp["purchased"]["rows"]] == [(OTHER, 5)]
    assert sp["mean_price_bought"] == pytest.approx((3 * 10 + 2 * 20) / 5)
    assert audience_insight(t, "p", min_group=6)["spending_power"]["purchased"] is None


def test_influencers_within_the_window() -> None:
    r = audience_insight(hand_made(), "p", min_group=3)
    # u0 bought a at T0+2h; friends u1, u2 (T0+1d) and u4 (T0+2d) followed within 7 days, u3 (T0+10d) did not
    (row,) = r["influencers"]["categories"]
    assert row == {"category": "a", "influencers": 1, "followers": 3, "followed_purchases": 3,
                   "named": [{"user_id": U[0], "followers": 3}]}
    narrow = audience_insight(hand_made(), "p", min_group=3, influence_window="1D")  # u4 is 46h after u0
    assert narrow["influencers"]["categories"] == [] and narrow["influencers"]["suppressed"] == 1


def test_privacy_no_user_id_unless_named_influencer_and_small_audiences_get_sizes_only() -> None:
    t = hand_made()
    text = json.dumps(audience_insight(t, "p", min_group=3))
    assert [u for u in U if u in text] == [U[0]]  # only the influencer followed by >= min_group friends
    text4 = json.dumps(audience_insight(t, "p", min_group=4))
    assert not [u for u in U if u in text4]
    small = audience_insight(t, "p", min_group=13)  # 12 audience users
    assert small["size"]["audience_users"] == 12 and small["profile"] is None and small["top"] is None
    assert small["influencers"] is None and "smaller than min_group" in small["notes"][0]


def test_merge_small_rule() -> None:
    assert merge_small(pd.Series({"a": 5, "b": 1}), 3) == ([], ["b", "a"])  # b alone (1 < 3) is topped up with a
    assert merge_small(pd.Series({"a": 5, "b": 4, "c": 1, "d": 2}), 3) == (["a", "b"], ["c", "d"])
    assert merge_small(pd.Series({"a": 1, "b": 1}), 3) is None
    assert wilson(0, 0) == (None, None) and wilson(0, 3)[0] == 0.0 and wilson(3, 3)[1] == 1.0  # exact at the ends


def test_bad_input_errors() -> None:
    t = hand_made()
    with pytest.raises(DataValidationError, match="did you mean 'p'"):
        audience_insight(t, "P", min_group=3)
    with pytest.raises(ConfigError, match="min_group"):
        audience_insight(t, "p", min_group=0)
    with pytest.raises(DataValidationError, match="'events' and 'items'"):
        audience_insight({"events": t["events"]}, "p")
    with pytest.raises(DataValidationError, match="lacks columns"):
        audience_insight({**t, "events": t["events"].drop(columns="media_id")}, "p")


def test_fixture_bundle_report_is_json() -> None:
    import recsys
    from tests.test_service_support import V1

    r = audience_insight(recsys.load(V1), "app-0", min_group=5)
    json.dumps(r, allow_nan=False)  # JSON-able, no NaN
    assert r["size"]["audience_users"] >= 5 and r["profile"]["gender"]["users"] == r["size"]["audience_users"]
    for row in r["top"]["category"]["rows"]:
        assert row["users"] >= 5


def test_plots_of_a_full_and_a_suppressed_report(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from recsys.partners.plots import insight_plots

    t = hand_made()
    names = [p.name for p in insight_plots(audience_insight(t, "p", min_group=3), tmp_path / "full")]
    # the network's CTR has no interval (more clicks than impressions): drawn without an error bar
    assert names == ["insight_profile.png", "insight_spending.png", "insight_top.png", "insight_rates.png"]
    assert insight_plots(audience_insight(t, "p", min_group=13), tmp_path / "small") == []
