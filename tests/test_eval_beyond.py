"""Beyond-accuracy and business-value metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import DataValidationError
from recsys.evaluation import (
    beyond_accuracy,
    catalog_coverage,
    expected_commission_at_k,
    gini_index,
    gmv_at_k,
    intra_list_diversity,
    long_tail_share,
    novelty,
    value_at_k,
)

RECS = np.array([[0, 1], [0, 2]])
POP = np.array([10, 5, 1, 1])


def test_coverage_and_gini_by_hand():
    assert catalog_coverage(RECS, 4) == pytest.approx(3 / 4)
    # counts [2, 1, 1, 0] sorted [0, 1, 1, 2]: sum((2i - n - 1) x_i) / (n sum x) = (-1 + 1 + 6) / 16
    assert gini_index(RECS, 4) == pytest.approx(6 / 16)
    assert gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)  # equal exposure
    assert gini_index(np.full((50, 1), 0), 50) == pytest.approx(49 / 50)  # one item takes every slot


def test_long_tail_diversity_novelty_by_hand():
    assert long_tail_share(RECS, POP, head_fraction=0.25) == pytest.approx(2 / 4)  # head = {0}
    # categories a, a, b, b: list [0, 1] has no differing pair, [0, 2] has one of one
    assert intra_list_diversity(RECS, np.array(["a", "a", "b", "b"])) == pytest.approx(0.5)
    expected = (0 + 1 + 0 + -math.log2(1 / 10)) / 4  # -log2(pop / n_users) for items 0, 1, 0, 2
    assert novelty(RECS, POP, n_users=10) == pytest.approx(expected)
    allm = beyond_accuracy(RECS, item_popularity=POP, n_users=10, item_category=np.array([0, 0, 1, 1]))
    assert set(allm) == {"coverage", "gini", "long_tail_share", "novelty", "intra_list_diversity"}
    for key in ("coverage", "gini", "long_tail_share", "intra_list_diversity"):
        assert 0.0 <= allm[key] <= 1.0


def test_empty_slots_and_bad_input():
    recs = np.array([[0, -1], [-1, -1]])
    assert catalog_coverage(recs, 4) == pytest.approx(0.25)
    assert intra_list_diversity(recs, np.zeros(4)) == 0.0
    with pytest.raises(DataValidationError, match="outside the catalogue"):
        catalog_coverage(np.array([[7]]), 4)
    with pytest.raises(DataValidationError, match="2-D integer"):
        gini_index(np.array([0.5, 1.0]), 4)


def _test_matrix():
    # user 0 bought items 0 and 3; user 1 bought item 2
    return sp.csr_matrix((np.ones(3), ([0, 0, 1], [0, 3, 2])), shape=(2, 4))


def test_gmv_and_commission_by_hand():
    price = np.array([10.0, 20.0, 30.0, 40.0])
    rate = np.array([0.1, 0.1, 0.5, 0.5])
    recs = np.array([[0, 1], [2, 3]])  # hits: user 0 item 0 (10), user 1 item 2 (30)
    g = gmv_at_k(recs, _test_matrix(), 2, price=price)
    assert g["gmv@2"] == pytest.approx(40.0)
    assert g["gmv_share@2"] == pytest.approx(40 / 80)
    assert g["gmv_per_user@2"] == pytest.approx(20.0)
    c = expected_commission_at_k(recs, _test_matrix(), 2, price=price, commission_rate=rate)
    assert c["commission@2"] == pytest.approx(10 * 0.1 + 30 * 0.5)
    assert c["commission_share@2"] == pytest.approx(16 / (1 + 20 + 15))
    # K cuts the list: with K=1 only user 1's first item (2) hits
    assert gmv_at_k(np.array([[1, 0], [2, 3]]), _test_matrix(), 1, price=price)["gmv@1"] == pytest.approx(30.0)
    with pytest.raises(DataValidationError, match="commission_rate"):
        expected_commission_at_k(recs, _test_matrix(), 2, price=price, commission_rate=rate * 100)


def test_value_uses_stored_amounts_and_user_subsets():
    amounts = sp.csr_matrix((np.array([99.0, 5.0, 7.0]), ([0, 0, 1], [0, 3, 2])), shape=(2, 4))
    v = value_at_k(np.array([[3, 1]]), amounts, 2, users=np.array([0]))
    assert v["value@2"] == pytest.approx(5.0)
    assert v["value_share@2"] == pytest.approx(5 / 104)
    assert value_at_k(np.array([[-1, -1]]), amounts, 2, users=np.array([1]))["value@2"] == 0.0
