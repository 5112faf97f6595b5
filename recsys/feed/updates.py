"""Catalogue updates: new items enter the index from their content features; removed items vanish at once.

Each update builds a new :class:`~recsys.feed.state.ServingState` (the index updates itself
atomically) and the Recommender swaps it in, so a request in flight finishes on the old one. The
Recommender runs one update at a time on the latest state (:meth:`recsys.Recommender._update`).

Updates take the training data contract: added items and their pool rows go through
:func:`recsys.features.schema.validate_items` / ``validate_media_pools``, stock flags must be booleans.
Everything is checked before anything changes, so a refused update leaves the state and the index as they
were. The index is shared by every state: a request on an older state reads it through that state's
catalogue (unknown, removed and out-of-stock positions are filtered there), so it never sees half an update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.feed.state import (
    ServingState,
    builder_events,
    builder_items,
    sync_index,
    vocab_positions,
)
from recsys.models.encode import embed_items

__all__ = ["add_items", "remove_items", "set_in_stock"]


def add_items(state: ServingState, items: pd.DataFrame, media_pools: pd.DataFrame | None = None) -> ServingState:
    """A state with ``items`` added (or replaced) and their partner-pool memberships.

    ``media_pools`` rows (media_id, item_id) put items in those partners' pools. A new item without any row
    joins every partner whose pool is the whole catalogue (``state.open_pools``) and no restricted pool; a
    replaced item keeps its memberships. Memberships go into the media_pools table, so a saved bundle keeps them.
    Rows for a partner without a pool are dropped: such a partner sees the whole catalogue, new items
    included, and a row must not turn it into a one-item pool (pools are defined when the state is built).
    """
    items, media_pools = checked_items(state, items, media_pools)
    if items is None:
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
    emb = embed_items(state.model, state.pipeline, items)
    item_emb = np.zeros((len(catalogue), emb.shape[1]), np.float32)
    item_emb[: len(state.item_emb)] = state.item_emb
    item_emb[pos] = emb
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
            builder_events(tables["events"]), builder_items(catalogue.to_frame(False)), tables.get("social"),
            tables.get("benefits"))
    vocab_to_pos = vocab_positions(state.pipeline, catalogue)
    state.index.add(emb, items["item_id"].to_numpy())  # last: whatever could fail has run
    sync_index(state.index, catalogue, pos)
    return state.evolve(catalogue=catalogue, item_emb=item_emb, pools=pools, tables=tables, builder=builder,
                        vocab_to_pos=vocab_to_pos)


def checked_items(state: ServingState, items: Any, media_pools: Any) -> tuple[pd.DataFrame | None, Any]:
    """``items`` and ``media_pools`` held to the training contract (cleaned as training cleans them), with item
    ids of the catalogue's type and pool rows naming added or known items; ``(None, None)`` for no items."""
    from recsys.features.schema import validate_items, validate_media_pools
    from recsys.features.validation import check_columns
    from recsys.ids import id_kind

    if not isinstance(items, pd.DataFrame):
        raise DataValidationError(f"add_items takes a DataFrame of items, got {type(items).__name__}")
    if media_pools is not None and not isinstance(media_pools, pd.DataFrame):
        raise DataValidationError(f"media_pools must be a DataFrame with columns 'media_id' and 'item_id' (one row "
                                  f"per partner and item), got {type(media_pools).__name__}")
    if media_pools is not None:
        check_columns("media_pools", media_pools, ("media_id", "item_id"))
    if not len(items):
        return None, None
    items = validate_items(items)
    kind, new = id_kind(state.catalogue.index), id_kind(pd.Index(items["item_id"]))
    if kind != "any" and new != kind:
        raise DataValidationError(f"items: column 'item_id' holds {new} ids ({items['item_id'].head(3).tolist()}) "
                                  f"but this Recommender's item ids are {kind}s.\nFix: pass ids of the same type, "
                                  f"e.g. items['item_id'] = items['item_id'].astype({'int64' if kind == 'int' else 'str'}).")
    if media_pools is None or not len(media_pools):
        return items, None
    media_pools = validate_media_pools(media_pools)
    known = media_pools["item_id"].isin(items["item_id"]).to_numpy() | (
        state.catalogue.positions(media_pools["item_id"].to_numpy()) >= 0)
    if not known.all():
        raise DataValidationError(f"media_pools: column 'item_id' names items that are neither added nor in the "
                                  f"catalogue, e.g. {media_pools.loc[~known, 'item_id'].head(5).tolist()}.\nFix: add "
                                  "those items in the same call, or drop their rows.")
    return items, media_pools


def remove_items(state: ServingState, ids: tuple) -> tuple[ServingState, int]:
    """A state without ``ids`` (unknown ids ignored) and how many were removed."""
    pos = state.catalogue.live_positions(list(ids))
    catalogue, n = state.catalogue.without(ids)
    if n:
        state.index.remove(state.catalogue.ids[pos])
    return (state.evolve(catalogue=catalogue) if n else state), n


def set_in_stock(state: ServingState, ids: tuple, in_stock) -> ServingState:
    """A state with the stock flag of ``ids`` set (one bool or one per id; unknown ids ignored)."""
    flags = stock_flags(in_stock, len(ids))
    catalogue = state.catalogue.with_stock(list(ids), flags)
    pos = state.catalogue.positions(list(ids))
    known = pos >= 0
    if known.any():
        state.index.set_item_attributes(state.catalogue.ids[pos[known]], in_stock=flags[known])
    return state.evolve(catalogue=catalogue)


_FLAGS_FIX = ("pass True or False (1 or 0) for every id, or one such flag per id, e.g. set_in_stock([33, 34], "
              "[True, False]); text such as 'no' is not read as False: convert it first")


def _is_flag(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) or (
        isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value in (0, 1))


def stock_flags(in_stock: Any, n: int) -> np.ndarray:
    """``in_stock`` as ``n`` bools: one flag for every id, or a sequence of ``n`` flags. A flag is a bool or the
    int 0 / 1; anything else (strings, floats, NaN, None, a length other than ``n``) raises DataValidationError."""
    if isinstance(in_stock, np.ndarray) and in_stock.ndim == 0:
        in_stock = in_stock.item()
    if _is_flag(in_stock):
        return np.full(n, bool(in_stock))
    if isinstance(in_stock, (str, bytes, Mapping)) or not isinstance(in_stock, Iterable):
        raise DataValidationError(f"in_stock must be a bool or a sequence of bools, got {type(in_stock).__name__} "
                                  f"{in_stock!r}; {_FLAGS_FIX}")
    raw = in_stock.to_numpy() if isinstance(in_stock, pd.Series) else in_stock
    if isinstance(raw, np.ndarray) and raw.ndim == 1 and len(raw) == n and (  # whole arrays: no loop
            raw.dtype == bool or raw.dtype.kind in "iu" and bool(np.isin(raw, (0, 1)).all())):
        return raw.astype(bool)
    arr = np.asarray(list(raw) if not isinstance(raw, np.ndarray) else raw, dtype=object)
    if arr.ndim != 1:
        raise DataValidationError(f"in_stock must be a flat sequence of flags, got shape {arr.shape}; {_FLAGS_FIX}")
    if len(arr) != n:
        raise DataValidationError(f"in_stock has {len(arr)} flag(s) for {n} id(s); {_FLAGS_FIX}")
    bad = [i for i, v in enumerate(arr) if not _is_flag(v)]
    if bad:
        v = arr[bad[0]]
        raise DataValidationError(f"in_stock[{bad[0]}] is {type(v).__name__} {v!r}, not a bool ({len(bad)} of {n} "
                                  f"flags are not); {_FLAGS_FIX}")
    return arr.astype(bool)


def set_benefits(state: ServingState, benefits: Any) -> tuple[ServingState, int]:
    """A state whose partner benefits are ``benefits`` (a whole new table: coupons added, changed or ended take
    effect together; an empty table removes every benefit), validated and checked against the catalogue first so
    a refused table changes nothing. The ranker's features and the objectives follow at once."""
    import copy

    from recsys.features.benefits import BenefitTable, validate_benefits

    frame = validate_benefits(benefits) if benefits is not None and len(benefits) else None
    if frame is not None:
        unknown = ~frame["item_id"].isin(state.catalogue.ids[state.catalogue.alive])
        if unknown.any():
            ids = pd.unique(frame.loc[unknown, "item_id"])[:5].tolist()
            raise DataValidationError(f"benefits: item ids {ids} are not in the live catalogue.\nFix: add those items "
                                      "first (add_items), or drop their benefits.")
    tables = {k: v for k, v in state.tables.items() if k != "benefits"}
    if frame is not None:
        tables["benefits"] = frame
    builder = state.builder
    if builder is not None:
        builder = copy.copy(builder)  # shares the fitted indexes; only the benefits differ
        builder.benefits_ = None if frame is None else BenefitTable.build(frame, builder.items_.index, strict=False)
    new = state.evolve(tables=tables, builder=builder)
    new.candidate_features()  # built now, under the update lock, not by the first request
    return new, 0 if frame is None else len(frame)
