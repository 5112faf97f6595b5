"""The state one search reads: engine, ids and per-item attributes, swapped as a whole by every update."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from recsys.index.ids import IdMap


@dataclass
class Snapshot:
    """Everything one search reads; replaced as a whole by every update (never mutated, bar the cache)."""

    engine: Any
    ids: IdMap
    alive: np.ndarray
    in_stock: np.ndarray
    seg_code: np.ndarray
    segments: tuple[str, ...] = ()
    drift: dict | None = None
    cache: dict = field(default_factory=dict)

    def segment_codes(self, names) -> list[int]:
        """Codes of the named segments this snapshot knows (unknown names are skipped)."""
        lookup = {s: i + 1 for i, s in enumerate(self.segments)}
        return [lookup[s] for s in names if s in lookup]

    def evolve(self, **changes) -> Snapshot:
        """A new snapshot with ``changes`` and an empty cache."""
        return replace(self, cache={}, **changes)
