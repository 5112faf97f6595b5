"""Filtered search planning: which items a request may see and how to search them.

Three strategies, chosen per request by the number of eligible items (its *selectivity*):

* ``subset``: few eligible items (at most ``subset_max``): score them all exactly from their
  stored (or decoded) vectors. Exact, and the fastest for small pools (a 1% allow-list).
* ``postfilter``: most items eligible (selectivity >= ``postfilter_min``): over-fetch
  ``k / selectivity`` candidates from the ANN index and drop the ineligible ones, retrying with a
  larger fetch (backfill) until ``k`` remain.
* ``selector``: everything in between: pass a FAISS ``IDSelectorBitmap``/``IDSelectorBatch`` in
  the search parameters so the index only returns eligible items, with ``nprobe``/``efSearch``
  widened by ``1/selectivity`` (capped), since the eligible neighbours are further away.

Whatever the strategy, a row with fewer than ``k`` results while ``k`` eligible items exist is
completed by the exact ``subset`` path, so a request always gets ``k`` items when they exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys.index.base import SearchFilters

DEFAULT_SUBSET_MAX = 262_144  # 64-d: ~17M multiply-adds, a few ms on one core; beats a filtered ANN scan
DEFAULT_POSTFILTER_MIN = 0.3
MAX_WIDEN = 16.0
CACHE_MAX_ENTRIES = 64
VECTOR_CACHE_MAX_BYTES = 256 * 2**20  # per snapshot: gathered vectors of the allow-lists in use


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the strategy choice (see the module docstring)."""

    subset_max: int = DEFAULT_SUBSET_MAX
    postfilter_min: float = DEFAULT_POSTFILTER_MIN
    max_widen: float = MAX_WIDEN


@dataclass
class FilterPlan:
    """The eligible set of one request and how to search it.

    Eligible = (``labels`` if an allow-list was given, else ``base_mask``) minus ``excluded``.
    """

    strategy: str  # "plain" | "empty" | "subset" | "postfilter" | "selector"
    count: int  # number of eligible items
    n_total: int  # labels in the index (live and hidden)
    base_mask: np.ndarray | None  # index-wide eligibility (alive, stock, segment); None = all
    labels: np.ndarray | None = None  # allow-list labels that pass the base mask, sorted
    excluded: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # eligible but excluded
    cache: dict | None = None  # the snapshot's cache, for reusable pieces keyed by ``cache_key``
    cache_key: tuple | None = None  # identifies the eligible set before ``exclude`` (allow-list and/or base filters)

    @property
    def selectivity(self) -> float:
        return self.count / max(self.n_total, 1)

    def candidate_labels(self) -> np.ndarray:
        """All eligible labels, sorted."""
        if self.labels is not None:
            base = self.labels
        else:
            base = np.arange(self.n_total, dtype=np.int64) if self.base_mask is None else np.flatnonzero(self.base_mask)
        return base if not len(self.excluded) else np.setdiff1d(base, self.excluded, assume_unique=True)

    def mask(self) -> np.ndarray:
        """Boolean eligibility over all labels."""
        if self.labels is not None:
            m = np.zeros(self.n_total, dtype=bool)
            m[self.labels] = True
        else:
            m = np.ones(self.n_total, dtype=bool) if self.base_mask is None else self.base_mask.copy()
        m[self.excluded] = False
        return m

    def is_eligible(self, labels: np.ndarray) -> np.ndarray:
        """Eligibility of (any shape of) labels; -1 is never eligible."""
        labels = np.asarray(labels)
        ok = labels >= 0
        safe = np.where(ok, labels, 0)
        if self.labels is not None:
            if not len(self.labels):
                return np.zeros(labels.shape, bool)
            pos = np.clip(np.searchsorted(self.labels, safe), 0, len(self.labels) - 1)
            ok &= self.labels[pos] == safe
        elif self.base_mask is not None:
            ok &= self.base_mask[safe]
        if len(self.excluded):
            ok &= ~np.isin(safe, self.excluded)
        return ok


def base_mask(state, f: SearchFilters) -> tuple[np.ndarray | None, int]:
    """Index-wide eligibility for the stock/segment part of ``f``, cached on the snapshot."""
    codes = frozenset(state.segment_codes(f.segments))
    key = (f.require_in_stock, codes)
    hit = state.cache.get(key)
    if hit is not None:
        return hit
    mask = state.alive.copy()
    if f.require_in_stock:
        mask &= state.in_stock
    if state.seg_code.any():
        seg_ok = state.seg_code == 0
        for c in codes:
            seg_ok |= state.seg_code == c
        mask &= seg_ok
    count = int(mask.sum())
    result = (None if count == len(mask) else mask, count)
    state.cache[key] = result
    return result


def plan_search(state, f: SearchFilters | None, k: int, config: FilterConfig) -> FilterPlan:
    """Resolve ``f`` against a snapshot and choose the strategy."""
    f = f or SearchFilters()
    n_total = len(state.alive)
    mask, count = base_mask(state, f)
    labels = cache_key = None
    if f.allow is not None:
        cache_key = ("allow", f.require_in_stock, frozenset(state.segment_codes(f.segments)), f.allow)
        labels = state.cache.get(cache_key)
        if labels is None:
            labels = state.ids.lookup_filter_ids(f.allow)
            if mask is not None:
                labels = labels[mask[labels]]
            if len(state.cache) > CACHE_MAX_ENTRIES:
                state.cache.clear()
            state.cache[cache_key] = labels
        count = len(labels)
    elif mask is not None:  # the base filters alone (stock, segments): their selector bitmap is reusable too
        cache_key = ("base", f.require_in_stock, frozenset(state.segment_codes(f.segments)))
    excluded = np.empty(0, np.int64)
    if f.exclude:
        excluded = state.ids.lookup_filter_ids(f.exclude)
        if labels is not None:
            excluded = np.intersect1d(excluded, labels, assume_unique=True)
        elif mask is not None:
            excluded = excluded[mask[excluded]]
        count -= len(excluded)
    plan = FilterPlan("plain", count, n_total, mask, labels, excluded, state.cache, cache_key)
    if count == 0:
        plan.strategy = "empty"
    elif labels is None and mask is None and not len(excluded):
        plan.strategy = "plain"
    elif count <= config.subset_max:
        plan.strategy = "subset"
    elif plan.selectivity >= config.postfilter_min:
        plan.strategy = "postfilter"
    else:
        plan.strategy = "selector"
    return plan


def make_selector(plan: FilterPlan):
    """A FAISS IDSelector for the plan's eligible set (bitmap when dense, batch when sparse).

    The caller must keep the returned tuple alive while FAISS searches (it owns the buffers).
    """
    from recsys.index._faiss import import_faiss

    faiss = import_faiss()

    if plan.labels is not None and plan.count * 64 < plan.n_total:
        labels = np.ascontiguousarray(plan.labels, dtype=np.int64)
        return faiss.IDSelectorBatch(len(labels), faiss.swig_ptr(labels)), labels
    reusable = plan.cache_key is not None and plan.cache is not None and not len(plan.excluded)
    key = ("bits",) + plan.cache_key if reusable else None
    bits = plan.cache.get(key) if key is not None else None
    if bits is None:
        bits = np.packbits(plan.mask(), bitorder="little")
        if key is not None:
            plan.cache[key] = bits
    return faiss.IDSelectorBitmap(plan.n_total, faiss.swig_ptr(bits)), bits


def keep_eligible(scores: np.ndarray, labels: np.ndarray, plan: FilterPlan, k: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop ineligible results row by row, keep the first ``k``; return (scores, labels, found)."""
    ok = plan.is_eligible(labels)
    order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
    s = np.take_along_axis(scores, order, axis=1)
    lab = np.take_along_axis(labels, order, axis=1)
    good = np.take_along_axis(ok, order, axis=1)
    s = np.where(good, s, -np.inf).astype(np.float32)
    lab = np.where(good, lab, -1)
    if s.shape[1] < k:
        pad = k - s.shape[1]
        s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
        lab = np.pad(lab, ((0, 0), (0, pad)), constant_values=-1)
    return s, lab, good.sum(axis=1)


def subset_search(plan: FilterPlan, queries: np.ndarray, k: int, fetch_vectors) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` over the eligible items; an allow-list's gathered vectors are cached on the snapshot."""
    if plan.labels is None:
        labels = plan.candidate_labels()
        return topk_exact(queries, labels, lambda a, b: fetch_vectors(labels[a:b]), k)
    labels, cache = plan.labels, plan.cache
    key = ("vectors",) + plan.cache_key if plan.cache_key is not None and cache is not None else None
    vectors = cache.get(key) if key is not None else None
    if vectors is None and key is not None:
        used = cache.get("vector_bytes", 0)
        size = len(labels) * 4 * (queries.shape[1] if queries.ndim == 2 else 1)
        if used + size <= VECTOR_CACHE_MAX_BYTES:
            vectors = fetch_vectors(labels)
            cache[key] = vectors
            cache["vector_bytes"] = used + vectors.nbytes
    if vectors is not None:
        return topk_exact(queries, labels, lambda a, b: vectors[a:b], k, drop=plan.excluded)
    return topk_exact(queries, labels, lambda a, b: fetch_vectors(labels[a:b]), k, drop=plan.excluded)


def topk_exact(queries: np.ndarray, labels: np.ndarray, vectors_of, k: int, drop: np.ndarray | None = None,
               chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of ``queries`` over ``labels``; ``vectors_of(a, b)`` gives the vectors of labels[a:b].

    Labels in ``drop`` are never returned; rows with fewer candidates are padded with -inf / -1.
    """
    nq = len(queries)
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_l = np.full((nq, 0), -1, dtype=np.int64)
    qt = np.ascontiguousarray(queries.T)
    for start in range(0, len(labels), chunk):
        lab = labels[start:start + chunk]
        v = vectors_of(start, start + len(lab))
        s = (v @ queries[0])[None, :] if nq == 1 else (v @ qt).T  # (m, d) @ (d, nq): BLAS-friendly
        if drop is not None and len(drop):
            s = s.copy() if not s.flags.writeable else s
            s[:, np.isin(lab, drop)] = -np.inf
        s = np.concatenate([best_s, s.astype(np.float32)], axis=1)
        lab_all = np.concatenate([best_l, np.broadcast_to(lab, (nq, len(lab)))], axis=1)
        if s.shape[1] > k:
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
            s, lab_all = np.take_along_axis(s, part, axis=1), np.take_along_axis(lab_all, part, axis=1)
        best_s, best_l = s, lab_all
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_s, best_l = np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_l, order, axis=1)
    best_l = np.where(np.isneginf(best_s), -1, best_l)
    if best_s.shape[1] < k:
        pad = k - best_s.shape[1]
        best_s = np.pad(best_s, ((0, 0), (0, pad)), constant_values=-np.inf)
        best_l = np.pad(best_l, ((0, 0), (0, pad)), constant_values=-1)
    return best_s, best_l
