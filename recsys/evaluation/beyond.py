"""Beyond-accuracy metrics of a set of top-K lists (rows of item indices, ``-1`` for an empty slot).

- ``catalog_coverage``: share of the catalogue recommended to at least one user.
- ``gini_index``: Gini coefficient of how often each catalogue item is recommended (0 = every item
  equally often, towards 1 = a few items take every slot); items never recommended count as zeros.
- ``long_tail_share``: share of recommended slots that go to long-tail items, the tail being every
  item outside the ``head_fraction`` most popular ones (by training interactions).
- ``intra_list_diversity``: mean over lists of the share of item pairs from different categories.
- ``novelty``: mean self-information -log2(popularity_i / n_users) of recommended items, in bits
  (higher = less well-known items; popularity = number of users who interacted with the item).
"""

from __future__ import annotations

import numpy as np

from recsys.errors import DataValidationError


def _recs(recs) -> np.ndarray:
    r = np.asarray(recs)
    if r.ndim != 2 or not np.issubdtype(r.dtype, np.integer):
        raise DataValidationError(
            f"recommendations must be a 2-D integer array (users x K item indices); got {r.dtype} {r.shape}.\n"
            "Fix: use recommend_topk(scorer, train, k)."
        )
    return r


def _counts(recs: np.ndarray, n_items: int) -> np.ndarray:
    items = recs[recs >= 0]
    if items.size and items.max() >= n_items:
        raise DataValidationError(f"item index {int(items.max())} is outside the catalogue of {n_items} items.")
    return np.bincount(items, minlength=n_items)


def catalog_coverage(recs, n_items: int) -> float:
    """Share of the ``n_items`` catalogue that appears in at least one list."""
    return float((_counts(_recs(recs), n_items) > 0).sum() / n_items)


def gini_index(recs, n_items: int) -> float:
    """Gini coefficient of recommendation counts over the whole catalogue (0 = equal exposure)."""
    x = np.sort(_counts(_recs(recs), n_items)).astype(np.float64)
    if x.sum() == 0:
        return 0.0
    i = np.arange(1, n_items + 1)
    return float(np.sum((2 * i - n_items - 1) * x) / (n_items * x.sum()))


def long_tail_share(recs, item_popularity, head_fraction: float = 0.2) -> float:
    """Share of filled slots given to items outside the ``head_fraction`` most popular (ties broken by index)."""
    r = _recs(recs)
    pop = np.asarray(item_popularity, dtype=np.float64)
    n_head = int(round(head_fraction * pop.size))
    head = np.zeros(pop.size, dtype=bool)
    head[np.argsort(-pop, kind="stable")[:n_head]] = True
    filled = r[r >= 0]
    return float((~head[filled]).mean()) if filled.size else 0.0


def intra_list_diversity(recs, item_category) -> float:
    """Mean over lists (with >= 2 items) of the share of item pairs whose categories differ."""
    r = _recs(recs)
    cat = np.asarray(item_category)
    values = []
    for row in r:
        items = row[row >= 0]
        n = items.size
        if n < 2:
            continue
        _, per_cat = np.unique(cat[items], return_counts=True)
        same = float(np.sum(per_cat * (per_cat - 1)) / 2)
        values.append(1.0 - same / (n * (n - 1) / 2))
    return float(np.mean(values)) if values else 0.0


def novelty(recs, item_popularity, n_users: int) -> float:
    """Mean self-information -log2(pop_i / n_users) of recommended items, in bits (unseen items count pop 1)."""
    r = _recs(recs)
    pop = np.maximum(np.asarray(item_popularity, dtype=np.float64), 1.0)
    filled = r[r >= 0]
    return float(np.mean(-np.log2(pop[filled] / n_users))) if filled.size else 0.0


def beyond_accuracy(recs, *, item_popularity, n_users: int, item_category=None, head_fraction: float = 0.2) -> dict:
    """All of the above at once (diversity only when ``item_category`` is given)."""
    n_items = len(item_popularity)
    out = {
        "coverage": catalog_coverage(recs, n_items),
        "gini": gini_index(recs, n_items),
        "long_tail_share": long_tail_share(recs, item_popularity, head_fraction),
        "novelty": novelty(recs, item_popularity, n_users),
    }
    if item_category is not None:
        out["intra_list_diversity"] = intra_list_diversity(recs, item_category)
    return out
