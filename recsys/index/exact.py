"""The exact reference index: brute-force scores over every eligible item, the oracle for the others.

Filtered search here never takes a shortcut: it scores exactly the eligible items (allow-list,
exclusions, stock, segments), so approximate indexes are measured against it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from recsys.index.core import IndexBase
from recsys.index.filters import FilterConfig, plan_search, topk_exact
from recsys.index.snapshot import Snapshot


class ExactIndex(IndexBase):
    """Brute-force inner-product / cosine search over a float32 matrix (FAISS ``knn`` when unfiltered)."""

    kind = "exact"
    batch_exclusions = False  # the oracle scores every eligible item, request by request

    def __init__(self, *, metric: str = "ip", dim: int | None = None, filter_config: FilterConfig | None = None):
        super().__init__(metric=metric, dim=dim, filter_config=filter_config)

    def _engine_build(self, x: np.ndarray) -> tuple[Any, None]:
        return x.copy(), None

    def _engine_add(self, engine: np.ndarray, x: np.ndarray, drift: None) -> tuple[Any, None]:
        return np.concatenate([engine, x]), None

    def _engine_search(self, engine: np.ndarray, q: np.ndarray, k: int, selector=None, widen: float = 1.0):
        from recsys.index._faiss import import_faiss

        faiss = import_faiss()
        scores, labels = faiss.knn(q, engine, k, metric=faiss.METRIC_INNER_PRODUCT)
        scores[labels < 0] = -np.inf
        return scores, labels

    def _engine_vectors(self, engine: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return engine[labels]

    def _search_group(self, st: Snapshot, q: np.ndarray, k: int, f):
        plan = plan_search(st, f, k, FilterConfig())
        if plan.strategy == "empty":
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if plan.strategy == "plain":
            return self._engine_search(st.engine, q, k)
        labels = plan.candidate_labels()
        return topk_exact(q, labels, lambda a, b: st.engine[labels[a:b]], k)

    def memory_bytes(self) -> int:
        st = self._state_or_raise()
        return int(st.engine.nbytes + st.alive.nbytes + st.in_stock.nbytes + st.seg_code.nbytes
                   + st.ids.external.nbytes)

    def _engine_files(self, engine: np.ndarray) -> dict[str, bytes]:
        buf = io.BytesIO()
        np.save(buf, engine, allow_pickle=False)
        return {"vectors.npy": buf.getvalue()}

    def _engine_from_files(self, files: dict[str, bytes], n_labels: int) -> Any:
        vectors = np.load(io.BytesIO(files["vectors.npy"]), allow_pickle=False)
        if vectors.dtype != np.float32 or vectors.shape != (n_labels, self.dim):
            raise ValueError(f"vectors.npy holds {vectors.dtype} {vectors.shape}; manifest says float32 "
                             f"({n_labels}, {self.dim})")
        return vectors

    def _manifest_extra(self) -> dict:
        return {"factory": "exact"}
