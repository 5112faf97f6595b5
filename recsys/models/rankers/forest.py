"""Several tree ensembles compiled into one flat layout, walked together with a few array gathers per level.

:meth:`TreeEnsemble.decision_function <recsys.models.rankers.gbdt.TreeEnsemble.decision_function>` is
the reference walk; this layout gives the same log-odds (bit for bit: the same leaves, summed in the
same order) at a fraction of the cost on the few hundred rows of a request:

* every tree's children sit side by side (``child`` is the left one, ``child + 1`` the right), so a
  step is ``node = child[node] + (x > threshold[node])``;
* a missing value goes where training sent it by reading the feature from one of two copies of the
  row: NaN as -inf (goes left) or NaN as +inf (goes right), chosen per node;
* a leaf loops onto itself (threshold +inf), and (row, tree) pairs that reached a leaf are dropped
  from the walk once a quarter of them are done. Infinite split thresholds (a split of missing values
  alone) and infinite feature values become the largest float, so only leaves hold +inf.

Three walks give these leaves; ``engine`` says which one a forest uses:

* ``"compiled"``: this package's C walk (``_walk.c``, built at install, optional): every tree for
  every row in one call, blocks of 8 rows stepping together; several times faster than
  scikit-learn's on a request's few hundred rows (one call, not one per tree: the figures are in
  ``experiments/recommend``);
* ``"sklearn"``: scikit-learn's compiled walk (its nodes layout and ``_predict_from_raw_data``, the
  routine ``HistGradientBoosting*.predict`` runs), called once per tree; private to scikit-learn;
* ``"numpy"``: the array walk above, always available.

``"auto"`` takes the first of these that is available and gives the array walk's leaves on a seeded
test matrix with missing and extreme values when the forest is compiled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CompiledForest", "ENGINES"]

ENGINES = ("auto", "compiled", "sklearn", "numpy")
_BIG = float(np.finfo(np.float64).max)


class CompiledForest:
    """Ensembles (each: ``arrays`` of a TreeEnsemble) compiled for ``n_features`` columns; see the module docstring.

    ``engine``: "auto" (the first of "compiled", "sklearn", "numpy" that is available and agrees with the
    array walk), or one of those three to insist on it (ValueError when it is unavailable or disagrees).
    """

    def __init__(self, ensembles: Sequence, n_features: int, engine: str = "auto") -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.n_features = int(n_features)
        self.baselines = [float(e.arrays["baseline"][0]) for e in ensembles]
        slots: list[tuple[int, int]] = []
        bounds = [0]
        for e, ens in enumerate(ensembles):
            slots += [(e, int(r)) for r in ens.arrays["roots"]]
            bounds.append(len(slots))
        self.bounds = bounds
        self.roots = np.arange(len(slots), dtype=np.int32)
        child: dict[int, int] = {}
        i = 0
        while i < len(slots):  # breadth first: each internal node's two children get adjacent slots
            e, n = slots[i]
            a = ensembles[e].arrays
            if not a["is_leaf"][n]:
                child[i] = len(slots)
                slots += [(e, int(a["left"][n])), (e, int(a["right"][n]))]
            i += 1
        size = len(slots)
        self.threshold = np.full(size, np.inf)
        self.feature = np.zeros(size, np.int32)
        self.child = np.arange(size, dtype=np.int32)
        self.value = np.zeros(size)
        raw_threshold = np.full(size, np.inf)  # the compiled walk's copy: unclipped, NaN routed by a flag
        missing_left = np.ones(size, np.uint8)
        for i, (e, n) in enumerate(slots):
            a = ensembles[e].arrays
            if a["is_leaf"][n]:
                self.value[i] = a["value"][n]
            else:
                f = int(a["feature_idx"][n])
                if not 0 <= f < self.n_features:
                    raise ValueError(f"tree node splits on feature {f}, outside the {self.n_features} columns")
                raw_threshold[i] = float(a["num_threshold"][n])
                self.threshold[i] = min(raw_threshold[i], _BIG)
                missing_left[i] = bool(a["missing_go_to_left"][n])
                self.feature[i] = f + (0 if missing_left[i] else self.n_features)
                self.child[i] = child[i]
        self._flat = ((self.feature % max(self.n_features, 1)).astype(np.int32), raw_threshold, self.child,
                      missing_left, self.value, self.roots)
        self._choose(engine, ensembles)

    def _choose(self, engine: str, ensembles: Sequence) -> None:
        """Set ``engine`` (and ``_native``, its walk) to the first engine asked for that is available and gives
        the array walk's leaves."""
        for name in (("compiled", "sklearn") if engine == "auto" else (engine,)):
            if name == "numpy":
                break
            self.engine, self._native = name, _compiled_walk() if name == "compiled" else _native_trees(ensembles)
            if self._native is not None and self._native_agrees(self.n_features):
                return
            if engine != "auto":
                raise ValueError(f"the {name!r} tree walk is unavailable here or disagrees with the array walk"
                                 + (" (recsys/models/rankers/_walk.c was not built at install: is a C compiler"
                                    " available?)" if name == "compiled" and self._native is None else ""))
        self.engine, self._native = "numpy", None

    def decision_functions(self, X: np.ndarray, chunk: int = 1024) -> list[np.ndarray]:
        """Raw log-odds of every ensemble for the rows of X (float64, NaN = missing)."""
        if self.engine == "compiled":
            return self._sum(self._compiled_leaves(X))
        if self.engine == "sklearn":  # a cache-sized block of rows through every tree, block by block
            leaves = [self._native_leaves(np.ascontiguousarray(X[s:s + chunk], dtype=np.float64))
                      for s in range(0, max(len(X), 1), chunk)]
            return self._sum(np.concatenate(leaves) if len(leaves) > 1 else leaves[0])
        X = np.clip(np.asarray(X, dtype=np.float64), -_BIG, _BIG)  # NaN stays NaN
        if len(X) <= chunk:
            return self._walk(X)
        parts = [self._walk(X[s:s + chunk]) for s in range(0, len(X), chunk)]
        return [np.concatenate([p[e] for p in parts]) for e in range(len(self.baselines))]

    def _sum(self, leaves: np.ndarray) -> list[np.ndarray]:
        """Baseline + the leaf values of each ensemble's trees (``leaves``: rows x trees), summed as the
        reference walk sums them."""
        out = []
        rows_contiguous = leaves.flags.c_contiguous  # each row's slice is contiguous: NumPy sums it as it sums a copy
        for e, base in enumerate(self.baselines):
            raw = np.full(len(leaves), base)
            part = leaves[:, self.bounds[e]:self.bounds[e + 1]]
            raw += (part if rows_contiguous else np.ascontiguousarray(part)).sum(axis=1)
            out.append(raw)
        return out

    def _compiled_leaves(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}; the forest was compiled for {self.n_features} columns")
        # float32 or float64, stored row by row or column by column (the serving matrix: float32 columns), is
        # walked as it is (a column-major array's transpose is a C-ordered buffer; a float32 value is read as the
        # double it converts to exactly); anything else is copied to C-ordered float64 once
        native = X.dtype in (np.float32, np.float64)
        column_major = native and X.flags.f_contiguous and not X.flags.c_contiguous
        buf = X.T if column_major else X if native and X.flags.c_contiguous else np.ascontiguousarray(X, np.float64)
        out = np.empty((len(X), len(self.roots)))
        if len(self.roots) and len(X):
            self._native(buf, buf.itemsize, len(X), self.n_features, column_major, *self._flat, out)
        return out

    def _native_leaves(self, X: np.ndarray) -> np.ndarray:
        if self.engine == "compiled":
            return self._compiled_leaves(X)
        predict, nodes, bitsets, cat_map = self._native
        out = np.empty((len(nodes), len(X)))
        for t, tree in enumerate(nodes):
            predict(tree, X, bitsets, bitsets, cat_map, 1, out[t])
        return out.T

    def _native_agrees(self, n_features: int) -> bool:
        """Whether the chosen compiled walk gives the array walk's leaves on a seeded matrix with missing and
        infinite values."""
        rng = np.random.default_rng(0)
        X = rng.normal(size=(64, n_features)) * rng.choice([0.01, 1.0, 100.0], n_features)
        X[rng.random(X.shape) < 0.1] = np.nan
        X[rng.random(X.shape) < 0.02] = np.inf
        X[rng.random(X.shape) < 0.02] = -np.inf
        try:
            native = self._sum(self._native_leaves(np.ascontiguousarray(X)))
        except (TypeError, ValueError):  # e.g. another scikit-learn signature
            return False
        return all(np.array_equal(a, b) for a, b in zip(native, self._walk(np.clip(X, -_BIG, _BIG)), strict=True))

    def _walk(self, X: np.ndarray) -> list[np.ndarray]:
        n, n_trees = len(X), len(self.roots)
        if n_trees == 0 or n == 0:
            return [np.full(n, b) for b in self.baselines]
        nan = np.isnan(X)
        both = np.concatenate([np.where(nan, -np.inf, X), np.where(nan, np.inf, X)], axis=1).ravel()
        node = np.tile(self.roots, n)
        offset = np.repeat(np.arange(n, dtype=np.int64) * (2 * self.n_features), n_trees)
        final, where = node, None
        while True:
            thr = np.take(self.threshold, node)
            at_leaf = thr == np.inf
            done = np.count_nonzero(at_leaf)
            if done == len(node):
                break
            if done > len(node) // 4:
                if where is None:
                    final, where = np.empty(n * n_trees, np.int32), np.arange(n * n_trees)
                final[where[at_leaf]] = node[at_leaf]
                keep = np.flatnonzero(~at_leaf)
                node, offset, where, thr = node[keep], offset[keep], where[keep], thr[keep]
            f = np.take(self.feature, node) + offset
            node = np.take(self.child, node) + (np.take(both, f) > thr)
        if where is None:
            final = node
        else:
            final[where] = node
        return self._sum(np.take(self.value, final).reshape(n, n_trees))


def _compiled_walk():
    """This package's C walk (``_walk.walk``), or None when the extension was not built."""
    try:
        from recsys.models.rankers._walk import walk
    except ImportError:
        return None
    return walk


def _native_trees(ensembles: Sequence):
    """(scikit-learn's tree walk, each tree in its nodes layout, empty bitsets, empty category map), or None
    when this scikit-learn does not have them."""
    try:
        from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data
        from sklearn.ensemble._hist_gradient_boosting.common import (
            PREDICTOR_RECORD_DTYPE,
            X_BITSET_INNER_DTYPE,
        )
    except ImportError:
        return None
    names = set(PREDICTOR_RECORD_DTYPE.names or ())
    fields = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf")
    if not set(fields) <= names:
        return None
    trees = []
    for ens in ensembles:
        a = ens.arrays
        bounds = list(np.asarray(a["roots"]).tolist()) + [len(a["value"])]
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            nodes = np.zeros(end - start, dtype=PREDICTOR_RECORD_DTYPE)
            leaf = np.asarray(a["is_leaf"][start:end]).astype(bool)
            for f in ("value", "feature_idx", "num_threshold", "missing_go_to_left", "is_leaf"):
                nodes[f] = a[f][start:end]
            for f in ("left", "right"):  # tree-local child numbers
                nodes[f] = np.where(leaf, 0, np.asarray(a[f][start:end]) - start)
            trees.append(nodes)
    return (_predict_from_raw_data, trees, np.zeros((0, 8), dtype=X_BITSET_INNER_DTYPE),
            np.zeros(0, dtype=np.uint32))
