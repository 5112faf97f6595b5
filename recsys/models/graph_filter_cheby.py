"""ChebyCF (Kim et al., SIGIR 2025): a training-free graph filter approximated by Chebyshev interpolation.

With ``R~ = D_u^-1/2 R D_i^-1/2`` and ``P~ = R~^T R~`` (eigenvalues in [0, 1]), the rescaled Laplacian
``L~ = I - 2 P~`` has its spectrum in [-1, 1]; a user's 0/1 item row ``r`` is scored by

    ``(h(L~) (r D_i^-b) + ideal_weight * (r D_i^-b) V V^T) D_i^b``

- ``h`` is the degree-``order`` Chebyshev interpolant of a "plateau" low-pass response: 1 at ``x = -1`` (the
  smoothest signals), 1/2 at 0, 0 at 1, with flatness ``flatness`` (``|x|^flatness`` shapes each half);
  ``h(L~) z`` needs ``order`` products by ``P~`` (the three-term recurrence ``T_k = 2 L~ T_{k-1} - T_{k-2}``);
- ``V``: the top ``ideal_rank`` right singular vectors of ``R~`` (the ideal pass filter);
- ``b = degree_power``: item-degree normalisation before and after (``0``: none).

The defaults are the paper's Gowalla setting (K 8, phi 1.5, eta 512, alpha 0.2, beta 0.4). ``P~`` is never formed:
each product is two sparse products per block of users, as in :class:`recsys.models.graph_filter.GraphFilter`,
whose interface (``scores``, ``score``, ``top_k``, ``filter_signal``) this class shares.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from recsys.errors import ConfigError, DataValidationError, RecsysError
from recsys.models.graph_filter import FilterScoring, interaction_matrix, top_right_singular_vectors
from recsys.params import hyperparameters

__all__ = ["ChebyFilter", "chebyshev_coefficients", "plateau_response"]


def plateau_response(x: np.ndarray, flatness: float) -> np.ndarray:
    """ChebyCF's target response at points ``x`` of [-1, 1]: ``1/2 + |x|^phi / 2`` below 0, ``1/2 - x^phi / 2`` above."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x < 0, 0.5 + 0.5 * np.abs(x) ** flatness, 0.5 - 0.5 * np.abs(x) ** flatness)


def chebyshev_coefficients(order: int, flatness: float) -> np.ndarray:
    """Coefficients ``c_0..c_K`` of the interpolant ``sum_k c_k T_k(x)`` of :func:`plateau_response`.

    As the paper's code does it: the target is taken at the Chebyshev extrema ``cos((K - j) pi / K)`` (rounded to 3
    decimals) and paired with the Chebyshev nodes ``cos((K + 1.5 - j) pi / (K + 1))``, j = 1..K+1, ascending."""
    if order == 0:
        return np.array([0.5])
    j = np.arange(order + 1)
    target = np.round(plateau_response(np.round(np.cos((order - j) / order * math.pi), 3), flatness), 3)
    nodes = np.cos(((order + 1) + 0.5 - (j + 1)) / (order + 1) * math.pi)
    basis = np.polynomial.chebyshev.chebvander(nodes, order)  # (K+1 nodes) x (K+1 degrees)
    coeffs = basis.T @ target * (2.0 / (order + 1))
    coeffs[0] /= 2
    return coeffs


class ChebyFilter(FilterScoring):
    """ChebyCF's filter (module docstring); fit on a users x items interaction matrix, score its users."""

    thread_safe = True

    def __init__(self, *, order: int = 8, flatness: float = 1.5, ideal_rank: int = 512, ideal_weight: float = 0.2,
                 degree_power: float = 0.4, svd_iterations: int = 6, seed: int = 0, chunk_size: int = 1024) -> None:
        self.order = order
        self.flatness = flatness
        self.ideal_rank = ideal_rank
        self.ideal_weight = ideal_weight
        self.degree_power = degree_power
        self.svd_iterations = svd_iterations
        self.seed = seed
        self.chunk_size = chunk_size
        self._check_params()

    def _check_params(self) -> None:
        bad = [(n, v) for n, v in (("flatness", self.flatness), ("ideal_weight", self.ideal_weight),
                                   ("degree_power", self.degree_power))
               if not (isinstance(v, int | float) and np.isfinite(v) and v >= 0)]
        bad += [(n, v) for n, v in (("order", self.order + 1), ("ideal_rank", self.ideal_rank),
                                    ("svd_iterations", self.svd_iterations + 1), ("chunk_size", self.chunk_size))
                if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1)]
        if bad:
            raise ConfigError(f"ChebyFilter: invalid {', '.join(f'{n}={v!r}' for n, v in bad)}; flatness, weights "
                              "and powers are finite numbers >= 0, order an integer >= 0, ranks and sizes >= 1.")

    def get_params(self) -> dict:
        """The constructor's hyperparameters (for reports)."""
        return hyperparameters(self)

    def fit(self, interactions, n_users: int | None = None, n_items: int | None = None) -> ChebyFilter:
        """Normalised graph, Chebyshev coefficients, degree scalings and (``ideal_weight > 0``) ``V``; returns self."""
        self._check_params()
        matrix = interaction_matrix(interactions, n_users, n_items)
        du = np.diff(matrix.indptr).astype(np.float64)
        degree = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)
        inv_u = np.where(du > 0, 1 / np.sqrt(np.maximum(du, 1)), 0.0)
        inv_i = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0.0)
        norm = matrix.copy()
        norm.data = (inv_u[np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))]
                     * inv_i[matrix.indices]).astype(np.float32)
        self.matrix_, self.norm_, self.norm_t_ = matrix, norm, norm.T.tocsr()
        self.n_users_, self.n_items_ = matrix.shape
        self.item_degree_ = degree.astype(np.int64)
        safe = np.maximum(degree, 1)
        self._pre = np.where(degree > 0, safe ** -self.degree_power, 0.0).astype(np.float32)
        self._post = np.where(degree > 0, safe ** self.degree_power, 0.0).astype(np.float32)
        self.coefficients_ = chebyshev_coefficients(self.order, self.flatness).astype(np.float32)
        self.singular_vectors_ = None
        if self.ideal_weight > 0:
            self.singular_vectors_ = top_right_singular_vectors(norm, self.ideal_rank, iterations=self.svd_iterations,
                                                                seed=self.seed)
        return self

    def _laplacian(self, z: np.ndarray) -> np.ndarray:
        """``L~ z = z - 2 P~ z`` for an items x rows block."""
        return z - 2 * (self.norm_t_ @ (self.norm_ @ z))

    def filter_signal(self, signal: sp.csr_matrix) -> np.ndarray:
        """The filter's response (rows x items float32) to rows of a 0/1 item-signal matrix."""
        self._require_fit()
        signal = sp.csr_matrix(signal, dtype=np.float32)
        if signal.shape[1] != self.n_items_:
            raise DataValidationError(f"signals have shape {signal.shape}; expected (rows, {self.n_items_}).")
        x = np.ascontiguousarray((signal @ sp.diags(self._pre)).T.toarray())  # items x rows
        prev, cur = x, self._laplacian(x)
        out = self.coefficients_[0] * prev
        if self.order >= 1:
            out += self.coefficients_[1] * cur
        for k in range(2, self.order + 1):
            prev, cur = cur, 2 * self._laplacian(cur) - prev
            out += self.coefficients_[k] * cur
        if self.singular_vectors_ is not None:
            v = self.singular_vectors_
            out += self.ideal_weight * (v @ (v.T @ x))
        out *= self._post[:, None]
        return np.ascontiguousarray(out.T, dtype=np.float32)

    def _require_fit(self) -> None:
        if not hasattr(self, "matrix_"):
            raise RecsysError("ChebyFilter is not fitted yet.\nFix: call .fit(interactions) first.")
