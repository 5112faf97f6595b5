"""unique_sorted gives np.unique's array; the catalogue reads missing eligibility tags as "everyone"."""

import numpy as np
import pandas as pd
import pytest

from recsys.feed.catalogue import Catalogue
from recsys.sorted_unique import unique_sorted


@pytest.mark.parametrize("n, high", [(0, 5), (1, 5), (2, 1), (1000, 10), (5000, 10**12)])
def test_unique_sorted_equals_numpy_unique(n, high):
    x = np.random.default_rng(n).integers(-high, high, n)
    got = unique_sorted(x)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, np.unique(x))


def test_missing_eligibility_tags_mean_everyone_and_others_become_text():
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5], "category": ["a"] * 5,
                          "eligibility": pd.Series([None, np.nan, pd.NA, "vip", 7], dtype=object)})
    cat = Catalogue.from_items(items)
    assert cat.eligibility.tolist() == ["", "", "", "vip", "7"]
    assert cat.restricted.tolist() == [False, False, False, True, True]
