"""Catalogue updates: new items enter the index from their content features; removed items vanish at once.

Each update builds a new :class:`~recsys.serve.state.ServingState` (the index updates itself
atomically) and the Recommender swaps it in, so a request in flight finishes on the old one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.serve.state import (
    ServingState,
    _vocab_positions,
    builder_events,
    builder_items,
    item_embeddings,
    sync_index,
)

__all__ = ["add_items", "remove_items", "set_in_stock"]


def add_items(state: ServingState, items: pd.DataFrame, media_pools: pd.DataFrame | None = None) -> ServingState:
    """A state with ``items`` added (or replaced) and their partner-pool memberships.

    ``media_pools`` rows (media_id, item_id) put items in those partners' pools. A new item without any row
    joins every partner whose pool is the whole catalogue (``state.open_pools``) and no restricted pool; a
    replaced item keeps its memberships. Memberships go into the media_pools table, so a saved bundle keeps them.
    Rows for a partner without a pool are dropped: such a partner sees the whole catalogue, new items
    included, and a row must not turn it into a one-item pool (pools are defined when the state is built).
    """
    if not isinstance(items, pd.DataFrame):
        raise DataValidationError(f"add_items takes a DataFrame of items, got {type(items).__name__}")
    if media_pools is not None and not {"media_id", "item_id"} <= set(media_pools.columns):
        raise DataValidationError(f"media_pools needs columns 'media_id' and 'item_id' (one row per partner and "
                                  f"item); got {list(media_pools.columns)}")
    if not len(items):
        return state
    if media_pools is not None:  # a partner without a pool already sees every item: a row must not restrict it
        media_pools = media_pools[media_pools["media_id"].astype(str).isin(list(state.pools))]
    items = items.reset_index(drop=True)
    catalogue, pos = state.catalogue.with_items(items)
    unlisted = (pos >= len(state.catalogue)) & ~items["item_id"].isin(
        media_pools["item_id"] if media_pools is not None else []).to_numpy()
    if state.open_pools and unlisted.any():  # new items without pool rows: every whole-catalogue partner
        ids = items["item_id"].to_numpy()[unlisted]
        joined = pd.DataFrame({"media_id": np.repeat(sorted(state.open_pools), len(ids)),
                               "item_id": np.tile(ids, len(state.open_pools))})
        media_pools = joined if media_pools is None else pd.concat([media_pools[["media_id", "item_id"]], joined],
                                                                   ignore_index=True)
    emb = item_embeddings(state.pipeline, state.model, items)
    item_emb = np.zeros((len(catalogue), emb.shape[1]), np.float32)
    item_emb[: len(state.item_emb)] = state.item_emb
    item_emb[pos] = emb
    state.index.add(emb, items["item_id"].to_numpy())
    sync_index(state.index, catalogue, pos)
    pools = {m: np.concatenate([mask, np.zeros(len(catalogue) - len(mask), bool)]) for m, mask in state.pools.items()}
    if media_pools is not None and len(media_pools):
        for media, part in media_pools.groupby(media_pools["media_id"].astype(str)):
            mask = pools.setdefault(str(media), np.zeros(len(catalogue), bool))
            p = catalogue.positions(part["item_id"].to_numpy())
            mask[p[p >= 0]] = True
    tables = dict(state.tables)
    if media_pools is not None and len(media_pools):
        old = tables.get("media_pools")
        tables["media_pools"] = pd.concat([old, media_pools[["media_id", "item_id"]]], ignore_index=True) \
            if old is not None else media_pools[["media_id", "item_id"]].reset_index(drop=True)
    builder = state.builder
    if builder is not None:  # the ranker's features need the new items' price, brand, shop, ...
        from recsys.features.ranking_features import RankingFeatureBuilder

        builder = RankingFeatureBuilder(**state.builder_params).fit(
            builder_events(tables["events"]), builder_items(catalogue.to_frame(False)), tables.get("social"))
    return state.evolve(catalogue=catalogue, item_emb=item_emb, pools=pools, tables=tables, builder=builder,
                        vocab_to_pos=_vocab_positions(state.pipeline, catalogue))


def remove_items(state: ServingState, ids: tuple) -> tuple[ServingState, int]:
    """A state without ``ids`` (unknown ids ignored) and how many were removed."""
    pos = state.catalogue.live_positions(list(ids))
    catalogue, n = state.catalogue.without(ids)
    if n:
        state.index.remove(state.catalogue.ids[pos])
    return (state.evolve(catalogue=catalogue) if n else state), n


def set_in_stock(state: ServingState, ids: tuple, in_stock) -> ServingState:
    """A state with the stock flag of ``ids`` set (one bool or one per id; unknown ids ignored)."""
    flags = np.broadcast_to(np.asarray(in_stock, dtype=bool), (len(ids),))
    catalogue = state.catalogue.with_stock(list(ids), flags)
    pos = state.catalogue.positions(list(ids))
    known = pos >= 0
    if known.any():
        state.index.set_item_attributes(state.catalogue.ids[pos[known]], in_stock=flags[known])
    return state.evolve(catalogue=catalogue)
