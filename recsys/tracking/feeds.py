"""The request/response frames of the MLflow model: user ids and options in, feeds out.

Input: one row per feed request, ``user_id`` (required), ``k`` (items in the feed, default 20) and
``media_id`` (the partner; missing or null: no partner, served as the model's ``no_partner`` says: under the
default "auto", refused when some partner's pool is restricted). Output: one row per feed item,
``request`` (the input row's position) followed by :data:`recsys.recommender.OUTPUT_COLUMNS`
(user_id, media_id, rank, item_id, score, pctr, pcvr, reason, reason_code, source, fallback, score_kind);
``fallback`` is None on the normal path, as in ``Recommender.recommend``; ``score_kind`` says what ``score``
measures (:data:`recsys.feed.result.SCORE_KINDS`). User ids are read by :func:`recsys.ids.coerce_id`, as
in-process: "1279" or 1279.0 is user 1279 of a model with integer ids, and an id that is not one of the
model's type ("12a") is served as an unknown user. The same function answers the pyfunc model and the tests
that compare it with the bundle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError

__all__ = ["predict_feeds", "input_example", "DEFAULT_K", "INPUT_COLUMNS"]

DEFAULT_K = 20
INPUT_COLUMNS = ("user_id", "k", "media_id")


def _requests(model_input: Any) -> pd.DataFrame:
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise DataValidationError(f"expected a DataFrame with a 'user_id' column (and optional 'k', 'media_id'), "
                                  f"got {type(model_input).__name__}")
    if "user_id" not in model_input.columns:
        raise DataValidationError(f"the request frame needs a 'user_id' column; it has {list(model_input.columns)}")
    unknown = [c for c in model_input.columns if c not in INPUT_COLUMNS]
    if unknown:
        raise DataValidationError(f"unknown request column(s) {unknown}; allowed: {list(INPUT_COLUMNS)}")
    frame = model_input.reset_index(drop=True)
    k = frame["k"] if "k" in frame.columns else pd.Series(DEFAULT_K, index=frame.index)
    k = k.fillna(DEFAULT_K) if k.dtype.kind == "f" else k
    if len(k) and (k.dtype.kind not in "iuf" or (k.astype(float) % 1 != 0).any() or (k < 1).any()):
        raise DataValidationError(f"column 'k' must hold positive integers; got {k.head().tolist()}")
    media = frame["media_id"] if "media_id" in frame.columns else pd.Series([None] * len(frame), dtype=object)
    media = media.astype(object).where(media.notna(), None)
    return pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "k": k.astype(np.int64).to_numpy(),
                         "media_id": media.to_numpy()})


def predict_feeds(recommender: Any, model_input: Any) -> pd.DataFrame:
    """Feeds for every request row (grouped by ``k`` and answered with ``recommend_batch``)."""
    from recsys.recommender import OUTPUT_COLUMNS

    reqs = _requests(model_input)
    parts = []
    for k, group in reqs.groupby("k", sort=True):
        feeds = recommender.recommend_batch(group[["user_id", "media_id"]], k=int(k))
        parts.append(_attach_requests(recommender, feeds, group, int(k)))
    if not parts:
        return pd.DataFrame(columns=["request", *OUTPUT_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["request", "rank"], kind="stable").reset_index(drop=True)


def _attach_requests(recommender: Any, feeds: pd.DataFrame, group: pd.DataFrame, k: int) -> pd.DataFrame:
    """``request`` per row: feeds come back in request order, each starting at rank 1."""
    starts = (feeds["rank"].to_numpy() == 1).cumsum() - 1
    if len(feeds) and starts.max() + 1 == len(group) and (starts >= 0).all():
        return feeds.assign(request=group.index.to_numpy()[starts])[["request", *feeds.columns]]
    parts = []  # some feed came back empty: answer one request at a time
    for pos, row in group.iterrows():
        one = recommender.recommend_batch(pd.DataFrame([row[["user_id", "media_id"]]]), k=k)
        parts.append(one.assign(request=pos)[["request", *one.columns]])
    return pd.concat(parts, ignore_index=True)


def input_example(user_ids: list, media_ids: list, k: int = 10) -> pd.DataFrame:
    """A small request frame for the model's signature and documentation."""
    n = len(user_ids)
    return pd.DataFrame({"user_id": pd.Series(user_ids), "k": np.full(n, k, dtype=np.int64),
                         "media_id": pd.Series(media_ids, dtype=object)})
