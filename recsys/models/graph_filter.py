"""A training-free retrieval channel: graph filters on the normalised user-item graph (GF-CF, BSPM).

With ``R`` the binary users x items matrix of a fit, ``D_u`` / ``D_i`` its user and item degrees and
``R~ = D_u^-1/2 R D_i^-1/2``, a user whose row of ``R`` is ``r`` scores every item with

- the linear low-pass filter ``r P~``, ``P~ = R~^T R~`` (item-item; GF-CF's and BSPM's blurring),
- plus ``ideal_weight * (r D_i^-1/2) V V^T D_i^1/2``, the ideal low-pass filter on the top
  ``ideal_rank`` right singular vectors ``V`` of ``R~`` (GF-CF; ``ideal_weight = 0``: no SVD at all),
- then BSPM's sharpening: ``sharpen_steps`` steps of ``dx/dt = -x P~`` over time ``sharpen`` (``sharpen = 0``:
  none), by Euler (``x <- x - h x P~``, one product by ``P~`` a step) or by classic Runge-Kutta ``"rk4"`` (four
  products a step: ``x`` times the degree-4 Taylor polynomial of ``exp(-h P~)``), ``h = sharpen / sharpen_steps``.

``P~`` is never formed: ``x P~ = (x R~^T) R~`` is two sparse products per block of users, so
memory is bounded by the chunk (``chunk_size`` users x (items + users) float32). ``V`` comes from
a seeded subspace iteration (:func:`top_right_singular_vectors`), so a fit is deterministic.
Save / load (safetensors + JSON, no pickle) live in :mod:`recsys.models.graph_filter_io`.

The defaults are GF-CF's filter (ideal term, rank 256, weight 0.2, no sharpening): the fastest for its quality
measured on 2 cores (experiments/retrieval/graph_filter.md). It costs one SVD (11-41 s) and, per block of
users, one pass through the graph plus a rank-256 product, about what the linear filter alone costs, and adds
8% / 2% Recall@20 to it on Gowalla / Yelp2018. BSPM's RK4 sharpening (``VARIANTS["bspm"]``) adds another 5.5%
/ 1.0% for 3.4x / 5.4x the scoring time and twice its memory. The weight 0.2: validation chose 0.1 on Gowalla
and 0.2 on Yelp2018 (GF-CF's paper uses 0.3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataValidationError, RecsysError
from recsys.params import hyperparameters

__all__ = ["FilterScoring", "GraphFilter", "VARIANTS", "interaction_matrix", "top_right_singular_vectors"]

#: The variants the benchmark measures (experiments/retrieval/graph_filter.md); hyper-parameters not
#: named keep the constructor's defaults, and the benchmark tunes some of them on validation.
VARIANTS: dict[str, dict] = {
    "linear": {"ideal_weight": 0.0},
    "gf-cf": {"ideal_weight": 0.3, "ideal_rank": 256},
    "bspm": {"ideal_weight": 0.2, "ideal_rank": 256, "sharpen": 2.5, "sharpen_method": "rk4"},
}


def interaction_matrix(interactions, n_users: int | None = None, n_items: int | None = None) -> sp.csr_matrix:
    """A binary float32 CSR users x items matrix from a scipy sparse matrix or ``(user_idx, item_idx)`` arrays."""
    if sp.issparse(interactions):
        m = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
        if m.ndim != 2 or m.nnz and not np.isfinite(m.data).all():
            raise DataValidationError("the interaction matrix holds NaN or inf values.\nFix: pass 0/1 interactions.")
        if m.nnz and (m.data < 0).any():
            raise DataValidationError("the interaction matrix holds negative values.\nFix: pass 0/1 interactions.")
        m.eliminate_zeros()
    elif isinstance(interactions, tuple | list) and len(interactions) == 2:
        users, items = (np.asarray(a) for a in interactions)
        if users.ndim != 1 or users.shape != items.shape:
            raise DataValidationError(f"user_idx and item_idx must be 1-D arrays of one length; got shapes "
                                      f"{users.shape} and {items.shape}.\nFix: pass one (user, item) pair a position.")
        for name, a in (("user_idx", users), ("item_idx", items)):
            if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0):
                raise DataValidationError(f"{name} must hold non-negative integers; got dtype {a.dtype}, min "
                                          f"{a.min()}.\nFix: map ids to 0-based indices first.")
        n_users = int(users.max(initial=-1)) + 1 if n_users is None else n_users
        n_items = int(items.max(initial=-1)) + 1 if n_items is None else n_items
        if users.size and (users.max() >= n_users or items.max() >= n_items):
            raise DataValidationError(f"an index lies outside the ({n_users}, {n_items}) matrix.\n"
                                      "Fix: pass n_users / n_items at least one above the largest index.")
        m = sp.csr_matrix((np.ones(users.size, np.float32), (users, items)), shape=(n_users, n_items))
    else:
        raise DataValidationError(f"interactions must be a scipy.sparse users x items matrix or a (user_idx, "
                                  f"item_idx) pair of arrays; got {type(interactions).__name__}.")
    m.sum_duplicates()
    m.data[:] = 1.0  # implicit feedback: a pair seen twice is one interaction
    if m.nnz == 0:
        raise DataValidationError("the interactions are empty: a graph filter needs at least one (user, item) pair.")
    return m


def _inv_sqrt(degree: np.ndarray) -> np.ndarray:
    return np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1)), 0.0).astype(np.float32)


def top_right_singular_vectors(norm: sp.csr_matrix, rank: int, *, iterations: int = 6, oversample: int = 32,
                               seed: int = 0) -> np.ndarray:
    """The top ``rank`` right singular vectors of ``norm`` (items x rank float32), by seeded subspace iteration.

    Each iteration multiplies a block of ``rank + oversample`` vectors by ``norm^T norm`` (two sparse products)
    and re-orthonormalises it; a Rayleigh-Ritz step on the small Gram matrix (float64) ends it. Deterministic for
    a given seed and thread count; the vectors' signs are arbitrary, which ``V V^T`` does not see.
    """
    n_items = norm.shape[1]
    rank = min(rank, min(norm.shape))
    width = min(rank + oversample, n_items)
    norm_t = norm.T.tocsr()
    q = np.random.default_rng(seed).standard_normal((n_items, width)).astype(np.float32)
    q = np.linalg.qr(norm_t @ (norm @ q))[0]
    for _ in range(iterations):
        q = np.linalg.qr(norm_t @ (norm @ q))[0]
    b = np.asarray(norm @ q, dtype=np.float64)
    evals, evecs = np.linalg.eigh(b.T @ b)
    order = np.argsort(evals)[::-1][:rank]
    return np.ascontiguousarray(q @ evecs[:, order].astype(np.float32))


class FilterScoring:
    """Scoring shared by the graph filters: a subclass has ``matrix_`` (users x items CSR), ``n_users_``,
    ``n_items_``, ``chunk_size``, ``_require_fit()`` and ``filter_signal(rows)``."""

    def _user_rows(self, user_rows) -> np.ndarray:
        self._require_fit()
        rows = np.atleast_1d(np.asarray(user_rows))
        if rows.ndim != 1 or (rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0
                                             or rows.max() >= self.n_users_)):
            raise DataValidationError(f"user_rows must be integer row indices in [0, {self.n_users_}) of the "
                                      f"fitted matrix; got {rows[:5].tolist()}...\nFix: map users to their rows.")
        return rows.astype(np.int64)

    def scores(self, user_rows) -> np.ndarray:
        """Scores of every item (len(user_rows) x n_items float32); computed ``chunk_size`` users at a time."""
        rows = self._user_rows(user_rows)
        out = np.empty((rows.size, self.n_items_), dtype=np.float32)
        for s in range(0, rows.size, self.chunk_size):
            out[s:s + self.chunk_size] = self.filter_signal(self.matrix_[rows[s:s + self.chunk_size]])
        return out

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        """The :class:`recsys.evaluation.Scorer` interface: same as :meth:`scores`."""
        return self.scores(user_indices)

    def top_k(self, user_rows, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(items, scores)``, each len(user_rows) x k, best first; seen items excluded unless asked otherwise.

        Rows with fewer than k candidates are padded with item -1 and score -inf."""
        rows = self._user_rows(user_rows)
        if not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"k must be a positive integer; got {k!r}.")
        k = int(k)
        ids = np.full((rows.size, k), -1, dtype=np.int64)
        vals = np.full((rows.size, k), -np.inf, dtype=np.float32)
        for s in range(0, rows.size, self.chunk_size):
            batch = rows[s:s + self.chunk_size]
            block = self.filter_signal(self.matrix_[batch])
            if exclude_seen:
                seen = self.matrix_[batch]
                block[np.repeat(np.arange(batch.size), np.diff(seen.indptr)), seen.indices] = -np.inf
            ids[s:s + batch.size, :min(k, self.n_items_)], vals[s:s + batch.size, :min(k, self.n_items_)] = \
                _top(block, k)
        ids[~np.isfinite(vals)] = -1
        return ids, vals


class GraphFilter(FilterScoring):
    """Training-free scores of every item for the users of a fitted interaction matrix (module docstring).

    ``fit(interactions)`` computes degrees, ``R~`` and (with ``ideal_weight > 0``) ``V``; ``scores`` /
    ``top_k`` score users of that matrix, ``item_neighbours`` gives an item-to-item table.
    """

    thread_safe = True  # scoring only reads fitted state (scipy's sparse products release the GIL)

    def __init__(self, *, ideal_weight: float = 0.2, ideal_rank: int = 256, sharpen: float = 0.0,
                 sharpen_steps: int = 1, sharpen_method: str = "euler", svd_iterations: int = 6, seed: int = 0, chunk_size: int = 1024) -> None:
        self.ideal_weight = ideal_weight
        self.ideal_rank = ideal_rank
        self.sharpen = sharpen
        self.sharpen_steps = sharpen_steps
        self.sharpen_method = sharpen_method
        self.svd_iterations = svd_iterations
        self.seed = seed
        self.chunk_size = chunk_size
        self._check_params()

    def _check_params(self) -> None:
        bad = [(n, v) for n, v in (("ideal_weight", self.ideal_weight), ("sharpen", self.sharpen))
               if not (isinstance(v, int | float) and np.isfinite(v) and v >= 0)]
        bad += [(n, v) for n, v in (("ideal_rank", self.ideal_rank), ("sharpen_steps", self.sharpen_steps),
                                    ("svd_iterations", self.svd_iterations + 1), ("chunk_size", self.chunk_size))
                if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1)]
        if self.sharpen_method not in ("euler", "rk4"):
            bad.append(("sharpen_method", self.sharpen_method))
        if bad:
            raise ConfigError(f"GraphFilter: invalid {', '.join(f'{n}={v!r}' for n, v in bad)}; weights and "
                              "sharpen are finite numbers >= 0, ranks, steps and chunk sizes integers >= 1, sharpen_method "
                              "'euler' or 'rk4'.")

    def get_params(self) -> dict:
        """The constructor's hyperparameters (for reports and the saved JSON)."""
        return hyperparameters(self)

    # --- fit -------------------------------------------------------------------------------------------------
    def fit(self, interactions, n_users: int | None = None, n_items: int | None = None) -> GraphFilter:
        """Build the normalised graph (and the ideal filter's vectors) from interactions; returns self."""
        self._check_params()
        self._set_graph(interaction_matrix(interactions, n_users, n_items))
        v = None
        if self.ideal_weight > 0:
            v = top_right_singular_vectors(self.norm_, self.ideal_rank, iterations=self.svd_iterations, seed=self.seed)
        return self._set_ideal(v)

    def _set_graph(self, matrix: sp.csr_matrix) -> None:
        """``R``, ``R~``, ``R~^T`` and the item degrees; shared by fit and load."""
        du = _inv_sqrt(np.diff(matrix.indptr).astype(np.float64))
        degree = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)
        norm = matrix.copy()
        norm.data = (du[np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))]
                     * _inv_sqrt(degree)[matrix.indices]).astype(np.float32)
        self.matrix_, self.norm_, self.norm_t_ = matrix, norm, norm.T.tocsr()
        self.item_degree_ = degree.astype(np.int64)
        self.n_users_, self.n_items_ = matrix.shape

    def _set_ideal(self, v: np.ndarray | None) -> GraphFilter:
        """The ideal filter's factors ``ideal_weight * D_i^-1/2 V`` and ``V^T D_i^1/2`` (None: no ideal term)."""
        self.singular_vectors_ = v
        if v is not None:
            degree = self.item_degree_.astype(np.float64)
            self._left = np.ascontiguousarray(v * (_inv_sqrt(degree) * self.ideal_weight)[:, None])
            self._right_t = np.ascontiguousarray(v * np.sqrt(degree).astype(np.float32)[:, None])
        return self

    def with_params(self, **changes) -> GraphFilter:
        """A fitted copy with other ``ideal_weight`` / ``sharpen*`` / ``chunk_size`` parameters, sharing the
        graph and the singular vectors (no refit); other changes need a new fit."""
        self._require_fit()
        allowed = {"ideal_weight", "sharpen", "sharpen_steps", "sharpen_method", "chunk_size"}
        if set(changes) - allowed:
            raise ConfigError(f"with_params changes only {sorted(allowed)}; {sorted(set(changes) - allowed)} need "
                              "a new fit.")
        if changes.get("ideal_weight", 0) > 0 and self.singular_vectors_ is None:
            raise ConfigError("this filter was fitted without the ideal term (ideal_weight 0): fit a new one.")
        new = type(self)(**{**self.get_params(), **changes})
        for name in ("matrix_", "norm_", "norm_t_", "item_degree_", "n_users_", "n_items_"):
            setattr(new, name, getattr(self, name))  # read-only from here on: shared, not copied
        return new._set_ideal(self.singular_vectors_ if new.ideal_weight > 0 else None)

    # --- scoring ---------------------------------------------------------------------------------------------
    def _require_fit(self) -> None:
        if not hasattr(self, "matrix_"):
            raise RecsysError("GraphFilter is not fitted yet.\nFix: call .fit(interactions) or GraphFilter.load(path).")

    def _propagate(self, z: np.ndarray) -> np.ndarray:
        """``P~ z`` for a dense items x rows block (the transposed layout: both sparse products read C order)."""
        return self.norm_t_ @ (self.norm_ @ z)

    def filter_signal(self, signal: sp.csr_matrix) -> np.ndarray:
        """The filter's response (rows x items float32) to a block of item signals (rows of a 0/1 CSR matrix).

        Computed items x rows (``P~`` is symmetric, so ``(x P~)^T = P~ x^T``) and transposed once at the end."""
        self._require_fit()
        signal = sp.csr_matrix(signal, dtype=np.float32)
        if signal.ndim != 2 or signal.shape[1] != self.n_items_:
            raise DataValidationError(f"signals have shape {signal.shape}; expected (rows, {self.n_items_}).")
        via_users = (self.norm_ @ signal.T.tocsr()).toarray()  # users x rows
        out = np.asarray(self.norm_t_ @ via_users, dtype=np.float32)  # items x rows
        if self.singular_vectors_ is not None and self.ideal_weight > 0:
            out += self._right_t @ np.ascontiguousarray(np.asarray(signal @ self._left).T)
        if self.sharpen > 0:
            h = np.float32(self.sharpen / self.sharpen_steps)
            for _ in range(self.sharpen_steps):
                out = self._sharpen_step(out, h)
        return np.ascontiguousarray(out.T)

    def _sharpen_step(self, z: np.ndarray, h: np.float32) -> np.ndarray:
        """One step of ``dz/dt = -P~ z``: Euler, or RK4 (``(I - hP + (hP)^2/2 - (hP)^3/6 + (hP)^4/24) z``)."""
        if self.sharpen_method == "euler":
            z -= h * self._propagate(z)
            return z
        k = self._propagate(z)  # k1 = -k; the signs are folded into the updates below
        acc = k.copy()
        k = self._propagate(z - (h / 2) * k)
        acc += 2 * k
        k = self._propagate(z - (h / 2) * k)
        acc += 2 * k
        acc += self._propagate(z - h * k)
        z -= (h / 6) * acc
        return z

    def item_neighbours(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """An item-to-item table: for each item, the k items (never itself) the filter scores highest for a user
        who interacted with that item alone, with those scores (n_items x k). An item no user interacted with has
        no neighbours (-1, -inf): the channel is servable from this table without user vectors."""
        self._require_fit()
        if not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"k must be a positive integer; got {k!r}.")
        k = min(int(k), max(self.n_items_ - 1, 1))
        eye = sp.identity(self.n_items_, dtype=np.float32, format="csr")
        ids = np.full((self.n_items_, k), -1, dtype=np.int64)
        vals = np.full((self.n_items_, k), -np.inf, dtype=np.float32)
        for s in range(0, self.n_items_, self.chunk_size):
            items = np.arange(s, min(s + self.chunk_size, self.n_items_))
            block = self.filter_signal(eye[items])
            block[np.arange(items.size), items] = -np.inf
            block[self.item_degree_[items] == 0] = -np.inf
            ids[items], vals[items] = _top(block, k)
        ids[~np.isfinite(vals)] = -1
        return ids, vals

    # --- persistence -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted filter to directory ``path`` atomically (safetensors + JSON); returns the path."""
        from recsys.models.graph_filter_io import save_graph_filter

        self._require_fit()
        return save_graph_filter(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> GraphFilter:
        """A filter saved by :meth:`save`; ArtifactError when the directory is missing, corrupt or edited."""
        from recsys.models.graph_filter_io import load_graph_filter

        return load_graph_filter(cls, Path(path))


def _top(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns per row, best first (ties: lower column first)."""
    k = min(k, block.shape[1])
    part = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else \
        np.tile(np.arange(block.shape[1]), (block.shape[0], 1))
    part_vals = np.take_along_axis(block, part, axis=1)
    order = np.lexsort((part, -part_vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_vals, order, axis=1)
