"""Train every component a Recommender composes, with small sensible defaults (``Recommender.fit``).

This is the short path for tests, notebooks and the demo; the tracked, configurable pipeline lives in
``recsys train`` (MLflow issue) and hands its fitted components to ``Recommender.from_components``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError

__all__ = ["TrainSettings", "train_components", "profile_columns"]

RANKERS = ("gbdt", "esmm", "none")
INDEXES = ("exact", "faiss", "auto")


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of the quick fit (two-tower, index, ranker; ``ranker_options`` go to the ranker's
    constructor, e.g. ``{"check_leakage": False}``)."""

    dim: int = 32
    epochs: int = 5
    batch_size: int = 512
    lr: float = 5e-3
    temperature: float = 0.1
    item_id_dropout: float = 0.1
    title_buckets: int = 1 << 12
    history_len: int = 50
    index: str = "exact"
    index_factory: str = "HNSW32"
    ranker: str = "gbdt"
    ranker_max_iter: int = 100
    ranker_options: dict = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ranker not in RANKERS:
            raise ConfigError(f"ranker must be one of {RANKERS}, got {self.ranker!r}")
        if self.index not in INDEXES:
            raise ConfigError(f"index must be one of {INDEXES}, got {self.index!r}")
        for name in ("dim", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")


def profile_columns(users: pd.DataFrame | None, segment_column: str = "segment") -> tuple[str, ...]:
    """Low-cardinality profile columns of a users table (strings, categories, small ints), id and times excluded."""
    if users is None:
        return ()
    out = []
    for c in users.columns:
        if c == "user_id" or pd.api.types.is_datetime64_any_dtype(users[c].dtype):
            continue
        small = users[c].nunique(dropna=True) <= 64
        if small and (not pd.api.types.is_float_dtype(users[c].dtype) or c == segment_column):
            out.append(c)
    return tuple(out)


def _index(settings: TrainSettings, emb: np.ndarray, ids: np.ndarray):
    from recsys.retrieval import ExactIndex, FaissIndex, auto_index

    if settings.index == "exact":
        return ExactIndex(metric="ip").build(emb, ids)
    if settings.index == "faiss":
        return FaissIndex(settings.index_factory, metric="ip").build(emb, ids)
    return auto_index(emb, ids, memory_budget_mb=max(64.0, emb.nbytes / 2**20 * 2), metric="ip", seed=settings.seed)


def _ranker(settings: TrainSettings, events: pd.DataFrame, items: pd.DataFrame, social: pd.DataFrame | None,
            progress: bool) -> tuple[Any, Any, dict | None]:
    """(ranker, feature builder, builder params), or Nones when the log cannot label impressions."""
    if settings.ranker == "none" or "impression_id" not in events.columns:
        return None, None, None
    from recsys.features.ranking_features import RankingFeatureBuilder, impression_labels
    from recsys.models.rankers import ESMMRanker, GBDTRanker
    from recsys.serve.state import builder_events, builder_items

    labelled = impression_labels(events)
    if labelled["click"].sum() < 10:
        return None, None, None
    params = {"windows": ["1D", "7D", None], "include_ids": settings.ranker != "gbdt"}
    builder = RankingFeatureBuilder(**params).fit(builder_events(events), builder_items(items), social)
    rows = labelled[["user_id", "item_id", "timestamp"] + (["media_id"] if "media_id" in labelled else [])]
    frame = builder.transform(rows)
    if settings.ranker == "gbdt":
        ranker = GBDTRanker(**{"max_iter": settings.ranker_max_iter, "random_state": settings.seed,
                               **settings.ranker_options})
    else:
        ranker = ESMMRanker(**{"seed": settings.seed, **settings.ranker_options})
    ranker.fit(frame, labelled[["click", "purchase"]])
    return ranker, builder, params


def train_components(events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None = None,
                     social: pd.DataFrame | None = None, *, settings: TrainSettings | None = None,
                     segment_column: str = "segment", progress: bool | None = None) -> dict[str, Any]:
    """Fit the feature pipeline, the two-tower model, the item index and the ranker on training tables."""
    import torch

    from recsys.features.pipeline import FeaturePipeline
    from recsys.models.tasks import SampledSoftmaxTask
    from recsys.models.trainer import Trainer
    from recsys.models.two_tower import TwoTowerModel
    from recsys.serve.state import item_embeddings

    s = settings or TrainSettings()
    pipeline = FeaturePipeline(user_categoricals=profile_columns(users, segment_column), title_buckets=s.title_buckets,
                               history_len=s.history_len).fit(events, items, users)
    data = pipeline.training_data(events, items, users)
    torch.manual_seed(s.seed)
    model = TwoTowerModel(pipeline.model_config(dim=s.dim, item_id_dropout=s.item_id_dropout))
    summary = Trainer(model, SampledSoftmaxTask(temperature=s.temperature), epochs=s.epochs, batch_size=s.batch_size,
                      lr=s.lr, negatives="mixed", num_negatives=min(256, len(items)), seed=s.seed,
                      progress=progress, device="cpu").fit(data)
    emb = item_embeddings(pipeline, model, items.reset_index(drop=True))
    index = _index(s, emb, items["item_id"].to_numpy())
    ranker, builder, params = _ranker(s, events, items, social, bool(progress))
    return {"pipeline": pipeline, "model": model, "index": index, "item_embeddings": emb, "ranker": ranker,
            "feature_builder": builder, "builder_params": params, "train_summary": summary}
