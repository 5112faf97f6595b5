"""Numeric transforms, price buckets and hashed title tokens; each fitted on training data, JSON-serialisable."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError
from recsys.features.vocab import stable_hash

__all__ = ["NumericScaler", "QuantileBuckets", "HashedTokens", "tokenize"]


def _floats(values: Iterable[Any]) -> np.ndarray:
    return pd.to_numeric(pd.Series(np.asarray(values, dtype=object).reshape(-1)), errors="coerce").to_numpy(np.float64)


class NumericScaler:
    """Optional ``log1p`` then standardisation with training mean/std; missing values become 0 (the mean)."""

    def __init__(self, *, log1p: bool = True) -> None:
        self.log1p = log1p

    def _pre(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(np.clip(x, 0, None)) if self.log1p else x

    def fit(self, values: Iterable[Any]) -> NumericScaler:
        x = self._pre(_floats(values))
        x = x[np.isfinite(x)]
        self.mean_ = float(x.mean()) if len(x) else 0.0
        self.std_ = float(x.std()) if len(x) and x.std() > 0 else 1.0
        return self

    def transform(self, values: Iterable[Any]) -> np.ndarray:
        x = (self._pre(_floats(values)) - self.mean_) / self.std_
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"log1p": self.log1p, "mean": self.mean_, "std": self.std_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericScaler:
        s = cls(log1p=d["log1p"])
        s.mean_, s.std_ = d["mean"], d["std"]
        return s


class QuantileBuckets:
    """Bucket a number by training quantiles (e.g. price bands): 1..num_buckets, 0 for missing."""

    def __init__(self, *, num_buckets: int = 10) -> None:
        self.num_buckets = num_buckets

    def fit(self, values: Iterable[Any]) -> QuantileBuckets:
        if self.num_buckets < 2:
            raise ConfigError(f"num_buckets must be >= 2, got {self.num_buckets}")
        x = _floats(values)
        x = x[np.isfinite(x)]
        qs = np.quantile(x, np.linspace(0, 1, self.num_buckets + 1)[1:-1]) if len(x) else np.array([])
        self.edges_ = np.unique(qs).tolist()
        return self

    @property
    def size(self) -> int:
        """Embedding rows needed: missing bucket + len(edges) + 1 bands."""
        return len(self.edges_) + 2

    def transform(self, values: Iterable[Any]) -> np.ndarray:
        x = _floats(values)
        out = np.searchsorted(np.asarray(self.edges_, dtype=np.float64), x, side="right").astype(np.int64) + 1
        out[~np.isfinite(x)] = 0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"num_buckets": self.num_buckets, "edges": self.edges_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileBuckets:
        b = cls(num_buckets=d["num_buckets"])
        b.edges_ = list(d["edges"])
        return b


_WORD = re.compile(r"[0-9a-z]+|[\u4e00-\u9fff]", re.IGNORECASE)


def tokenize(text: Any) -> list[str]:
    """Lower-cased latin words and digits, and single CJK characters (titles mix both)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return [t.lower() for t in _WORD.findall(str(text))]


class HashedTokens:
    """Title bag of words as [n, max_tokens] hashed token ids in 1..num_buckets-1 (0 = padding).

    Needs no fit (the hash is the vocabulary), so any word at inference has a bucket.
    """

    def __init__(self, *, num_buckets: int = 1 << 14, max_tokens: int = 16, salt: str = "title") -> None:
        self.num_buckets = num_buckets
        self.max_tokens = max_tokens
        self.salt = salt

    def fit(self, values: Iterable[Any] | None = None) -> HashedTokens:
        if self.num_buckets < 2 or self.max_tokens < 1:
            raise ConfigError(f"need num_buckets >= 2 and max_tokens >= 1, got {self.num_buckets}, {self.max_tokens}")
        return self

    @property
    def size(self) -> int:
        return self.num_buckets

    def transform(self, values: Iterable[Any]) -> np.ndarray:
        texts = list(np.asarray(values, dtype=object).reshape(-1))
        toks = [tokenize(t)[: self.max_tokens] for t in texts]
        out = np.zeros((len(texts), self.max_tokens), dtype=np.int64)
        flat = [t for ts in toks for t in ts]
        if flat:
            ids = (stable_hash(flat, self.salt) % np.uint64(self.num_buckets - 1)).astype(np.int64) + 1
            lens = np.array([len(ts) for ts in toks])
            rows = np.repeat(np.arange(len(texts)), lens)
            cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
            out[rows, cols] = ids
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"num_buckets": self.num_buckets, "max_tokens": self.max_tokens, "salt": self.salt}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HashedTokens:
        return cls(num_buckets=d["num_buckets"], max_tokens=d["max_tokens"], salt=d["salt"])
