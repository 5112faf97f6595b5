"""Shared machinery of every index: ids, item attributes, snapshots, updates and filtered search.

Subclasses supply the storage ("engine") through five hooks: ``_engine_build``, ``_engine_add``
(copy-on-write: return a new engine, never modify the one readers hold), ``_engine_search``,
``_engine_vectors`` and the persistence pair ``_engine_files`` / ``_engine_from_files``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import DataValidationError
from recsys.index.base import METRICS, FiltersArg, SearchFilters
from recsys.index.filters import FilterConfig, keep_eligible, make_selector, plan_search, subset_search
from recsys.index.ids import IdMap, normalize_ids
from recsys.index.snapshot import Snapshot

HIDDEN_FRACTION_REBUILD = 0.25


class RebuildRecommendedWarning(UserWarning):
    """The index still answers correctly, but a rebuild would restore its speed or recall."""


class IndexBase:
    """Implements the ``ItemIndex`` contract (documented in ``recsys.index.base``)."""

    kind = "base"
    batch_exclusions = True  # see _search_exclusion_batches

    def __init__(self, *, metric: str = "ip", dim: int | None = None, filter_config: FilterConfig | None = None):
        self.metric = metric
        self.dim = dim
        self.filter_config = filter_config or FilterConfig()
        self._state: Snapshot | None = None
        self._lock = threading.Lock()
        self._drift_warned = False

    # ------------------------------------------------------------------ inputs
    def _check_config(self) -> None:
        if self.metric not in METRICS:
            raise DataValidationError(f"metric must be one of {METRICS}, got {self.metric!r}")

    def _prep(self, x: Any, what: str, n_rows: int | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise DataValidationError(f"{what} must be a 2-D array (rows, dim), got shape {x.shape}")
        if self.dim is None:
            self.dim = int(x.shape[1])
        if x.shape[1] != self.dim:
            raise DataValidationError(f"{what} have dimension {x.shape[1]} but the index has dim={self.dim}")
        if n_rows is not None and len(x) != n_rows:
            raise DataValidationError(f"{what} have {len(x)} rows but {n_rows} ids were given; pass one id per row")
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise DataValidationError(f"{what} contain NaN or inf (first at row {bad}); clean them before indexing")
        x = np.ascontiguousarray(x)
        if self.metric == "cosine":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _state_or_raise(self) -> Snapshot:
        st = self._state
        if st is None:
            raise DataValidationError(f"{type(self).__name__} is empty: call build(embeddings, ids) first")
        return st

    # ------------------------------------------------------------------ updates
    def build(self, embeddings: np.ndarray, ids: Sequence[int | str]) -> IndexBase:
        """Replace the whole content with ``embeddings`` under external ``ids``."""
        self._check_config()
        kind, ext = normalize_ids(ids)
        if kind is None:
            raise DataValidationError("build() needs at least one item; got no ids")
        x = self._prep(embeddings, "embeddings", len(ext))
        with self._lock:
            idmap, _, _, _ = IdMap.empty().append(ext, kind)
            engine, drift = self._engine_build(x)
            n = len(ext)
            self._state = Snapshot(engine, idmap, np.ones(n, bool), np.ones(n, bool), np.zeros(n, np.int32),
                                   (), drift)
            self._drift_warned = False
        return self

    def add(self, embeddings: np.ndarray, ids: Sequence[int | str]) -> None:
        """Append items; an existing id gets its embedding replaced (old vector hidden, attributes kept)."""
        kind, ext = normalize_ids(ids)
        if kind is None:
            return
        x = self._prep(embeddings, "embeddings", len(ext))
        with self._lock:
            st = self._state_or_raise()
            idmap, new_labels, old, old_new = st.ids.append(ext, kind)
            engine, drift = self._engine_add(st.engine, x, st.drift)
            m = len(new_labels)
            alive = np.concatenate([st.alive, np.ones(m, bool)])
            alive[old] = False
            in_stock = np.concatenate([st.in_stock, np.ones(m, bool)])
            in_stock[old_new] = st.in_stock[old]
            seg = np.concatenate([st.seg_code, np.zeros(m, np.int32)])
            seg[old_new] = st.seg_code[old]
            self._state = st.evolve(engine=engine, ids=idmap, alive=alive, in_stock=in_stock, seg_code=seg,
                                    drift=drift)
        self._maybe_warn()

    def remove(self, ids: Sequence[int | str]) -> int:
        """Hide items at once; unknown ids are ignored. Returns how many were removed."""
        kind, ext = normalize_ids(ids, "ids to remove")
        with self._lock:
            st = self._state_or_raise()
            idmap, dropped = st.ids.drop(ext, kind)
            if not len(dropped):
                return 0
            alive = st.alive.copy()
            alive[dropped] = False
            self._state = st.evolve(ids=idmap, alive=alive)
        self._maybe_warn()
        return len(dropped)

    def set_item_attributes(self, ids: Sequence[int | str], *, in_stock: Any = None, eligibility: Any = None) -> int:
        """Set availability and eligibility segment ("" or None = everyone) per item; unknown ids are skipped."""
        kind, ext = normalize_ids(ids)
        with self._lock:
            st = self._state_or_raise()
            labels = st.ids.labels_of(ext, kind)
            known = labels >= 0
            changes: dict = {}
            if in_stock is not None:
                vals = np.broadcast_to(np.asarray(in_stock, dtype=bool), labels.shape)
                stock = st.in_stock.copy()
                stock[labels[known]] = vals[known]
                changes["in_stock"] = stock
            if eligibility is not None:
                tags = [eligibility] * len(ext) if eligibility is None or isinstance(eligibility, str) else list(eligibility)
                if len(tags) != len(ext):
                    raise DataValidationError(f"eligibility has {len(tags)} values for {len(ext)} ids; pass one per id")
                segments = list(st.segments)
                lookup = {s: i + 1 for i, s in enumerate(segments)}
                codes = np.zeros(len(tags), np.int32)
                for i, t in enumerate(tags):
                    if t is None or t == "" or (isinstance(t, float) and np.isnan(t)):
                        continue
                    if not isinstance(t, str):
                        raise DataValidationError(f"eligibility must be str or None, got {t!r} for id {ext[i]!r}")
                    if t not in lookup:
                        segments.append(t)
                        lookup[t] = len(segments)
                    codes[i] = lookup[t]
                seg = st.seg_code.copy()
                seg[labels[known]] = codes[known]
                changes.update(seg_code=seg, segments=tuple(segments))
            if changes:
                self._state = st.evolve(**changes)
            return int(known.sum())

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int, filters: FiltersArg = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` eligible items per query: ``(scores (n, k) float32, ids (n, k))``, best first."""
        st = self._state_or_raise()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise DataValidationError(f"k must be a positive int, got {k!r}")
        k = int(k)
        q = self._prep(queries, "queries")
        nq = len(q)
        if filters is None or isinstance(filters, SearchFilters):
            per_row = [filters] * nq
        else:
            per_row = list(filters)
            if len(per_row) != nq:
                raise DataValidationError(f"got {len(per_row)} filters for {nq} queries; pass one per query or one for all")
        groups: dict = {}
        for row, f in enumerate(per_row):
            if f is not None and not isinstance(f, SearchFilters):
                raise DataValidationError(f"filters must be SearchFilters, got {type(f).__name__} at row {row}")
            groups.setdefault(f, []).append(row)
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        labels = np.full((nq, k), -1, dtype=np.int64)
        if self.batch_exclusions and len(groups) > 1:
            groups = self._search_exclusion_batches(st, q, k, groups, scores, labels)
        for f, rows in groups.items():
            s, lab = self._search_group(st, q[rows], k, f)
            scores[rows], labels[rows] = s, lab
        return scores, st.ids.external_of(labels)

    def _search_exclusion_batches(self, st: Snapshot, q: np.ndarray, k: int, groups: dict,
                                  scores: np.ndarray, labels: np.ndarray) -> dict:
        """One over-fetching ANN call for many queries whose filters differ only in ``exclude``
        (a nightly batch: every user's own seen items); returns the groups left to search one by one."""
        by_base: dict = {}
        for f, rows in groups.items():
            if f is not None and f.allow is None and f.exclude:
                by_base.setdefault((f.segments, f.require_in_stock), []).append((f, rows))
        rest = dict(groups)
        for (segments, stock), members in by_base.items():
            base = plan_search(st, SearchFilters(segments=segments, require_in_stock=stock), k, self.filter_config)
            if len(members) < 2 or base.strategy not in ("plain", "postfilter"):
                continue
            plans = [plan_search(st, f, k, self.filter_config) for f, _ in members]
            rows = np.concatenate([np.asarray(r) for _, r in members])
            max_ex = max(len(p.excluded) for p in plans)
            fetch = min(base.n_total, int(np.ceil((k + max_ex) / max(base.selectivity, 1e-9) * 1.25)) + 8)
            widen = min(self.filter_config.max_widen, 1.0 / max(base.selectivity, 1e-9))
            s_all, lab_all = self._engine_search(st.engine, q[rows], fetch, widen=widen)
            start = 0
            for (f, r), plan in zip(members, plans, strict=True):
                sl = slice(start, start + len(r))
                start += len(r)
                s, lab, found = keep_eligible(s_all[sl], lab_all[sl], plan, k)
                if (found >= min(k, plan.count)).all():
                    scores[r], labels[r] = s, lab
                    del rest[f]
        return rest

    def _search_group(self, st: Snapshot, q: np.ndarray, k: int, f: SearchFilters | None):
        plan = plan_search(st, f, k, self.filter_config)
        if plan.strategy == "empty":
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        vectors_of = lambda lab: self._engine_vectors(st.engine, lab)  # noqa: E731
        if plan.strategy == "subset":
            return subset_search(plan, q, k, vectors_of)
        if plan.strategy == "plain":
            s, lab = self._engine_search(st.engine, q, k)
            return keep_eligible(s, lab, plan, k)[:2]
        widen = min(self.filter_config.max_widen, 1.0 / plan.selectivity)
        if f is not None and not f.widen:  # the index's own knobs: the selector returns the best eligible items of
            widen, plan.strategy = 1.0, "selector"  # the lists it scans, which over-fetching could only approximate
        if plan.strategy == "postfilter":
            fetch = min(plan.n_total, int(np.ceil(k / plan.selectivity * 1.25)) + len(plan.excluded) + 8)
            while True:
                s, lab = self._engine_search(st.engine, q, fetch, widen=widen)
                s, lab, found = keep_eligible(s, lab, plan, k)
                if (found >= min(k, plan.count)).all() or fetch >= plan.n_total:
                    break
                fetch = min(plan.n_total, fetch * 4)
        else:
            sel, _keep_alive = make_selector(plan)
            s, lab = self._engine_search(st.engine, q, k, selector=sel, widen=widen)
            if len(plan.excluded):
                s, lab, found = keep_eligible(s, lab, plan, k)
            else:  # the selector is the eligible set: every label it lets through is eligible, -1 pads the rest
                found = (lab >= 0).sum(axis=1)
        short = np.flatnonzero(found < min(k, plan.count))
        if len(short):
            s[short], lab[short] = subset_search(plan, q[short], k, vectors_of)
        return s, lab

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        st = self._state
        return 0 if st is None else int(st.alive.sum())

    @property
    def ids(self) -> np.ndarray:
        """External ids of the live items, in insertion order."""
        st = self._state_or_raise()
        return st.ids.external[st.alive]

    def _maybe_warn(self) -> None:
        h = self.health()
        if h["rebuild_recommended"] and not self._drift_warned:
            self._drift_warned = True
            warnings.warn("index rebuild recommended: " + "; ".join(h["reasons"]), RebuildRecommendedWarning,
                          stacklevel=3)

    def effective_params(self) -> dict:
        """The search knobs searches use now ({} for an index without knobs, like the exact one)."""
        return {}

    def health(self) -> dict:
        """Counts, hidden fraction, partition drift and whether a rebuild (``build``) is recommended."""
        st = self._state_or_raise()
        n_labels, n_alive = len(st.alive), int(st.alive.sum())
        hidden = n_labels - n_alive
        reasons = []
        if n_labels and hidden / n_labels > HIDDEN_FRACTION_REBUILD:
            reasons.append(f"{hidden / n_labels:.0%} of stored vectors are hidden (removed or replaced); "
                           "build() with the live items to reclaim memory and speed")
        drift = dict(st.drift) if st.drift else None
        if drift and drift.get("drifted"):
            reasons.append(f"added items lie {drift['ratio']:.2f}x further from their IVF centroid than the "
                           f"training items (threshold {drift['threshold']:.2f}); build() again to retrain the partition")
        return {"kind": self.kind, "count": n_alive, "stored": n_labels, "hidden": hidden,
                "hidden_fraction": hidden / n_labels if n_labels else 0.0, "drift": drift,
                "rebuild_recommended": bool(reasons), "reasons": reasons}

    def save(self, path: str | Path) -> Path:
        """Save atomically to directory ``path`` (see ``recsys.index.persistence``)."""
        from recsys.index.persistence import save_index

        return save_index(self, path)

    @classmethod
    def _from_manifest(cls, manifest: dict, filter_config: FilterConfig) -> IndexBase:
        """An empty index with the settings a saved manifest records (the load side of ``_manifest_extra``)."""
        return cls(metric=manifest["metric"], dim=manifest["dim"], filter_config=filter_config)

    # ------------------------------------------------------------------ hooks
    def _engine_build(self, x: np.ndarray) -> tuple[Any, dict | None]:
        raise NotImplementedError

    def _engine_add(self, engine: Any, x: np.ndarray, drift: dict | None) -> tuple[Any, dict | None]:
        raise NotImplementedError

    def _engine_search(self, engine: Any, q: np.ndarray, k: int, selector=None, widen: float = 1.0):
        raise NotImplementedError

    def _engine_vectors(self, engine: Any, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError
