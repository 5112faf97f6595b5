"""Train every component a Recommender composes, with small sensible defaults (``Recommender.fit``).

This is the short path for tests, notebooks and the demo; the tracked, configurable pipeline lives in
``recsys train`` (MLflow issue) and hands its fitted components to ``Recommender.from_components``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError, RankerSkippedWarning
from recsys.fit.two_tower_settings import QUICK_FIT, TwoTowerSettings
from recsys.index.registry import INDEX_CHOICES
from recsys.models.rankers.registry import RANKER_KINDS

__all__ = ["TrainSettings", "train_components", "profile_columns", "ranker_labels", "require_impression_ids",
           "MIN_RANKER_CLICKS"]

RANKERS = (*RANKER_KINDS, "none")
INDEXES = INDEX_CHOICES
MIN_RANKER_CLICKS = 10  # clicked impressions below which no ranker is trained (a warning says so)


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of the quick fit (two-tower, index, ranker; ``ranker_options`` go to the ranker's
    constructor, e.g. ``{"check_leakage": False}``). The two-tower ones override the
    :data:`~recsys.fit.settings.QUICK_FIT` preset (:meth:`two_tower`), whose values are their defaults."""

    dim: int = QUICK_FIT.dim
    epochs: int = QUICK_FIT.epochs
    batch_size: int = QUICK_FIT.batch_size
    lr: float = QUICK_FIT.lr
    temperature: float = QUICK_FIT.temperature
    item_id_dropout: float = QUICK_FIT.item_id_dropout
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

    def two_tower(self, n_items: int) -> TwoTowerSettings:
        """The two-tower part: the :data:`~recsys.fit.settings.QUICK_FIT` preset with these values (no more
        uniform negatives than the ``n_items`` of the catalogue)."""
        return replace(QUICK_FIT, dim=self.dim, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                       temperature=self.temperature, item_id_dropout=self.item_id_dropout, seed=self.seed,
                       num_negatives=min(QUICK_FIT.num_negatives, n_items))


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
    from recsys.index import ExactIndex, FaissIndex, auto_index

    if settings.index == "exact":
        return ExactIndex(metric="ip").build(emb, ids)
    if settings.index == "faiss":
        return FaissIndex(factory=settings.index_factory, metric="ip").build(emb, ids)
    return auto_index(emb, ids, memory_budget_mb=max(64.0, emb.nbytes / 2**20 * 2), metric="ip", seed=settings.seed)


def require_impression_ids(events: pd.DataFrame, kind: str) -> None:
    """Raise :class:`DataValidationError` when ranker ``kind`` (not "none") is asked for but the events lack
    ``impression_id``: nothing then tells which impressions went unclicked, so pCTR cannot be learned."""
    if kind == "none" or "impression_id" in events.columns:
        return
    kinds = events["event_type"].astype(str).value_counts()
    raise DataValidationError(
        f"events: column 'impression_id' is missing, and the '{kind}' ranker needs it to learn pCTR and pCVR "
        f"(the events hold {kinds.get('impression', 0)} impressions, {kinds.get('click', 0)} clicks and "
        f"{kinds.get('purchase', 0)} purchases, but nothing links a click or purchase to the impression it "
        "followed).\nFix: add 'impression_id' (an impression carries its own id; each click, cart, fav and "
        "purchase carries the id of the impression it followed), or train without a ranker: "
        "TrainSettings(ranker='none') for Recommender.fit, 'ranker: {kind: none}' in a recsys train config "
        "(feeds then rank by the two-tower score)."
    )


def ranker_labels(events: pd.DataFrame, kind: str, *, min_clicks: int = MIN_RANKER_CLICKS,
                  ) -> tuple[pd.DataFrame | None, dict]:
    """Labelled impressions for ranker ``kind`` and a record of what was decided (``Recommender.fit`` and
    ``recsys train`` both call it). ``kind="none"``: no rows, by request. Events without ``impression_id``
    raise (:func:`require_impression_ids`); fewer than ``min_clicks`` clicked impressions warn with
    :class:`RankerSkippedWarning` and give no rows."""
    if kind == "none":
        return None, {"kind": None, "trained": False, "reason": "ranker 'none' was asked for: feeds rank by the "
                      "two-tower score, pctr / pcvr are NaN"}
    require_impression_ids(events, kind)
    from recsys.features.ranking_features import impression_labels

    labelled = impression_labels(events)
    record = {"kind": kind, "impressions": len(labelled), "clicked_impressions": int(labelled["click"].sum()),
              "purchased_impressions": int(labelled["purchase"].sum())}
    if record["clicked_impressions"] < min_clicks:
        reason = (f"no '{kind}' ranker: the events hold {len(labelled)} impression rows of which "
                  f"{record['clicked_impressions']} were clicked (a click whose impression_id names an impression "
                  f"row); at least {min_clicks} are needed. Feeds rank by the two-tower score and pctr / pcvr are "
                  "NaN. Add impression rows and link clicks to them, or ask for ranker 'none' to silence this.")
        warnings.warn(reason, RankerSkippedWarning, stacklevel=3)
        return None, record | {"trained": False, "reason": reason}
    return labelled, record | {"trained": True, "reason": None}


def _ranker(settings: TrainSettings, labelled: pd.DataFrame | None, events: pd.DataFrame, items: pd.DataFrame,
            social: pd.DataFrame | None, benefits: pd.DataFrame | None = None, *, item_scores: Any = None
            ) -> tuple[Any, Any, dict | None]:
    """(ranker, feature builder, builder params) trained on ``labelled`` impressions; Nones without them.
    ``item_scores`` (a fitted feature pipeline, optional): the rows also get the item-to-item channel's score,
    point in time (:func:`recsys.feed.item_score.point_in_time_scores`)."""
    if labelled is None:
        return None, None, None
    from recsys.features.ranking_features import RankingFeatureBuilder
    from recsys.feed.state import builder_events, builder_items
    from recsys.models.rankers.registry import build_ranker

    params = {"windows": ["1D", "7D", None], "include_ids": settings.ranker != "gbdt"}
    builder = RankingFeatureBuilder(**params).fit(builder_events(events), builder_items(items), social, benefits)
    rows = labelled[["user_id", "item_id", "timestamp"] + (["media_id"] if "media_id" in labelled else [])]
    if item_scores is not None:
        from recsys.feed.item_score import FEATURE, point_in_time_scores

        rows = rows.assign(**{FEATURE: point_in_time_scores(item_scores, events, items, rows)})
    frame = builder.transform(rows)
    ranker = build_ranker(settings.ranker, {"max_iter": settings.ranker_max_iter, "seed": settings.seed},
                          settings.ranker_options)
    ranker.fit(frame, labelled[["click", "purchase"]])
    return ranker, builder, params


def train_components(events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None = None,
                     social: pd.DataFrame | None = None, *, settings: TrainSettings | None = None,
                     segment_column: str = "segment", progress: bool | None = None,
                     benefits: pd.DataFrame | None = None, item_to_item_feature: bool = False) -> dict[str, Any]:
    """Fit the feature pipeline, the two-tower model, the item index and the ranker on training tables
    (validated ones: :func:`recsys.features.schema.validate_tables`). ``train_summary["ranker"]`` records
    whether a ranker was trained and, when not, why. ``item_to_item_feature``: the ranker also learns from the
    item-to-item channel's score (:mod:`recsys.feed.item_score`; a Recommender with ``item_to_item`` asks it)."""
    from recsys.features.pipeline import FeaturePipeline
    from recsys.fit.two_tower import train_two_tower
    from recsys.models.encode import embed_items

    s = settings or TrainSettings()
    labelled, record = ranker_labels(events, s.ranker)  # first: a log the ranker cannot use fails before training
    pipeline = FeaturePipeline(user_categoricals=profile_columns(users, segment_column), title_buckets=s.title_buckets,
                               history_len=s.history_len).fit(events, items, users)
    data = pipeline.training_data(events, items, users)
    model, summary, _ = train_two_tower(s.two_tower(len(items)), data, sizes=pipeline.tower_sizes(),
                                        progress=progress)
    emb = embed_items(model, pipeline, items.reset_index(drop=True))
    index = _index(s, emb, items["item_id"].to_numpy())
    ranker, builder, params = _ranker(s, labelled, events, items, social, benefits,
                                      item_scores=pipeline if item_to_item_feature else None)
    return {"pipeline": pipeline, "model": model, "index": index, "item_embeddings": emb, "ranker": ranker,
            "feature_builder": builder, "builder_params": params, "train_summary": {**summary, "ranker": record}}
