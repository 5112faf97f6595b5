"""External item ids (any int64 or any unicode string) <-> internal int64 labels.

Labels are positions in the index, assigned in insertion order and never reused. The map is
immutable: updates return a new map, so a reader holding the old one stays consistent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.errors import DataValidationError

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


def normalize_ids(ids: Any, what: str = "ids") -> tuple[str | None, np.ndarray]:
    """Return ``(kind, array)``: kind "int" with an int64 array, "str" with an object array, or None if empty."""
    if isinstance(ids, (str, bytes)):
        raise DataValidationError(f"{what} must be a sequence of ids, got the single string {ids!r}")
    if isinstance(ids, np.ndarray):
        arr = ids.ravel()
        if arr.size == 0:
            return None, np.empty(0, dtype=np.int64)
        if arr.dtype.kind == "u":
            if int(arr.max()) > _INT64_MAX:
                raise DataValidationError(
                    f"{what}: uint64 id {int(arr.max())} does not fit int64; pass such ids as strings")
            return "int", arr.astype(np.int64)
        if arr.dtype.kind == "i":
            return "int", arr.astype(np.int64, copy=False)
        if arr.dtype.kind == "U":
            return "str", arr.astype(object)
        if arr.dtype.kind != "O":
            raise DataValidationError(f"{what} must hold int64 or str ids, got dtype {arr.dtype}")
        ids = arr.tolist()
    values = list(ids)
    if not values:
        return None, np.empty(0, dtype=np.int64)
    if all(isinstance(v, str) for v in values):
        return "str", np.array(values, dtype=object)
    bad = [v for v in values if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))]
    if bad:
        kinds = sorted({type(v).__name__ for v in values})
        raise DataValidationError(
            f"{what} must be all int64 or all str (never mixed), got types {kinds}; first offending value {bad[0]!r}")
    out_of_range = [v for v in values if not _INT64_MIN <= int(v) <= _INT64_MAX]
    if out_of_range:
        raise DataValidationError(f"{what}: id {out_of_range[0]} does not fit int64; pass such ids as strings")
    return "int", np.array([int(v) for v in values], dtype=np.int64)


def _check_unique(kind: str, arr: np.ndarray, what: str) -> None:
    if kind == "int":
        uniq, counts = np.unique(arr, return_counts=True)
        dups = uniq[counts > 1]
    else:
        seen: set = set()
        dups = [v for v in arr if v in seen or seen.add(v)]
    if len(dups):
        raise DataValidationError(
            f"{what} contain {len(dups)} duplicate id(s), e.g. {list(dups[:3])}; each id may appear once per call")


@dataclass(frozen=True)
class IdMap:
    """Immutable map; ``external[label]`` is the id stored at a label (live or hidden)."""

    kind: str | None
    external: np.ndarray
    keys: np.ndarray | None = None  # int kind: sorted live ids
    key_labels: np.ndarray | None = None  # int kind: label of keys[i]
    table: dict | None = None  # str kind: live id -> label

    @classmethod
    def empty(cls) -> IdMap:
        return cls(None, np.empty(0, dtype=np.int64))

    @classmethod
    def from_external(cls, kind: str | None, external: np.ndarray, alive: np.ndarray) -> IdMap:
        """Rebuild the lookup of live ids (used after loading)."""
        labels = np.flatnonzero(alive).astype(np.int64)
        if kind == "int":
            order = np.argsort(external[labels], kind="stable")
            return cls(kind, external, external[labels][order], labels[order])
        if kind == "str":
            return cls(kind, external, table={external[i]: int(i) for i in labels})
        return cls.empty()

    def check_kind(self, kind: str | None, what: str) -> None:
        if kind is not None and self.kind is not None and kind != self.kind:
            raise DataValidationError(
                f"{what} are {kind} ids but this index holds {self.kind} ids; use one id type per index")

    def append(self, new: np.ndarray, kind: str | None, what: str = "ids"
               ) -> tuple[IdMap, np.ndarray, np.ndarray, np.ndarray]:
        """Add ``new`` ids at labels ``len(external)...``.

        Returns (map, new labels, old labels that were replaced, the new labels replacing them).
        """
        self.check_kind(kind, what)
        empty = np.empty(0, np.int64)
        if kind is None:
            return self, empty, empty, empty
        _check_unique(kind, new, what)
        start = len(self.external)
        new_labels = np.arange(start, start + len(new), dtype=np.int64)
        external = np.concatenate([self.external.astype(new.dtype, copy=False), new]) if start else new.copy()
        if kind == "str":
            table = dict(self.table or {})
            pairs = [(table[v], lab) for v, lab in zip(new, new_labels.tolist(), strict=True) if v in table]
            table.update(zip(new.tolist(), new_labels.tolist(), strict=True))
            old = np.asarray([p[0] for p in pairs], dtype=np.int64)
            return IdMap(kind, external, table=table), new_labels, old, np.asarray([p[1] for p in pairs], np.int64)
        keys = self.keys if self.keys is not None else np.empty(0, np.int64)
        key_labels = self.key_labels if self.key_labels is not None else np.empty(0, np.int64)
        pos = np.searchsorted(keys, new)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == new[found]
        key_labels = key_labels.copy()
        replaced = key_labels[pos[found]].copy()
        key_labels[pos[found]] = new_labels[found]
        fresh, fresh_labels = new[~found], new_labels[~found]
        order = np.argsort(fresh, kind="stable")
        fresh, fresh_labels = fresh[order], fresh_labels[order]
        ins = np.searchsorted(keys, fresh)
        return (IdMap(kind, external, np.insert(keys, ins, fresh), np.insert(key_labels, ins, fresh_labels)),
                new_labels, replaced, new_labels[found])

    def drop(self, ids: np.ndarray, kind: str | None) -> tuple[IdMap, np.ndarray]:
        """Forget live ids (unknown ones are ignored); return (map, labels that were dropped)."""
        self.check_kind(kind, "ids to remove")
        labels = self.labels_of(ids, kind)
        labels = np.unique(labels[labels >= 0])
        if not len(labels):
            return self, labels
        if self.kind == "str":
            table = dict(self.table or {})
            for v in self.external[labels]:
                table.pop(v, None)
            return IdMap(self.kind, self.external, table=table), labels
        keep = ~np.isin(self.key_labels, labels)
        return IdMap(self.kind, self.external, self.keys[keep], self.key_labels[keep]), labels

    def labels_of(self, ids: np.ndarray, kind: str | None) -> np.ndarray:
        """Labels of live ids, -1 where an id is unknown or hidden."""
        self.check_kind(kind, "ids")
        if kind is None or self.kind is None or len(ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        if self.kind == "str":
            table = self.table or {}
            return np.fromiter((table.get(v, -1) for v in ids), dtype=np.int64, count=len(ids))
        pos = np.searchsorted(self.keys, ids)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == ids[found]
        out = np.full(len(ids), -1, dtype=np.int64)
        out[found] = self.key_labels[pos[found]]
        return out

    def external_of(self, labels: np.ndarray) -> np.ndarray:
        """External ids at ``labels`` (same shape); label -1 gives -1 (int ids) or None (str ids)."""
        labels = np.asarray(labels)
        pad = labels < 0
        safe = np.where(pad, 0, labels)
        if self.kind == "str":
            out = self.external[safe] if len(self.external) else np.empty(labels.shape, dtype=object)
            out = np.array(out, dtype=object)
            out[pad] = None
            return out
        if not len(self.external):
            return np.full(labels.shape, -1, dtype=np.int64)
        return np.where(pad, np.int64(-1), self.external[safe]).astype(np.int64)

    def lookup_filter_ids(self, ids: Sequence | frozenset) -> np.ndarray:
        """Labels of the live ids among ``ids`` (filter lists); wrong-kind ids raise, unknown ids are skipped."""
        kind, arr = normalize_ids(list(ids), what="filter ids")
        labels = self.labels_of(arr, kind)
        return np.unique(labels[labels >= 0])
