"""Membership by binary search equals np.isin; a request scope keeps its exclusions sorted and unique."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.feed.rules import RequestScope, in_sorted

ints = st.lists(st.integers(-3, 40), max_size=60)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(values=ints, members=ints)
def test_in_sorted_equals_isin(values, members):
    values = np.asarray(values, np.int64)
    sorted_unique = np.unique(np.asarray(members, np.int64))
    np.testing.assert_array_equal(in_sorted(values, sorted_unique), np.isin(values, sorted_unique))


def test_request_scope_sorts_and_dedupes_its_exclusions():
    scope = RequestScope(excluded=np.array([9, 2, 9, 5]))
    np.testing.assert_array_equal(scope.excluded, [2, 5, 9])
    assert scope.excluded.dtype == np.int64
    assert RequestScope(excluded=[7]).excluded.tolist() == [7] and len(RequestScope().excluded) == 0
