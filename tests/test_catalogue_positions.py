"""Catalogue.positions: the integer fast path gives the pandas indexer's answer."""

import numpy as np
import pandas as pd

from recsys.feed.catalogue import Catalogue


def _cat(ids) -> Catalogue:
    return Catalogue.from_items(pd.DataFrame({"item_id": ids, "category": ["a", "b"] * (len(ids) // 2)}))


def test_positions_match_pandas_for_sorted_and_unsorted_int_ids():
    rng = np.random.default_rng(0)
    for ids in (np.arange(10, 30, 2, dtype=np.int64), rng.permutation(np.arange(100, 120)).astype(np.int64)):
        cat = _cat(ids)
        query = np.array([ids[3], 5, ids[0], 999, ids[-1], -1, ids[3]], dtype=np.int64)
        want = pd.Index(ids).get_indexer(query)
        assert cat.positions(query).tolist() == want.tolist()
        assert cat.positions(query.astype(np.int32)).tolist() == want.tolist()
        assert (cat.positions(query) == -1).sum() == 3  # 5, 999, -1 are unknown


def test_positions_of_str_and_foreign_ids_still_use_the_index():
    cat = _cat(np.arange(4, dtype=np.int64))
    assert cat.positions(np.array(["x", "1"], dtype=object)).tolist() == [-1, -1]
    assert cat.positions(np.array([2.0, 7.0])).tolist() == [2, -1]
    s = _cat(np.array(["p", "q"], dtype=object))
    assert s.positions(np.array(["q", "z"], dtype=object)).tolist() == [1, -1]
    assert s.positions(np.array([1], dtype=np.int64)).tolist() == [-1]


def test_category_count_is_cached_per_catalogue():
    cat = _cat(np.arange(6, dtype=np.int64))
    assert "n_categories" not in cat.__dict__
    assert cat.n_categories == 2
    assert cat.__dict__["n_categories"] == 2  # stored on the catalogue: the next call reads it, no new max


def test_positions_of_consecutive_int_ids():
    cat = _cat(np.arange(1000, 1010, dtype=np.int64))
    query = np.array([1000, 1009, 999, 1010, -5, 1004], dtype=np.int64)
    assert cat.positions(query).tolist() == pd.Index(cat.ids).get_indexer(query).tolist() == [0, 9, -1, -1, -1, 4]
    assert cat.positions(query.astype(np.int32)).dtype == np.int64
