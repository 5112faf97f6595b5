"""The item index contract, documented once: every index (exact or approximate) answers it.

An index stores item embeddings under *external* ids (any int64 or any unicode string, never
mixed) and answers ``search(queries, k, filters)`` with the top-``k`` eligible items per query.

Semantics shared by every implementation:

* ``build(embeddings, ids)`` replaces the whole content (and trains IVF partitions).
* ``add(embeddings, ids)`` appends new items; an id that is already present is *replaced*: the
  old vector is hidden and the new one becomes visible in the same atomic swap.
* ``remove(ids)`` hides items at once (tombstones); unknown ids are ignored. Physical space is
  reclaimed by ``compact()`` (a rebuild), which ``health()`` recommends when it pays off.
* ``set_item_attributes(ids, in_stock=..., eligibility=...)`` sets per-item availability and the
  eligibility segment ("" or None = visible to everyone, "vip" = only for users in segment "vip").
* ``effective_params()`` gives the run-time search knobs in use (``efSearch``, ``nprobe``, ...; ``{}``
  for an index without knobs, like the exact one).
* ``search`` returns ``(scores, ids)`` of shape ``(n_queries, k)``, best first. Scores are inner
  products (``metric="ip"``) or cosines (``metric="cosine"``). When fewer than ``k`` items are
  eligible the row is padded with score ``-inf`` and id ``-1`` (int ids) or ``None`` (str ids);
  whenever ``k`` eligible items exist, exactly ``k`` real items come back.
* Readers never block on writers: every update prepares a new snapshot and swaps it in atomically,
  so a search sees the catalogue either entirely before or entirely after an update.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recsys.errors import DataValidationError

METRICS = ("ip", "cosine")


def _as_id_set(value: Any, name: str) -> frozenset:
    if isinstance(value, (str, bytes)):
        raise DataValidationError(
            f"SearchFilters.{name} must be a collection of item ids, got the single string {value!r}; "
            f"wrap it: {name}=[{value!r}]")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        return frozenset(value)
    except TypeError as e:
        raise DataValidationError(
            f"SearchFilters.{name} must be an iterable of hashable ids, got {type(value).__name__}: {e}") from None


@dataclass(frozen=True)
class SearchFilters:
    """What one request may see. An item is eligible when all of these hold:

    * it is not in ``exclude`` (seen, purchased, ...),
    * ``allow`` is None or the item is in ``allow`` (a partner's product pool, a category),
    * its eligibility segment is empty (everyone) or one of ``segments`` (the user's segments),
    * it is in stock, unless ``require_in_stock`` is False.

    ``widen`` says how hard to search: True (the default) scales the ANN effort (``nprobe``,
    ``efSearch``) by 1 / the eligible share, so the eligible items are found about as well as in an
    unfiltered search; False keeps the index's own knobs (the cost of an unfiltered search) and returns
    the best eligible items among those that search reaches, through an id selector, without over-fetching.
    Pass a large allow-list as a ``frozenset`` and reuse the object: its hash is computed once.
    """

    exclude: Collection = ()
    allow: Collection | None = None
    segments: frozenset[str] = field(default_factory=frozenset)
    require_in_stock: bool = True
    widen: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", _as_id_set(self.exclude, "exclude"))
        if self.allow is not None:
            object.__setattr__(self, "allow", _as_id_set(self.allow, "allow"))
        segs = self.segments
        segs = frozenset([segs]) if isinstance(segs, str) else frozenset(segs)
        if not all(isinstance(s, str) for s in segs):
            raise DataValidationError(f"SearchFilters.segments must hold str segment names, got {sorted(map(repr, segs))}")
        object.__setattr__(self, "segments", segs)
        object.__setattr__(self, "require_in_stock", bool(self.require_in_stock))
        object.__setattr__(self, "widen", bool(self.widen))

    @property
    def is_trivial(self) -> bool:
        """True when the filter removes nothing beyond the index-wide defaults."""
        return not self.exclude and self.allow is None


FiltersArg = SearchFilters | Sequence[SearchFilters] | None


@runtime_checkable
class ItemIndex(Protocol):
    """An item index (see the module docstring for the shared semantics)."""

    dim: int
    metric: str

    def build(self, embeddings: np.ndarray, ids: Sequence[int | str]) -> ItemIndex: ...

    def add(self, embeddings: np.ndarray, ids: Sequence[int | str]) -> None: ...

    def remove(self, ids: Sequence[int | str]) -> int: ...

    def set_item_attributes(self, ids: Sequence[int | str], *, in_stock: Any = None,
                            eligibility: Any = None) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               filters: FiltersArg = None) -> tuple[np.ndarray, np.ndarray]: ...

    def health(self) -> dict: ...

    def effective_params(self) -> dict: ...

    def save(self, path: str | Path) -> Path: ...

    def __len__(self) -> int: ...
