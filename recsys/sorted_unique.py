"""``np.unique`` by sorting, for the large integer arrays of loading and fitting.

NumPy 2.4's ``np.unique`` takes a hash-based path for integer arrays and then sorts the distinct values: on
arrays with many distinct values it is several times slower than sorting once (200k int64 timestamps, 181k
distinct: 53 ms against 12 ms; 1M: 406 against 56 ms, on the 2-core machine). These give the same arrays.
"""

from __future__ import annotations

import numpy as np

__all__ = ["unique_sorted"]


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values of a 1-D array, ascending: ``np.unique(values)`` (NaN handling aside: for integers)."""
    s = np.sort(np.asarray(values).reshape(-1))
    if len(s) < 2:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
