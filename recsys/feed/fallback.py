"""Cold start: what a user without history sees, and the popular lists every feed backfills from.

Two paths, chosen per request by :func:`cold_start_path`:

* ``"cold_user_features"``: the user tower run on what is known without history (the profile the
  caller passes, the partner as context; the user id maps to the out-of-vocabulary row), then the
  normal retrieve -> rank -> rules flow;
* ``"popular"``: the items engaged with most by that partner's audience in the user's segment (then
  the partner's whole audience, then everyone), ranked and filtered like any candidates.

:class:`PopularItems` holds weighted engagement counts per (partner, segment), per partner and
overall, learned from the training log and saved in the bundle as a parquet table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.feed.catalogue import Catalogue

__all__ = ["PopularItems", "cold_start_path", "COLD_START_MODES", "ENGAGEMENT_WEIGHTS"]

COLD_START_MODES = ("auto", "features", "popular")
ENGAGEMENT_WEIGHTS = {"click": 1.0, "cart": 2.0, "fav": 2.0, "purchase": 4.0}
ALL = ""  # the key for "every partner" / "every segment"


def cold_start_path(mode: str, *, has_history: bool, has_features: bool) -> str | None:
    """None for a user with history; otherwise ``"cold_user_features"`` or ``"popular"``.

    ``has_features``: the model has profile or context inputs and the request supplies at least one.
    """
    if has_history:
        return None
    if mode == "popular" or (mode == "auto" and not has_features):
        return "popular"
    return "cold_user_features"


class PopularItems:
    """Engagement-weighted popularity per (media partner, segment); ``top`` gives ranked positions."""

    def __init__(self, *, weights: dict[str, float] | None = None, max_per_list: int = 1000) -> None:
        self.weights = dict(weights or ENGAGEMENT_WEIGHTS)
        self.max_per_list = max_per_list

    def fit(self, events: pd.DataFrame, users: pd.DataFrame | None = None,
            segment_column: str = "segment") -> PopularItems:
        """Count weighted engagements per (media_id, segment) from ``events`` (and users' segments)."""
        kind = events["event_type"].astype(str)
        w = kind.map(self.weights).fillna(0.0).to_numpy(np.float64)
        keep = w > 0
        ev = pd.DataFrame({"item_id": events["item_id"].to_numpy()[keep], "w": w[keep]})
        ev["media_id"] = (events["media_id"].astype(object).where(events["media_id"].notna(), ALL).astype(str)
                          .to_numpy()[keep] if "media_id" in events.columns else ALL)
        seg = pd.Series(ALL, index=range(len(ev)), dtype=object)
        if users is not None and segment_column in users.columns:
            lookup = users.drop_duplicates("user_id").set_index("user_id")[segment_column]
            seg = lookup.reindex(events["user_id"].to_numpy()[keep]).astype(object)
            seg = seg.where(seg.notna(), ALL).astype(str).reset_index(drop=True)
        ev["segment"] = seg.to_numpy()
        parts = [ev.groupby(["media_id", "segment", "item_id"], sort=False)["w"].sum().reset_index()]
        parts.append(ev.groupby(["media_id", "item_id"], sort=False)["w"].sum().reset_index().assign(segment=ALL))
        parts.append(ev.groupby(["item_id"], sort=False)["w"].sum().reset_index().assign(media_id=ALL, segment=ALL))
        table = pd.concat(parts, ignore_index=True)[["media_id", "segment", "item_id", "w"]]
        table = table.drop_duplicates(["media_id", "segment", "item_id"], keep="last")
        self.table_ = table.rename(columns={"w": "score"}).reset_index(drop=True)
        self._cache: dict = {}
        return self

    def to_frame(self) -> pd.DataFrame:
        return self.table_.copy()

    @classmethod
    def from_frame(cls, table: pd.DataFrame, *, weights: dict[str, float] | None = None,
                   max_per_list: int = 1000) -> PopularItems:
        obj = cls(weights=weights, max_per_list=max_per_list)
        obj.table_ = table.reset_index(drop=True)
        obj._cache = {}
        return obj

    def _scores(self, media: str, segment: str) -> pd.Series:
        t = self.table_
        sel = t[(t["media_id"] == media) & (t["segment"] == segment)]
        return sel.groupby("item_id", sort=False)["score"].sum()

    def top(self, catalogue: Catalogue, media_id: str | None, segment: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Positions and scores of the most popular items for (partner, segment), best first.

        Ties (and items the segment never touched) are broken by the partner's, then everyone's,
        popularity. Cached per (partner, segment, catalogue object).
        """
        media = ALL if media_id is None else str(media_id)
        segment = ALL if segment is None else str(segment)
        key = (media, segment, id(catalogue))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        levels = [self._scores(media, segment), self._scores(media, ALL), self._scores(ALL, ALL)]
        ids = pd.Index(pd.unique(np.concatenate([s.index.to_numpy(dtype=object) for s in levels])))
        frame = pd.DataFrame({f"s{i}": s.reindex(ids).fillna(0.0).to_numpy() for i, s in enumerate(levels)})
        order = np.lexsort((-frame["s2"].to_numpy(), -frame["s1"].to_numpy(), -frame["s0"].to_numpy()))
        pos = catalogue.positions(ids.to_numpy()[order])
        score = (frame["s0"].to_numpy() + 1e-3 * frame["s1"].to_numpy() + 1e-6 * frame["s2"].to_numpy())[order]
        ok = pos >= 0
        out = (pos[ok][: self.max_per_list], score[ok][: self.max_per_list])
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = out
        return out
