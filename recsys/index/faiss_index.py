"""A FAISS index described by its factory string ("Flat", "HNSW32", "IVF4096,Flat", "IVF4096,PQ32,Refine(SQ8)").

Search knobs (``efSearch``, ``nprobe``, ``k_factor``) are run-time parameters, never rebuilds; set
them by hand in ``search_params`` or measure them with ``tune`` (see ``recsys.index.tuning``).
Internal labels are positions (items are added in order, removals are tombstones), so every
index type supports the same updates; IVF indexes keep a direct map so any item's (decoded)
vector can be scored exactly in the ``subset`` filter strategy.

Updates are copy-on-write: ``add`` clones the FAISS index, adds to the clone while readers keep
searching the old one, then swaps it in. Memory doubles for the duration of an ``add``, so add in
batches on large catalogues.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.errors import ConfigError, DataValidationError
from recsys.index._faiss import faiss_index_parts_pq, knob_names, parts
from recsys.index._faiss import import_faiss as _faiss
from recsys.index.core import IndexBase
from recsys.index.filters import FilterConfig
from recsys.index.tuning import tune_index

DEFAULT_PARAMS = {"efSearch": 128, "nprobe": 16, "k_factor": 4}
DEFAULT_DRIFT_RATIO = 1.5
DRIFT_MIN_ADDED = 200


class FaissIndex(IndexBase):
    """An approximate (or exact, with "Flat") FAISS index with external ids, filters and updates."""

    kind = "faiss"

    def __init__(self, *, factory: str = "HNSW32", metric: str = "ip", dim: int | None = None,
                 search_params: dict | None = None, train_size: int | None = None, seed: int = 0,
                 drift_ratio: float = DEFAULT_DRIFT_RATIO, filter_config: FilterConfig | None = None):
        super().__init__(metric=metric, dim=dim, filter_config=filter_config)
        self.factory = factory
        self.search_params = dict(search_params or {})
        self.train_size = train_size
        self.seed = seed
        self.drift_ratio = drift_ratio
        self.tuning: dict | None = None

    # ------------------------------------------------------------------ engine
    def _new_faiss_index(self):
        faiss = _faiss()
        try:
            return faiss.index_factory(int(self.dim), self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"FAISS cannot parse factory string {self.factory!r} for dim={self.dim}: "
                              f"{str(e).splitlines()[0][:200]}; examples: 'Flat', 'HNSW32', 'IVF1024,Flat', "
                              "'IVF1024,PQ32'") from None

    def _engine_build(self, x: np.ndarray) -> tuple[Any, dict | None]:
        index = self._new_faiss_index()
        p = parts(index)
        sample = x
        if not index.is_trained:
            nlist = p["ivf"].nlist if p["ivf"] is not None else 0
            if p["ivf"] is not None and len(x) < nlist:
                raise DataValidationError(
                    f"factory {self.factory!r} has {nlist} IVF lists but only {len(x)} items were given; "
                    f"use at most IVF{max(1, len(x) // 39)} (39 items per list) or 'HNSW32'/'Flat'")
            size = self.train_size or max(256, 64 * nlist)
            if len(x) > size:
                rng = np.random.default_rng(self.seed)
                sample = x[np.sort(rng.choice(len(x), size, replace=False))]
            if p["ivf"] is not None:
                p["ivf"].cp.seed = self.seed
                p["ivf"].cp.niter = 12
            for part in faiss_index_parts_pq(index):
                part.do_polysemous_training = False  # minutes of training for a code we never use
            try:
                index.train(sample)
            except RuntimeError as e:
                raise DataValidationError(f"training {self.factory!r} on {len(sample)} vectors failed: "
                                          f"{str(e).splitlines()[0][:200]}; give more items or a smaller "
                                          "IVF/PQ") from None
        if p["ivf"] is not None:
            p["ivf"].make_direct_map()
        index.add(x)
        drift = None
        if p["ivf"] is not None:
            d = self._centroid_distance(p["ivf"], sample)
            drift = {"train_mean": float(d.mean()), "added_n": 0, "added_mean": 0.0,
                     "threshold": float(self.drift_ratio), "ratio": 0.0, "drifted": False}
        return index, drift

    @staticmethod
    def _centroid_distance(ivf, x: np.ndarray) -> np.ndarray:
        """Euclidean distance of each vector to the centroid of the IVF list it is assigned to."""
        centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        _, assign = ivf.quantizer.search(x, 1)
        return np.linalg.norm(x - centroids[assign[:, 0]], axis=1)

    def _engine_add(self, engine: Any, x: np.ndarray, drift: dict | None) -> tuple[Any, dict | None]:
        new = _faiss().clone_index(engine)
        new.add(x)
        if drift is not None:
            d = self._centroid_distance(parts(new)["ivf"], x)
            n = drift["added_n"] + len(x)
            mean = (drift["added_mean"] * drift["added_n"] + float(d.sum())) / n
            ratio = mean / max(drift["train_mean"], 1e-12)
            drift = {**drift, "added_n": n, "added_mean": mean, "ratio": ratio,
                     "drifted": bool(n >= DRIFT_MIN_ADDED and ratio > drift["threshold"])}
        return new, drift

    def effective_params(self) -> dict:
        """The knob values searches use now (defaults for knobs not set): ``efSearch``, ``nprobe``, ``k_factor``."""
        st = self._state_or_raise()
        return {name: self.search_params.get(name, DEFAULT_PARAMS[name]) for name in knob_names(st.engine)}

    def _engine_search(self, engine: Any, q: np.ndarray, k: int, selector=None, widen: float = 1.0,
                       params: dict | None = None):
        faiss = _faiss()
        p = parts(engine)
        knobs = {**DEFAULT_PARAMS, **self.search_params, **(params or {})}
        keep = []
        if p["hnsw"] is not None:
            base = faiss.SearchParametersHNSW(efSearch=max(int(knobs["efSearch"] * widen), k))
        elif p["ivf"] is not None:
            base = faiss.SearchParametersIVF(nprobe=min(p["ivf"].nlist, max(1, int(knobs["nprobe"] * widen))))
        else:
            base = faiss.SearchParameters()
        if selector is not None:
            base.sel = selector
        keep.append(base)
        sp = base
        if p["refine"] is not None:
            sp = faiss.IndexRefineSearchParameters(k_factor=float(knobs["k_factor"]), base_index_params=base)
            keep.append(sp)
        scores, labels = engine.search(q, k, params=sp)
        scores[labels < 0] = -np.inf
        return scores, labels

    def _engine_vectors(self, engine: Any, labels: np.ndarray) -> np.ndarray:
        """Stored vectors at ``labels`` (decoded from SQ/PQ codes where the index is lossy)."""
        faiss = _faiss()
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if not len(labels):
            return np.empty((0, self.dim), np.float32)
        p = parts(engine)
        store = (p["refine"].refine_index if p["refine"] is not None
                 else p["hnsw"].storage if p["hnsw"] is not None else engine)
        store = faiss.downcast_index(store)
        if isinstance(store, faiss.IndexFlatCodes) and store.ntotal:
            # batch-decode a view of the code array: one call instead of one reconstruct per item
            view = faiss.rev_swig_ptr(store.codes.data(), store.ntotal * store.code_size)
            codes = np.asarray(view).reshape(store.ntotal, store.code_size)
            return store.sa_decode(np.ascontiguousarray(codes[labels]))
        return engine.reconstruct_batch(labels)

    # ------------------------------------------------------------------ extras
    def tune(self, sample_queries: np.ndarray, *, k: int = 100, recall_target: float = 0.95,
             reference_vectors: np.ndarray | None = None) -> dict:
        """Set the fastest knobs reaching ``recall_target`` (recall@k vs exact on the sample); see tuning.py."""
        return tune_index(self, sample_queries, k=k, recall_target=recall_target,
                          reference_vectors=reference_vectors)

    def memory_bytes(self) -> int:
        """Bytes of the FAISS index (serialized size) plus ids and attribute arrays."""
        st = self._state_or_raise()
        meta = st.alive.nbytes + st.in_stock.nbytes + st.seg_code.nbytes + st.ids.external.nbytes
        if st.ids.keys is not None:
            meta += st.ids.keys.nbytes + st.ids.key_labels.nbytes
        faiss, size = _faiss(), [0]

        def count(chunk: bytes) -> int:  # count the serialized bytes without holding a copy
            size[0] += len(chunk)
            return len(chunk)

        writer = faiss.PyCallbackIOWriter(count)
        faiss.write_index(st.engine, writer)
        del writer
        return size[0] + meta

    def raw_search(self, queries: np.ndarray, k: int, params: dict | None = None):
        """Unfiltered ANN search on internal labels with explicit knobs (for tuning and benchmarks)."""
        st = self._state_or_raise()
        return self._engine_search(st.engine, self._prep(queries, "queries"), k, params=params)

    def _engine_files(self, engine: Any) -> dict[str, bytes]:
        return {"index.faiss": _faiss().serialize_index(engine).tobytes()}

    def _engine_from_files(self, files: dict[str, bytes], n_labels: int) -> Any:
        faiss = _faiss()
        index = faiss.deserialize_index(np.frombuffer(files["index.faiss"], dtype=np.uint8))
        if index.d != self.dim or index.ntotal != n_labels:
            raise ValueError(f"index file holds d={index.d}, ntotal={index.ntotal}; manifest says "
                             f"dim={self.dim}, stored={n_labels}")
        return index

    def _manifest_extra(self) -> dict:
        return {"factory": self.factory, "search_params": self.effective_params(), "tuning": self.tuning,
                "train_size": self.train_size, "seed": self.seed, "drift_ratio": self.drift_ratio}

    @classmethod
    def _from_manifest(cls, manifest: dict, filter_config: FilterConfig) -> FaissIndex:
        index = cls(factory=manifest["factory"], metric=manifest["metric"], dim=manifest["dim"],
                    search_params=manifest.get("search_params"), train_size=manifest.get("train_size"),
                    seed=manifest.get("seed", 0), drift_ratio=manifest.get("drift_ratio", DEFAULT_DRIFT_RATIO),
                    filter_config=filter_config)
        index.tuning = manifest.get("tuning")
        return index
