"""The rows a batch scoring job writes, one schema for the local job and Spark.

One row per (user, rank): the feed the Recommender serves (:meth:`~recsys.recommender.Recommender.recommend_batch`)
plus which model made it and when. ``nested``: one row per user, the feed a list of structs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.storage.bundle import manifest_digest

__all__ = ["run_time", "ModelInfo", "ROW_COLUMNS", "FEED_FIELDS", "score_chunk", "nest", "model_info"]

# user_id and item_id keep the kind of the model's ids (int64 or string); everything else is fixed
ROW_COLUMNS = ("user_id", "media_id", "rank", "item_id", "score", "pctr", "pcvr", "reason", "fallback",
               "model_name", "model_version", "scored_at")
FEED_FIELDS = ("rank", "item_id", "score", "pctr", "pcvr", "reason", "fallback")  # one struct of a nested feed


@dataclass(frozen=True)
class ModelInfo:
    """Which model scored: its registered name and version when it came from MLflow, else the bundle's folder name
    and the first 12 hex digits of its manifest's sha256 (:func:`~recsys.storage.bundle.manifest_digest`, the
    version the service reports for the same bundle)."""

    name: str
    version: str
    uri: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def model_info(rec: Any, uri: str) -> ModelInfo:
    """The :class:`ModelInfo` of a loaded Recommender (``uri``: what it was loaded from)."""
    text = str(uri)
    if text.startswith("models:/"):
        from recsys.tracking.aliases import alias_version

        name, _, ref = text[len("models:/"):].partition("@")
        if not ref:
            name, _, ref = name.partition("/")
        return ModelInfo(name=name, version=alias_version(name, ref), uri=text)
    manifest = getattr(rec, "bundle_manifest_", None)
    if manifest:  # the service reports a bundle's version the same way
        version = manifest_digest(manifest)[:12]
    else:  # an in-memory model: its training data
        version = str(getattr(rec, "training_data_hash_", None) or "unknown").removeprefix("sha256:")[:12]
    return ModelInfo(name=text.rstrip("/").rsplit("/", 1)[-1], version=version, uri=text)


def run_time(value: Any = None) -> pd.Timestamp:
    """A job's ``scored_at``: ``value`` (default: now) in UTC without a zone, to the microsecond Parquet keeps."""
    ts = pd.Timestamp(value if value is not None else pd.Timestamp.now(tz="UTC"))
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).floor("us")


def score_chunk(rec: Any, user_ids: Sequence, *, k: int, media_id: str | None, model: ModelInfo,
                scored_at: pd.Timestamp) -> pd.DataFrame:
    """The feeds of ``user_ids`` on ``media_id`` as :data:`ROW_COLUMNS` rows, in user order then rank."""
    feeds = rec.recommend_batch(list(user_ids), k=k, media_id=media_id)
    out = pd.DataFrame({
        "user_id": feeds["user_id"].to_numpy(),
        "media_id": feeds["media_id"].astype(object).where(feeds["media_id"].notna(), None).to_numpy(),
        "rank": feeds["rank"].to_numpy(np.int32),
        "item_id": feeds["item_id"].to_numpy(),
        "score": feeds["score"].to_numpy(np.float64),
        "pctr": feeds["pctr"].to_numpy(np.float64),
        "pcvr": feeds["pcvr"].to_numpy(np.float64),
        "reason": feeds["reason"].astype(object).to_numpy(),
        "fallback": feeds["fallback"].astype(object).where(feeds["fallback"].notna(), None).to_numpy(),
    })
    out["model_name"], out["model_version"] = model.name, model.version
    stamp = pd.Timestamp(scored_at)
    out["scored_at"] = stamp.tz_localize(None) if stamp.tzinfo else stamp
    return out[list(ROW_COLUMNS)]


def nest(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, partner): the feed as a list of :data:`FEED_FIELDS` structs, in rank order."""
    if rows.empty:
        return pd.DataFrame(columns=["user_id", "media_id", "feed", "model_name", "model_version", "scored_at"])
    keys = ["user_id", "media_id"]
    first = rows.drop_duplicates(keys, keep="first")
    feeds = [g[list(FEED_FIELDS)].to_dict("records")
             for _, g in rows.groupby(keys, sort=False, dropna=False)]
    out = first[keys + ["model_name", "model_version", "scored_at"]].reset_index(drop=True)
    out.insert(2, "feed", feeds)
    return out
