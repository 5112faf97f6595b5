"""Business value captured in the top K: value-weighted hits (GMV, expected commission).

Media partners are paid on purchases, so a hit on a 300-yuan item at a 10 % commission is worth
more to them than a hit on a 5-yuan item at 1 %. For the held-out pairs of ``test`` (a users x
items sparse matrix whose stored value is a quantity or an order amount; 1 for binary data):

    value(u, i)   = test[u, i] * item_value[i]        (item_value omitted: test[u, i] alone)
    value@K       = sum of value(u, i) over pairs whose item is in u's top K
    value_share@K = value@K / sum of value(u, i) over all test pairs of the evaluated users

GMV uses ``item_value = price``; expected commission uses ``price * commission_rate``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.errors import DataValidationError


def value_at_k(recs, test: sp.spmatrix, k: int, *, item_value=None, users=None, name: str = "value") -> dict[str, float]:
    """Captured value in each user's top ``k`` (``recs`` row r lists items for ``users[r]``, default row r)."""
    r = np.asarray(recs)
    test = sp.csr_matrix(test)
    users = np.arange(r.shape[0]) if users is None else np.asarray(users)
    if r.ndim != 2 or users.size != r.shape[0]:
        raise DataValidationError(f"recs must be (len(users), K); got recs {r.shape} for {users.size} users.")
    rows = test[users]
    rows.sort_indices()
    n_items = test.shape[1]
    data = rows.data.astype(np.float64)
    if item_value is not None:
        iv = np.asarray(item_value, dtype=np.float64)
        if iv.shape != (n_items,):
            raise DataValidationError(f"item_value must have one entry per item ({n_items}); got {iv.shape}.")
        data = data * iv[rows.indices]
    keys = np.repeat(np.arange(users.size, dtype=np.int64), np.diff(rows.indptr)) * n_items + rows.indices
    top = r[:, :k]
    cand = (np.arange(users.size, dtype=np.int64)[:, None] * n_items + np.maximum(top, 0)).ravel()
    captured = 0.0
    if keys.size:
        pos = np.minimum(np.searchsorted(keys, cand), keys.size - 1)
        hit = (keys[pos] == cand) & (top.ravel() >= 0)
        captured = float(data[pos[hit]].sum())
    total = float(data.sum())
    return {f"{name}@{k}": captured, f"{name}_share@{k}": captured / total if total > 0 else 0.0,
            f"{name}_per_user@{k}": captured / users.size if users.size else 0.0}


def gmv_at_k(recs, test: sp.spmatrix, k: int, *, price=None, users=None) -> dict[str, float]:
    """GMV in the top K: ``test`` holds amounts (``price`` None) or quantities/1s multiplied by ``price``."""
    return value_at_k(recs, test, k, item_value=price, users=users, name="gmv")


def expected_commission_at_k(recs, test: sp.spmatrix, k: int, *, commission_rate, price=None,
                             users=None) -> dict[str, float]:
    """Commission in the top K: value(u, i) = test[u, i] * price_i * commission_rate_i (price None: test holds amounts)."""
    rate = np.asarray(commission_rate, dtype=np.float64)
    if rate.size and (rate.min() < 0 or rate.max() > 1):
        raise DataValidationError("commission_rate must lie in [0, 1] (a share of the price, not a percentage).")
    value = rate if price is None else rate * np.asarray(price, dtype=np.float64)
    return value_at_k(recs, test, k, item_value=value, users=users, name="commission")
