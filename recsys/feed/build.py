"""Assembling a serving state from fitted components and serving tables (the one constructor of ServingState)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.feed.catalogue import Catalogue
from recsys.feed.fallback import PopularItems
from recsys.feed.partners import known_partners, whole_catalogue_pools
from recsys.feed.state import (
    EVENT_COLUMNS,
    ServingConfig,
    ServingState,
    pool_masks,
    sync_index,
    vocab_positions,
)
from recsys.feed.users import UserState
from recsys.models.encode import embed_items

__all__ = ["build_state"]


def build_state(*, pipeline: Any, model: Any, index: Any, ranker: Any, builder: Any, items: pd.DataFrame,
                events: pd.DataFrame, users: pd.DataFrame | None, social: pd.DataFrame | None,
                media: pd.DataFrame | None, media_pools: pd.DataFrame | None, config: ServingConfig,
                popular: PopularItems | None = None, item_emb: np.ndarray | None = None,
                builder_params: dict | None = None, removed: np.ndarray | None = None,
                open_pools: Any = None, benefits: pd.DataFrame | None = None) -> ServingState:
    """Assemble a serving state from fitted components and the serving tables (``removed``: ids already
    removed from the catalogue, kept for their positions; ``open_pools``: partners whose pool is the whole
    catalogue, None to take those whose ``media_pools`` rows list every item, see :func:`whole_catalogue_pools`;
    ``benefits``: partner coupons, :mod:`recsys.features.benefits`)."""
    from recsys.models.rankers.objectives import partner_objectives

    catalogue = Catalogue.from_items(items)
    if removed is not None and len(removed):
        catalogue, _ = catalogue.without(removed)
    if item_emb is None:
        item_emb = embed_items(model, pipeline, catalogue.frame)
    if index is None:
        from recsys.index import ExactIndex

        index = ExactIndex(metric="ip").build(item_emb, catalogue.ids)
    sync_index(index, catalogue)
    ev = events[[c for c in EVENT_COLUMNS if c in events.columns]].reset_index(drop=True)
    user_state = UserState(pipeline, ev, users, catalogue, segment_column=config.segment_column)
    objectives = partner_objectives(media) if media is not None and "objective" in media.columns else {}
    popular = popular or PopularItems().fit(ev, users, segment_column=config.segment_column)
    as_of = pd.Timestamp(ev["timestamp"].max()) + pd.Timedelta(1, "ns") if len(ev) else pd.Timestamp(0)
    tables = {"events": ev, "users": users, "social": social, "media": media, "media_pools": media_pools,
              "benefits": benefits}
    pools = pool_masks(media_pools, catalogue)
    open_pools = whole_catalogue_pools(pools, catalogue) if open_pools is None else frozenset(map(str, open_pools))
    state = ServingState(pipeline=pipeline, model=model, index=index, ranker=ranker, builder=builder,
                         catalogue=catalogue, item_emb=np.ascontiguousarray(item_emb, dtype=np.float32),
                         users=user_state, pools=pools, objectives=objectives, open_pools=open_pools & set(pools),
                         popular=popular, config=config, as_of=as_of,
                         tables={k: v for k, v in tables.items() if v is not None},
                         vocab_to_pos=vocab_positions(pipeline, catalogue), builder_params=builder_params)
    from recsys.feed.item_score import ranker_uses

    if config.item_to_item or ranker_uses(ranker):  # the channel, or a ranker trained on its score
        from recsys.feed.item_table import history_table

        state.item_table = history_table(user_state.history, state.vocab_to_pos, len(catalogue))
    if config.friends:
        from recsys.feed.friends import FriendGraph

        state.friend_graph = FriendGraph.build(social, user_state)
    state.candidate_features()  # built now, not on the first request
    known_partners(state)  # the partners and per-partner histories, built now too
    state.folded_tower()
    return state
