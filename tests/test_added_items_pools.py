"""Items added after fit reach the partners they should: a new item without pool rows joins every partner whose
pool is the whole catalogue (app-0, app-1 in the synthetic world) and no restricted pool (guide-0); an item with
``media_pools`` rows joins exactly those partners; both survive a save and a load."""

from __future__ import annotations

import pandas as pd
import pytest

import recsys
from recsys.errors import DataValidationError
from tests.test_recommender import fitted, world

WHOLE = {"app-0", "app-1"}  # content apps: their media_pools rows list every item of the synthetic world


def _partners(rec, item_id) -> set:
    """The partners whose pool holds ``item_id``."""
    state = rec._state
    pos = int(state.catalogue.positions([item_id])[0])
    return {m for m, mask in state.pools.items() if mask[pos]}


def _twins() -> pd.DataFrame:
    """Two never-seen items with the same content (so each is the other's nearest neighbour)."""
    w = world()
    src = w.items[w.items["in_stock"] & (w.items["eligibility"] == "")].iloc[5]
    return pd.DataFrame([src, src]).assign(item_id=[20_000, 20_001])


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    """A copy of the fitted Recommender (through a bundle: its index is its own) with the twins added."""
    rec = recsys.load(fitted().save(tmp_path_factory.mktemp("pools") / "before"))
    rec.add_items(_twins(), media_pools=pd.DataFrame({"media_id": ["guide-0", "kol-0"], "item_id": [20_001] * 2}))
    return rec


def test_whole_catalogue_partners_are_found_at_fit():
    assert fitted()._state.open_pools == WHOLE


def test_an_item_without_pool_rows_reaches_whole_catalogue_partners_only(added):
    assert _partners(added, 20_000) == WHOLE
    assert added.similar_items(20_001, k=3, media_id="app-0").item_ids[0] == 20_000  # served there
    assert 20_000 not in added.similar_items(20_001, k=20, media_id="guide-0").item_ids  # restricted pool


def test_an_item_with_pool_rows_reaches_exactly_those_partners(added):
    assert _partners(added, 20_001) == {"guide-0", "kol-0"}
    assert added.similar_items(20_000, k=3, media_id="guide-0").item_ids[0] == 20_001
    assert 20_001 not in added.similar_items(20_000, k=20, media_id="app-0").item_ids


def test_pool_memberships_and_whole_catalogue_partners_survive_save_and_load(added, tmp_path):
    loaded = recsys.load(added.save(tmp_path / "after"))
    assert loaded._state.open_pools == WHOLE
    assert _partners(loaded, 20_000) == WHOLE and _partners(loaded, 20_001) == {"guide-0", "kol-0"}
    # app-0 no longer lists 20_001, yet it is still a whole-catalogue partner for the next new item
    loaded.add_items(_twins().iloc[:1].assign(item_id=20_002))
    assert _partners(loaded, 20_002) == WHOLE


def test_media_pools_without_its_columns_is_refused(added):
    with pytest.raises(DataValidationError, match="media_id"):
        added.add_items(_twins().assign(item_id=[20_003, 20_004]), media_pools=pd.DataFrame({"item": [20_003]}))


def test_a_row_for_a_partner_without_a_pool_does_not_restrict_it(tmp_path):
    """A partner with no pool sees the whole catalogue; a media_pools row naming it must not shrink that
    to a one-item pool (it used to: the row created a pool holding only the new item)."""
    rec = recsys.load(fitted().save(tmp_path / "nopool"))
    tables = rec._state.tables  # site-x: a partner of the media table without pool rows (a known partner)
    rec._state = rec._state.evolve(tables={**tables, "media": pd.concat([tables["media"], pd.DataFrame(
        {"media_id": ["site-x"], "kind": ["content_app"], "objective": ["clicks"]})], ignore_index=True)})
    assert "site-x" not in rec._state.pools
    before = rec.recommend(int(world().events["user_id"].iloc[0]), k=10, media_id="site-x").item_ids
    rec.add_items(_twins().iloc[:1].assign(item_id=20_003),
                  media_pools=pd.DataFrame({"media_id": ["site-x"], "item_id": [20_003]}))
    assert "site-x" not in rec._state.pools
    assert len(rec.recommend(int(world().events["user_id"].iloc[0]), k=10, media_id="site-x")) == len(before) == 10
