"""One partner never sees another's data (issue 16 item 6): an unknown or misspelt partner id never widens
the feed, reasons cite only the partner's own events, and segments come from the users table.

Uses the shared 30k-event world and fitted Recommender of :mod:`tests.test_recommender`.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.errors import ConfigError, DataValidationError
from recsys.feed.state import ServingConfig
from tests.test_recommender import fitted, world

FIXTURE_V1 = Path(__file__).resolve().parent / "fixtures" / "bundles" / "v1"


def _variant(pools: dict | None = None, **config):
    """A copy of the fitted Recommender serving with other settings (and partner pools)."""
    rec = fitted()
    clone = copy.copy(rec)
    state = rec._state
    changes = {"pools": pools} if pools is not None else {}
    clone._state = state.evolve(config=replace(state.config, **config), **changes)
    for name, value in config.items():
        setattr(clone, name, value)
    return clone


def _pool(media: str) -> set:
    pools = world().media_pools
    return set(pools.loc[pools["media_id"] == media, "item_id"])


@pytest.mark.parametrize("typo", ["kol-0 ", "KOL-0", "kol0"])
def test_a_misspelt_partner_is_refused_and_the_error_names_the_closest_one(typo):
    rec = fitted()
    with pytest.raises(DataValidationError, match=rf"unknown media_id {typo!r}; did you mean 'kol-0'\? \(the known "
                                                  r"partners are 'app-0', 'app-1', 'guide-0'"):
        rec.recommend(3, k=20, media_id=typo)
    with pytest.raises(DataValidationError, match=rf"user_id 5: unknown media_id {typo!r}"):
        rec.recommend_batch(pd.DataFrame({"user_id": [3, 5], "media_id": ["kol-0", typo]}), k=5)
    with pytest.raises(DataValidationError, match="did you mean 'kol-0'"):
        rec.similar_items(12, k=5, media_id=typo)
    assert set(rec.recommend(3, k=20, media_id="kol-0").item_ids) <= _pool("kol-0")


def test_shared_mode_serves_an_unknown_partner_only_what_every_partner_may_show():
    rec = fitted()
    n = len(rec._state.catalogue)
    rng = np.random.default_rng(0)
    a, b = rng.random(n) < 0.6, rng.random(n) < 0.6  # two pools overlapping on about a third of the items
    shared = _variant({"pa": a, "pb": b}, unknown_partner="shared")
    cat = shared._state.catalogue
    feed = shared.recommend(3, k=n, media_id="kol-0 ")
    inside = set(cat.ids[a & b])
    assert len(feed) > 10 and set(feed.item_ids) <= inside
    assert feed.notes[0].startswith(f"unknown media_id 'kol-0 '; did you mean 'kol-0'?: served only the "
                                    f"{int((a & b & cat.alive).sum())} items every partner may show")
    # the partners of the media table have no pool here: known, so unrestricted (they widen nothing)
    assert not set(shared.recommend(3, k=n, media_id="kol-0").item_ids) <= inside
    assert set(shared.similar_items(12, k=n, media_id="nobody").item_ids) <= inside
    # the synthetic world's own pools share no item: an unknown partner gets an empty feed, never kol-0's pool
    empty = _variant(unknown_partner="shared").recommend(3, k=20, media_id="kol-0 ")
    assert len(empty) == 0 and "served only the 0 items every partner may show" in empty.notes[0]


def test_no_partner_is_served_as_configured():
    rec = fitted()
    n = len(rec._state.catalogue)
    assert len(rec.recommend(3, k=n).item_ids) > len(_pool("guide-0"))  # "catalogue": every item
    pools = {"pa": np.arange(n) % 2 == 0, "pb": np.arange(n) % 3 == 0}
    shared = _variant(pools, no_partner="shared")
    feed = shared.recommend(3, k=n)
    assert len(feed) and set(feed.item_ids) <= set(shared._state.catalogue.ids[np.arange(n) % 6 == 0])
    with pytest.raises(DataValidationError, match="media_id is required"):
        _variant(no_partner="refuse").recommend(3, k=5)
    with pytest.raises(ConfigError, match="unknown_partner must be one of"):
        ServingConfig(unknown_partner="allow")


def test_a_context_segment_unlocks_nothing_for_a_known_user_and_only_trusted_for_an_unknown_one():
    rec = fitted()
    w = world()
    vip_items = set(w.items.loc[w.items["eligibility"] == "vip", "item_id"])
    regular = int(w.users.loc[w.users["segment"] == "regular", "user_id"].iloc[0])
    k = len(rec._state.catalogue)  # app-0's pool is the whole catalogue: every eligible item comes back
    feed = rec.recommend(regular, k=k, media_id="app-0", context={"segment": "vip"})
    assert not vip_items & set(feed.item_ids)
    assert "context segment 'vip' ignored: a known user's segment comes from the users table ('regular')" in feed.notes
    new = rec.recommend("someone-new", k=k, media_id="app-0", context={"segment": "vip"})
    assert not vip_items & set(new.item_ids) and any("trust_context_segment=True" in m for m in new.notes)
    trusted = _variant(trust_context_segment=True)
    assert vip_items & set(trusted.recommend("someone-new", k=k, media_id="app-0", context={"segment": "vip"}).item_ids)
    # even a trusting Recommender takes a known user's segment from the users table
    assert not vip_items & set(trusted.recommend(regular, k=k, media_id="app-0", context={"segment": "vip"}).item_ids)


def test_reasons_on_a_partner_cite_only_the_users_events_on_that_partner():
    rec = fitted()
    ev = world().events
    ev = ev[ev["event_type"].astype(str).isin(rec._state.pipeline.positive_events)]
    users = ev["user_id"].drop_duplicates().head(120).tolist()
    titles = world().items.set_index("item_id")["title"]
    n_viewed = 0
    for media in ("guide-0", "kol-1", "app-1"):
        out = rec.recommend_batch(users, k=20, media_id=media)
        on_media = ev[ev["media_id"] == media]
        for _, r in out[out["reason_code"] == "viewed"].iterrows():
            named = r["reason"].removeprefix("because you viewed ")
            touched = on_media.loc[on_media["user_id"] == r["user_id"], "item_id"].unique()
            assert (titles.reindex(touched).to_numpy() == named).any(), (media, r["user_id"], named)
            n_viewed += 1
    assert n_viewed > 20  # the check had reasons to look at


def test_the_settings_travel_in_the_bundle_and_old_bundles_get_the_safe_defaults(tmp_path):
    import json

    import recsys

    shared = _variant(unknown_partner="shared", no_partner="refuse", trust_context_segment=True)
    shared.save(tmp_path / "b")
    cfg = recsys.load(tmp_path / "b")._state.config
    assert (cfg.unknown_partner, cfg.no_partner, cfg.trust_context_segment) == ("shared", "refuse", True)
    old = json.loads((FIXTURE_V1 / "recommender.json").read_text())["config"]
    assert "unknown_partner" not in old  # the committed v1 bundle predates the settings
    cfg = ServingConfig.from_dict(old)
    assert (cfg.unknown_partner, cfg.no_partner, cfg.trust_context_segment) == ("refuse", "auto", False)
    assert recsys.load(FIXTURE_V1).no_partner == "auto"  # settings written before the key: the safe default too


def test_auto_refuses_no_partner_when_a_pool_is_restricted_and_says_how_to_fix_it(tmp_path):
    import recsys
    from recsys.recommender import Recommender

    assert Recommender().no_partner == ServingConfig().no_partner == "auto"
    auto = _variant(no_partner="auto")  # the world's kol-* and guide-* pools are restricted
    fix = r"Pass the partner's media_id, or build it with no_partner='catalogue' for the network's own pages"
    for call in (lambda r: r.recommend(3, k=5), lambda r: r.recommend_batch([3, 5], k=5),
                 lambda r: r.recommend_ids([3], k=5), lambda r: r.similar_items(12, k=5)):
        with pytest.raises(DataValidationError, match=fix):
            call(auto)
    with pytest.raises(DataValidationError, match=r"partners .*'kol-0'.* have restricted pools .*\(no_partner='auto'\)"):
        auto.recommend(3, k=5)
    assert set(auto.recommend(3, k=20, media_id="kol-0").item_ids) <= _pool("kol-0")  # partners are served
    auto.save(tmp_path / "b")
    loaded = recsys.load(tmp_path / "b")
    assert loaded.no_partner == loaded._state.config.no_partner == "auto"
    with pytest.raises(DataValidationError, match="media_id is required"):
        loaded.recommend(3, k=5)


def test_recsys_train_config_takes_no_partner_and_refuses_unknown_choices():
    from recsys.fit.settings import config_from_dict

    assert config_from_dict({"name": "t"}).recommender.no_partner == "auto"
    assert config_from_dict({"name": "t", "recommender": {"no_partner": "catalogue"}}).recommender.no_partner == \
        "catalogue"
    with pytest.raises(ConfigError, match="no_partner"):
        config_from_dict({"name": "t", "recommender": {"no_partner": "everything"}})


def test_auto_serves_the_catalogue_when_no_pool_is_restricted_and_catalogue_stays_explicit():
    rec = fitted()
    n = len(rec._state.catalogue)
    assert rec._state.config.no_partner == "catalogue"  # explicit: every item, with pools restricted
    explicit = rec.recommend(3, k=n)
    assert len(explicit) > len(_pool("guide-0")) and not any("media_id" in m for m in explicit.notes)
    for pools in ({}, {"pa": np.ones(n, bool)}):  # no pool, or one listing every item: nothing can widen
        feed = _variant(pools, no_partner="auto").recommend(3, k=n)
        assert feed.item_ids == explicit.item_ids and feed.notes == explicit.notes
