"""External ids (any int64, any unicode string) come back out unchanged; bad ids are refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import DataValidationError
from recsys.index import ExactIndex, FaissIndex, SearchFilters, load_index
from recsys.index.ids import IdMap, normalize_ids
from tests.test_index_recall import clustered

INT_IDS = [-(2**63), 2**63 - 1, 2**53 + 1, 2**53, -1, 0, 9_007_199_254_740_995, 42]
STR_IDS = ["", "a", "商品/123", "emoji-🛒", "line\nbreak", "surrogate-\udc80", "x" * 300, "42"]


@pytest.mark.parametrize("ids", [INT_IDS, np.array(INT_IDS, dtype=np.int64), STR_IDS, np.array(STR_IDS[:4])])
@pytest.mark.parametrize("factory", ["exact", "HNSW16"])
def test_ids_round_trip_unchanged(tmp_path, ids, factory):
    items = np.eye(8, 8, dtype=np.float32) + 0.01
    idx = ExactIndex(metric="cosine") if factory == "exact" else FaissIndex(factory=factory, metric="cosine")
    n = len(ids)
    idx.build(items[:n], ids)
    _, found = idx.search(items[:n], 1)
    expected = list(ids)
    assert [found[i, 0] for i in range(n)] == expected
    if isinstance(expected[0], str):
        assert found.dtype == object and all(type(v) is str for v in found[:, 0])  # plain str, not np.str_
    else:
        assert found.dtype == np.int64
    loaded = load_index(idx.save(tmp_path / "i"))
    assert list(loaded.search(items[:n], 1)[1][:, 0]) == expected
    assert list(loaded.ids) == expected


def test_int_ids_search_as_int64_and_pad_with_minus_one():
    idx = ExactIndex(metric="ip").build(np.ones((3, 4), np.float32), [2**62, 5, 7])
    scores, ids = idx.search(np.ones((1, 4), np.float32), 5)
    assert ids.dtype == np.int64 and list(ids[0][3:]) == [-1, -1] and np.isneginf(scores[0][3:]).all()
    assert int(ids[0][0]) in (2**62, 5, 7)
    sidx = ExactIndex(metric="ip").build(np.ones((2, 4), np.float32), ["a", "b"])
    _, sids = sidx.search(np.ones((1, 4), np.float32), 3)
    assert sids.dtype == object and sids[0][2] is None


@pytest.mark.parametrize("bad, message", [
    ([1, "a"], "never mixed"),
    ([True, False], "never mixed"),
    ([1.5, 2.0], "never mixed"),
    ([2**64], "does not fit int64"),
    (np.array([2**63], dtype=np.uint64), "does not fit int64"),
    ([1, 2, 1], "duplicate"),
    (["a", "a"], "duplicate"),
    ("abc", "single string"),
])
def test_bad_ids_are_refused(bad, message):
    with pytest.raises(DataValidationError, match=message):
        ExactIndex(metric="ip").build(np.ones((len(bad), 4), np.float32), bad)


def test_mismatched_lengths_and_kinds():
    idx = ExactIndex(metric="ip").build(np.ones((3, 4), np.float32), [1, 2, 3])
    with pytest.raises(DataValidationError, match="2 rows but 3 ids"):
        idx.add(np.ones((2, 4), np.float32), [4, 5, 6])
    with pytest.raises(DataValidationError, match="str ids but this index holds int"):
        idx.add(np.ones((1, 4), np.float32), ["x"])
    with pytest.raises(DataValidationError, match="build"):
        ExactIndex(metric="ip").search(np.ones((1, 4), np.float32), 1)


def test_id_map_is_immutable_and_tracks_replacements():
    kind, arr = normalize_ids([10, 20, 30])
    m0 = IdMap.empty()
    m1, labels, old, new = m0.append(arr, kind)
    assert list(labels) == [0, 1, 2] and len(old) == 0
    m2, labels, old, new = m1.append(np.array([20, 40]), "int")
    assert list(labels) == [3, 4] and list(old) == [1] and list(new) == [3]
    assert list(m1.labels_of(np.array([20, 40]), "int")) == [1, -1]  # the old map is unchanged
    assert list(m2.labels_of(np.array([20, 40, 99]), "int")) == [3, 4, -1]
    m3, dropped = m2.drop(np.array([10, 99]), "int")
    assert list(dropped) == [0] and list(m3.labels_of(np.array([10]), "int")) == [-1]


def test_large_int_ids_in_filters_are_exact():
    items = clustered(50, d=8, seed=1)
    ids = np.arange(50, dtype=np.int64) + 2**53  # neighbours that float64 would merge
    idx = FaissIndex(factory="Flat", metric="ip").build(items, ids)
    _, found = idx.search(items[:3], 10, SearchFilters(allow=[int(ids[1]), int(ids[2])]))
    assert set(found[0][:2]) == {2**53 + 1, 2**53 + 2} and (found[:, 2:] == -1).all()
