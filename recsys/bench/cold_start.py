"""Cold start: items that arrive after training get embeddings from their content alone.

A new item id maps to the out-of-vocabulary row, so its embedding is the OOV id vector plus its
category, brand, shop, price band and title words; training with ``item_id_dropout`` teaches the
content part to stand alone. :func:`measure_cold_start` shows how well that works on the synthetic
affiliate world: recall of cold items (never seen in training) next to warm ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys.features.pipeline import FeaturePipeline
from recsys.models.encode import embed_items

__all__ = ["measure_cold_start"]


def _recall(top: np.ndarray, targets: list[set], k: int) -> float:
    vals = [len(set(row[:k].tolist()) & t) / len(t) for row, t in zip(top, targets, strict=True) if t]
    return float(np.mean(vals)) if vals else float("nan")


def measure_cold_start(*, n_events: int = 200_000, seed: int = 0, dim: int = 32, epochs: int = 8,
                       cold_fraction: float = 0.2, k: int = 50, item_id_dropout: float = 0.5,
                       use_content: bool = True, world: Any = None) -> dict[str, Any]:
    """Recall@k of cold vs warm items for warm users on a time split of the synthetic world.

    Cold items: a random ``cold_fraction`` of the catalogue plus every item first available after
    the cut; all their training events are dropped and they are unknown to the fitted pipeline.
    ``use_content=False`` is the ablation: an ids-only item tower, where every cold item gets the
    same OOV vector.
    After training, their content-only embeddings are *added* to an exact index holding the warm
    items, and each test user's top-k over the whole index is compared with their test positives.
    """
    from recsys.datasets.synthetic import generate_world

    world = world or generate_world(n_events, seed=seed, progress=False)
    train, test, cold_mask, cold_ids = _cold_split(world, seed, cold_fraction)
    items = world.items
    warm_items, cold_items = items[~cold_mask], items[cold_mask]
    pipe, model = _fit(world, train, warm_items, use_content=use_content, dim=dim, item_id_dropout=item_id_dropout,
                       epochs=epochs, seed=seed)
    index = _warm_then_cold_index(model, pipe, warm_items, cold_items)
    users, top, by_user = _top_k(model, pipe, index, world, train, test, k)
    cold_t = [s & cold_ids for s in by_user]
    warm_t = [s - cold_ids for s in by_user]
    n_all = len(items)
    return {
        "k": k, "n_items": n_all, "n_cold_items": len(cold_ids), "n_test_users": len(users),
        "n_cold_test_pairs": int(sum(map(len, cold_t))), "n_warm_test_pairs": int(sum(map(len, warm_t))),
        f"recall@{k}_warm": _recall(top, warm_t, k), f"recall@{k}_cold": _recall(top, cold_t, k),
        f"recall@{k}_random": k / n_all, "use_content": use_content, "item_id_dropout": item_id_dropout,
        "epochs": epochs, "dim": dim,
        "n_events": len(world.events), "seed": seed,
    }


def _cold_split(world: Any, seed: int, cold_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, set]:
    """Time split of the events; the cold items (a random share plus every late arrival) and, without their
    events, the training events."""
    from recsys.datasets.splits import time_split

    train, test = time_split(world.events, test_fraction=0.2)
    cut = test["timestamp"].min()
    rng = np.random.default_rng(seed)
    items = world.items
    held = rng.random(len(items)) < cold_fraction
    cold_mask = held | (items["available_from"] >= cut).to_numpy()
    cold_ids = set(items.loc[cold_mask, "item_id"].tolist())
    train = train[~train["item_id"].isin(cold_ids)]
    return train, test, cold_mask, cold_ids


def _fit(world: Any, train: pd.DataFrame, warm_items: pd.DataFrame, *, use_content: bool, dim: int,
         item_id_dropout: float, epochs: int, seed: int) -> tuple[FeaturePipeline, Any]:
    """The feature pipeline and the two-tower (the QUICK_FIT preset, mean history) fitted on the warm items."""
    from recsys.fit.two_tower import train_two_tower
    from recsys.fit.two_tower_settings import QUICK_FIT

    content = {} if use_content else {"item_categoricals": (), "price_column": None, "title_column": None}
    pipe = FeaturePipeline(user_categoricals=("age_bucket", "gender", "city_tier"), **content)
    pipe.fit(train, warm_items, world.users)
    data = pipe.training_data(train, warm_items, world.users)
    settings = replace(QUICK_FIT, dim=dim, history="mean", item_id_dropout=item_id_dropout, epochs=epochs,
                       batch_size=512, lr=0.005, num_negatives=512, seed=seed, device="auto")
    model = train_two_tower(settings, data, sizes=pipe.tower_sizes(), progress=False).model
    return pipe, model


def _warm_then_cold_index(model: Any, pipe: FeaturePipeline, warm_items: pd.DataFrame, cold_items: pd.DataFrame):
    """An exact index built on the warm items, the cold items' content-only embeddings added after training."""
    from recsys.index import ExactIndex

    catalogue = pipe.catalogue(warm_items)
    index = ExactIndex(metric="ip").build(embed_items(model, pipe, catalogue), catalogue["item_id"].tolist())
    index.add(embed_items(model, pipe, cold_items), cold_items["item_id"].tolist())
    return index


def _top_k(model: Any, pipe: FeaturePipeline, index: Any, world: Any, train: pd.DataFrame, test: pd.DataFrame,
           k: int) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Warm test users, their top-k over the whole index (items they saw in training left out) and their new
    test positives."""
    positive = test["event_type"].astype(str).isin(pipe.positive_events)
    seen = train[train["event_type"].astype(str).isin(pipe.positive_events)].groupby("user_id")["item_id"].agg(set)
    test_pos = test[positive & test["user_id"].isin(seen.index)]
    test_pos = test_pos[[i not in seen[u] for u, i in zip(test_pos["user_id"], test_pos["item_id"], strict=True)]]
    users = test_pos["user_id"].drop_duplicates().to_numpy()
    media = pipe._dominant_media(train, users)
    with torch.no_grad():
        model.eval()
        q = model.user_embeddings(pipe.encode_users(users, events=train, users=world.users, media_ids=media)).numpy()
    max_seen = int(seen.reindex(users).map(len).max())
    _, top = index.search(q, k + max_seen)
    top = np.array([[i for i in row if i not in seen[u]][:k] for row, u in zip(top.tolist(), users, strict=True)],
                   dtype=object)
    by_user = test_pos.groupby("user_id")["item_id"].agg(set).reindex(users)
    return users, top, by_user
