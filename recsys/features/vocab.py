"""Vocabularies: raw ids (ints or strings) to dense indices, fitted on training data, JSON-serialisable.

A value never seen at fit time maps to an out-of-vocabulary bucket instead of raising, so new
users, items or categories at inference never crash. For id spaces too large to enumerate,
:class:`HashingVocabulary` maps every value to one of a fixed number of buckets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError
from recsys.ids import shared_index

__all__ = ["Vocabulary", "HashingVocabulary", "stable_hash", "vocabulary_from_dict"]


def stable_hash(values: Iterable[Any] | np.ndarray, salt: str = "") -> np.ndarray:
    """A uint64 hash of each value that is the same in every process and on every machine.

    Values are hashed through their string form, so ``5`` and ``"5"`` hash alike (Python's own
    ``hash`` is salted per process and would break saved models).
    """
    arr = np.asarray(values, dtype=object).reshape(-1)
    text = pd.Series(arr, dtype=object).map(lambda v: f"{salt}\x1f{v}").to_numpy(dtype=object)
    return pd.util.hash_array(text, categorize=True)


class Vocabulary:
    """Dense indices ``0..n-1`` for the values seen at fit (most frequent first), OOV buckets after.

    ``min_count`` drops rare values, ``max_size`` keeps the most frequent; dropped and unseen values
    go to ``num_oov_buckets`` buckets (chosen by a stable hash when there are several).
    """

    kind = "vocabulary"

    def __init__(self, *, num_oov_buckets: int = 1, min_count: int = 1, max_size: int | None = None) -> None:
        self.num_oov_buckets = num_oov_buckets
        self.min_count = min_count
        self.max_size = max_size

    def fit(self, values: Iterable[Any]) -> Vocabulary:
        """Learn the vocabulary from training values (nulls ignored)."""
        if self.num_oov_buckets < 1:
            raise ConfigError(f"num_oov_buckets must be >= 1 so unseen values have a home, got {self.num_oov_buckets}")
        s = pd.Series(np.asarray(values).reshape(-1) if not isinstance(values, pd.Series) else values).dropna()
        counts = s.value_counts(sort=False)
        first = pd.Index(s.drop_duplicates())
        counts = counts.reindex(first)  # first-appearance order, then a stable sort by count
        order = np.argsort(-counts.to_numpy(), kind="stable")
        counts = counts.iloc[order]
        counts = counts[counts >= self.min_count]
        if self.max_size is not None:
            counts = counts.iloc[: self.max_size]
        self.values_ = shared_index(counts.index)  # looked up by every request thread
        self._dtype = str(self.values_.dtype) if len(self.values_) else "object"
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "values_"):
            raise ConfigError("this Vocabulary is not fitted yet: call fit(training_values) first")

    @property
    def num_known(self) -> int:
        self._check_fitted()
        return len(self.values_)

    @property
    def size(self) -> int:
        """Number of rows an embedding table needs (known values plus OOV buckets)."""
        return self.num_known + self.num_oov_buckets

    @property
    def oov_index(self) -> int:
        """The first OOV bucket (the only one by default)."""
        return self.num_known

    def transform(self, values: Iterable[Any]) -> np.ndarray:
        """Indices (int64) of ``values``; unseen, null or wrongly typed values map to an OOV bucket."""
        self._check_fitted()
        arr = np.asarray(values if not isinstance(values, pd.Series) else values.to_numpy()).reshape(-1)
        try:
            idx = self.values_.get_indexer(arr)
        except (TypeError, ValueError):
            idx = self.values_.get_indexer(pd.Index(arr, dtype=object))
        idx = idx.astype(np.int64)
        miss = idx < 0
        if miss.any():
            if self.num_oov_buckets == 1:
                idx[miss] = self.num_known
            else:
                idx[miss] = self.num_known + (stable_hash(arr[miss]) % np.uint64(self.num_oov_buckets)).astype(np.int64)
        return idx

    def inverse_transform(self, indices: Iterable[int]) -> np.ndarray:
        """The original values of known indices (ints stay ints, strings stay strings)."""
        self._check_fitted()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if ((idx < 0) | (idx >= self.num_known)).any():
            bad = idx[(idx < 0) | (idx >= self.num_known)][:5].tolist()
            raise DataValidationError(f"indices {bad} are OOV buckets or out of range [0, {self.num_known}): "
                                      f"they have no original value")
        return self.values_.to_numpy()[idx]

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        vals = self.values_.tolist()
        return {"kind": self.kind, "num_oov_buckets": self.num_oov_buckets, "min_count": self.min_count,
                "max_size": self.max_size, "dtype": self._dtype, "values": vals}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        v = cls(num_oov_buckets=d["num_oov_buckets"], min_count=d["min_count"], max_size=d["max_size"])
        dtype = d["dtype"]
        v.values_ = shared_index(np.asarray(d["values"], dtype=dtype if dtype != "object" else object))
        if dtype == "object" and not len(v.values_):
            v.values_ = pd.Index([], dtype=object)
        v._dtype = dtype
        return v


class HashingVocabulary:
    """Every value to one of ``num_buckets`` buckets by a stable hash: no fit state, any id space."""

    kind = "hashing"

    def __init__(self, *, num_buckets: int, salt: str = "") -> None:
        self.num_buckets = num_buckets
        self.salt = salt

    def fit(self, values: Iterable[Any] | None = None) -> HashingVocabulary:
        if self.num_buckets < 1:
            raise ConfigError(f"num_buckets must be >= 1, got {self.num_buckets}")
        return self

    @property
    def size(self) -> int:
        return self.num_buckets

    @property
    def oov_index(self) -> None:
        return None

    def transform(self, values: Iterable[Any]) -> np.ndarray:
        return (stable_hash(values, self.salt) % np.uint64(self.num_buckets)).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "num_buckets": self.num_buckets, "salt": self.salt}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HashingVocabulary:
        return cls(num_buckets=d["num_buckets"], salt=d["salt"])


def vocabulary_from_dict(d: dict[str, Any]) -> Vocabulary | HashingVocabulary:
    """Rebuild either vocabulary kind from its ``to_dict`` form."""
    kinds = {"vocabulary": Vocabulary, "hashing": HashingVocabulary}
    if d.get("kind") not in kinds:
        raise DataValidationError(f"unknown vocabulary kind {d.get('kind')!r}; expected one of {sorted(kinds)}")
    return kinds[d["kind"]].from_dict(d)
