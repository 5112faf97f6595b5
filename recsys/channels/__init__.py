"""Recall channels (多路召回) behind one interface, and their fused score.

- :mod:`recsys.channels.base`: the :class:`Channel` protocol (``fit``, ``candidates``, ``scores``) and the two
  ways a channel is served (an item index over embeddings, an item-to-item table);
- :mod:`recsys.channels.channels`: two-tower, graph filter, item-to-item, partner-popular, friends;
- :mod:`recsys.channels.fusion`: standardised scores summed with weights chosen on validation
  (:func:`fit_fusion_weights`);
- :mod:`recsys.channels.two_tower_fit`: the two-tower fitted for validation and for serving, cacheable.

A package of its own, beside ``recsys.models`` (what scores) and ``recsys.index`` (what searches): a channel
composes a model with a way of serving it. The channels and their fusion are what ``recsys benchmark retrieval``
measures (``recsys.bench.retrieval``, ``recsys.bench.retrieval_pipeline``). The
:class:`~recsys.recommender.Recommender` serves channels of its own: the two-tower through its index, an
item-to-item table when ``item_to_item`` is set (:mod:`recsys.feed.item_table`, the same table as
:class:`ItemToItemChannel`, built over catalogue positions from the serving log), friends' items on the partner
when ``friends`` is set (:mod:`recsys.feed.friends`) and the partner's popular items (the backfill tier); the
graph filter is not among them.
"""

from recsys.channels.base import Channel, EmbeddingServing, ItemTableServing
from recsys.channels.channels import (
    FriendsChannel,
    GraphFilterChannel,
    ItemToItemChannel,
    PopularChannel,
    TwoTowerChannel,
)
from recsys.channels.fusion import FusedScorer, FusionFit, fit_fusion_weights, standardise

__all__ = ["Channel", "EmbeddingServing", "ItemTableServing", "TwoTowerChannel", "GraphFilterChannel",
           "ItemToItemChannel", "PopularChannel", "FriendsChannel", "FusedScorer", "FusionFit", "fit_fusion_weights",
           "standardise"]
