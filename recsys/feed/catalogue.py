"""The catalogue a feed is drawn from: item attributes as arrays aligned by *position*.

Positions are stable row numbers (0..n-1, new items appended, removed items kept but marked dead), so
candidate lists, pools and purchase sets are cheap integer arrays. Updates return a new
:class:`Catalogue` (copy on write): a request in flight keeps reading the one it started with.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.ids import shared_index

__all__ = ["Catalogue"]



def _eligibility(items: pd.DataFrame) -> np.ndarray:
    if "eligibility" not in items.columns:
        return np.full(len(items), "", dtype=object)
    tags = items["eligibility"].astype(object).to_numpy()
    out = np.full(len(tags), "", dtype=object)  # missing (None, NaN, NA) = everyone; the rest as text
    given = ~pd.isna(tags)
    out[given] = [t if isinstance(t, str) else str(t) for t in tags[given]]
    return out


@dataclass(frozen=True)
class Catalogue:
    """Item attributes by position; ``index`` maps external item ids to positions."""

    ids: np.ndarray
    index: pd.Index
    category: np.ndarray        # object array of category names
    price: np.ndarray           # float64
    commission_rate: np.ndarray  # float64
    title: np.ndarray           # object array
    eligibility: np.ndarray     # object array, "" = everyone
    in_stock: np.ndarray        # bool
    alive: np.ndarray           # bool (False once removed)
    frame: pd.DataFrame         # the full items table, row i = position i (content features live here)
    restricted: np.ndarray = field(init=False, repr=False)  # bool: has an eligibility segment

    def __post_init__(self) -> None:
        object.__setattr__(self, "restricted", self.eligibility != "")

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> Catalogue:
        """Build from an items table (item_id, category required; price, rate, title, eligibility, in_stock optional)."""
        missing = [c for c in ("item_id", "category") if c not in items.columns]
        if missing:
            raise DataValidationError(f"items lack column(s) {missing}; got {list(items.columns)}. The recommender "
                                      "needs at least item_id and category (validate with recsys.features.schema).")
        if items["item_id"].duplicated().any():
            dup = items.loc[items["item_id"].duplicated(), "item_id"].head(5).tolist()
            raise DataValidationError(f"items repeat item_id values {dup}; each item must appear once.")
        ids = items["item_id"].to_numpy()
        n = len(items)
        price = items["price"].to_numpy(np.float64) if "price" in items.columns else np.zeros(n)
        rate = items["commission_rate"].to_numpy(np.float64) if "commission_rate" in items.columns else np.zeros(n)
        title = (items["title"].astype(object).where(items["title"].notna(), "").to_numpy(dtype=object)
                 if "title" in items.columns else ids.astype(str).astype(object))
        stock = items["in_stock"].fillna(False).to_numpy(bool) if "in_stock" in items.columns else np.ones(n, bool)
        return cls(ids=ids, index=shared_index(ids), category=items["category"].astype(str).to_numpy(dtype=object),
                   price=price, commission_rate=rate, title=title, eligibility=_eligibility(items),
                   in_stock=stock, alive=np.ones(n, bool), frame=items.reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def category_code(self) -> np.ndarray:
        """int64 code of each position's category (0..n_categories-1, in order of first appearance)."""
        return pd.factorize(self.category)[0].astype(np.int64)

    @functools.cached_property
    def n_categories(self) -> int:
        """Number of distinct categories (computed once: a max over every position)."""
        return int(self.category_code.max(initial=-1)) + 1

    @functools.cached_property
    def _int_lookup(self) -> tuple[np.ndarray, np.ndarray | None, bool] | None:
        """For integer ids: (ids sorted, their positions or None when ids already increase, whether they are
        consecutive integers, so that a position is ``id - ids[0]``); None for other ids."""
        if self.ids.dtype.kind != "i" or not len(self.ids):
            return None
        if bool((self.ids[1:] > self.ids[:-1]).all()):
            return self.ids, None, int(self.ids[-1]) - int(self.ids[0]) == len(self.ids) - 1
        order = np.argsort(self.ids, kind="stable")
        return self.ids[order], order, False

    @property
    def n_alive(self) -> int:
        return int(self.alive.sum())

    def positions(self, item_ids) -> np.ndarray:
        """Positions of ``item_ids`` (-1 for ids never seen); never raises on a foreign id type."""
        arr = np.asarray(item_ids if not isinstance(item_ids, pd.Series) else item_ids.to_numpy())
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if len(arr) == 0:
            return np.zeros(0, np.int64)
        lookup = self._int_lookup if arr.dtype.kind == "i" else None
        if lookup is not None:  # integer ids: a binary search, not a pandas indexer (same answer, less overhead)
            keys, order, consecutive = lookup
            if consecutive:
                at = arr.astype(np.int64) - keys[0]
                return np.where((at >= 0) & (at < len(keys)), at, -1)
            at = np.minimum(np.searchsorted(keys, arr), len(keys) - 1)
            hit = keys[at] == arr
            return np.where(hit, at if order is None else order[at], -1).astype(np.int64)
        try:
            pos = self.index.get_indexer(arr)
        except (TypeError, ValueError):
            pos = self.index.get_indexer(pd.Index(arr.astype(object), dtype=object))
        return pos.astype(np.int64)

    def live_positions(self, item_ids) -> np.ndarray:
        """Positions of the ids that exist and are not removed."""
        pos = self.positions(item_ids)
        pos = pos[pos >= 0]
        return pos[self.alive[pos]]

    def to_frame(self, alive_only: bool = True) -> pd.DataFrame:
        """The items table (every column it came with; ``in_stock`` kept current)."""
        df = self.frame.copy()
        df["in_stock"] = self.in_stock
        return df[self.alive].reset_index(drop=True) if alive_only else df

    def with_items(self, items: pd.DataFrame) -> tuple[Catalogue, np.ndarray]:
        """A catalogue with ``items`` added, and their positions.

        An id already present keeps its position and gets its attributes replaced (and comes back to
        life if it was removed); new ids are appended.
        """
        new = Catalogue.from_items(items)
        pos = self.positions(new.ids)
        fresh = pos < 0
        pos[fresh] = len(self.ids) + np.arange(int(fresh.sum()))
        n = len(self.ids) + int(fresh.sum())
        ids = self.ids if self.ids.dtype == new.ids.dtype else self.ids.astype(object)
        ids = np.concatenate([ids, new.ids[fresh].astype(ids.dtype)])
        out = {}
        for f in ("category", "price", "commission_rate", "title", "eligibility", "in_stock", "alive"):
            old, add = getattr(self, f), getattr(new, f)
            arr = np.concatenate([old, np.zeros(n - len(old), dtype=old.dtype)])
            arr[pos] = add
            out[f] = arr
        frame = self.frame.copy()
        old = pos[~fresh]
        if len(old):
            rows = items.iloc[np.flatnonzero(~fresh)]
            for c in rows.columns:
                if c not in frame.columns:
                    frame[c] = None
                frame.loc[old, c] = rows[c].to_numpy()
        frame = pd.concat([frame, items.iloc[np.flatnonzero(fresh)]], ignore_index=True)
        return Catalogue(ids=ids, index=shared_index(ids), frame=frame, **out), pos

    def without(self, item_ids) -> tuple[Catalogue, int]:
        """A catalogue with ``item_ids`` marked removed (unknown ids ignored); how many were removed."""
        pos = self.live_positions(item_ids)
        if not len(pos):
            return self, 0
        alive = self.alive.copy()
        alive[pos] = False
        return self._same_items(replace(self, alive=alive)), len(np.unique(pos))

    def _same_items(self, other: Catalogue) -> Catalogue:
        """``other`` (a copy with the same items and categories) keeps this one's category codes."""
        if "category_code" in self.__dict__:
            other.__dict__["category_code"] = self.__dict__["category_code"]
        return other

    def with_stock(self, item_ids, in_stock) -> Catalogue:
        """A catalogue with the stock flag of ``item_ids`` set (unknown ids ignored)."""
        pos = self.positions(item_ids)
        vals = np.broadcast_to(np.asarray(in_stock, dtype=bool), pos.shape)
        stock = self.in_stock.copy()
        stock[pos[pos >= 0]] = vals[pos >= 0]
        return self._same_items(replace(self, in_stock=stock))
