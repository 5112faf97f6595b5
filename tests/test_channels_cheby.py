"""ChebyCF's filter (recsys.models.graph_filter_cheby) against a dense numpy reference on a tiny graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, RecsysError
from recsys.models.graph_filter_cheby import ChebyFilter, chebyshev_coefficients, plateau_response

# 4 users x 5 items; item 4 has no interaction (zero degree).
R = np.array([[1, 1, 0, 0, 0],
              [0, 1, 1, 0, 0],
              [1, 0, 1, 1, 0],
              [1, 1, 1, 1, 0]], dtype=np.float64)


def dense_cheby(order: int, flatness: float, ideal_weight: float, rank: int, power: float) -> np.ndarray:
    """Every user's scores, written out densely in float64: the Chebyshev series evaluated on the eigenvalues of
    L~ = I - 2 P~ (an eigendecomposition, not the recurrence the class runs), plus the ideal term, degree-scaled."""
    du, di = R.sum(1), R.sum(0)
    inv = np.where(di > 0, 1 / np.sqrt(np.maximum(di, 1)), 0)
    norm = R / np.sqrt(du)[:, None] * inv[None, :]
    lam, vec = np.linalg.eigh(np.eye(5) - 2 * norm.T @ norm)
    h = vec @ np.diag(np.polynomial.chebyshev.chebval(lam, chebyshev_coefficients(order, flatness))) @ vec.T
    if ideal_weight:
        v = np.linalg.svd(norm)[2][:rank].T
        h += ideal_weight * v @ v.T
    pre = np.where(di > 0, np.maximum(di, 1) ** -power, 0)
    post = np.where(di > 0, np.maximum(di, 1) ** power, 0)
    return (R * pre) @ h * post


def test_coefficients_interpolate_the_plateau_at_the_chebyshev_nodes():
    order, phi = 8, 1.5
    c = chebyshev_coefficients(order, phi)
    j = np.arange(order + 1)
    nodes = np.cos((order + 0.5 - j) / (order + 1) * math.pi)
    target = np.round(plateau_response(np.round(np.cos((order - j) / order * math.pi), 3), phi), 3)
    # K+1 first-kind nodes: the discrete orthogonality makes the series exact there (float64 sums of 9 terms)
    np.testing.assert_allclose(np.polynomial.chebyshev.chebval(nodes, c), target, atol=1e-12)
    assert plateau_response(np.array([-1.0, 0.0, 1.0]), phi).tolist() == [1.0, 0.5, 0.0]


@pytest.mark.parametrize("params", [dict(order=8, flatness=1.5, ideal_weight=0.0, degree_power=0.0),
                                    dict(order=8, flatness=1.5, ideal_weight=0.2, degree_power=0.4),
                                    dict(order=3, flatness=1.0, ideal_weight=0.5, degree_power=0.5),
                                    dict(order=1, flatness=2.0, ideal_weight=0.0, degree_power=0.2)])
@pytest.mark.parametrize("chunk", [1, 3])
def test_scores_equal_the_dense_reference(params, chunk):
    model = ChebyFilter(**params, ideal_rank=2, chunk_size=chunk).fit(sp.csr_matrix(R))
    got = model.scores(np.arange(4))
    ref = dense_cheby(params["order"], params["flatness"], params["ideal_weight"], 2, params["degree_power"])
    assert got.shape == (4, 5) and got.dtype == np.float32
    # float32 recurrence of up to 8 steps (|T_k(L~)| <= 1 on the spectrum): rounding a few 1e-7 per step
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=0)
    assert np.all(got[:, 4] == 0)  # a zero-degree item gets nothing


def test_top_k_excludes_seen_and_ranks_by_score():
    model = ChebyFilter(ideal_rank=2).fit(sp.csr_matrix(R))
    ids, vals = model.top_k([0, 1], 2)
    ref = dense_cheby(8, 1.5, 0.2, 2, 0.4)
    for row, user in enumerate([0, 1]):
        masked = np.where(R[user] > 0, -np.inf, ref[user])
        assert set(ids[row]) == set(np.argsort(-masked, kind="stable")[:2])
        assert not R[user, ids[row]].any()
    assert np.all(np.diff(vals, axis=1) <= 0)


def test_bad_parameters_and_unfitted_use_raise_typed_errors():
    with pytest.raises(ConfigError, match="order"):
        ChebyFilter(order=-1)
    with pytest.raises(ConfigError, match="degree_power"):
        ChebyFilter(degree_power=float("nan"))
    with pytest.raises(RecsysError, match="not fitted"):
        ChebyFilter().scores([0])
