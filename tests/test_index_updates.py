"""Updates without rebuild: add, remove, replace, attributes; readers under concurrent writers; drift."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from recsys.index import ExactIndex, FaissIndex, RebuildRecommendedWarning, SearchFilters
from tests.test_index_recall import clustered

BACKENDS = ["exact", "Flat", "HNSW16", "IVF16,Flat", "IVF16,PQ16x4fs,Refine(SQ8)"]


def _make(factory: str):
    """Cosine, so that an item's own vector is its nearest neighbour."""
    return ExactIndex(metric="cosine") if factory == "exact" else FaissIndex(factory=factory, metric="cosine", search_params={"nprobe": 16})


@pytest.mark.parametrize("factory", BACKENDS)
def test_add_remove_replace_semantics(factory):
    items = clustered(2000, d=16, n_clusters=10, seed=5)
    idx = _make(factory).build(items[:1500], np.arange(1500))
    idx.set_item_attributes([7], in_stock=False)
    idx.add(items[1500:], np.arange(1500, 2000))  # new items are searchable at once
    assert len(idx) == 2000
    _, ids = idx.search(items[1900:1910], 1, SearchFilters(require_in_stock=False))
    assert (ids[:, 0] == np.arange(1900, 1910)).mean() >= 0.9  # an item's own vector finds it

    assert idx.remove([3, 4, 5, 123456]) == 3  # unknown ids are ignored
    _, ids = idx.search(items[3:6], 50)
    assert not np.isin(ids, [3, 4, 5]).any() and len(idx) == 1997

    far = items[1000]  # replace item 7's embedding by item 1000's direction
    idx.add(far[None, :] * 2.0, [7])
    assert len(idx) == 1997 and idx.health()["hidden"] >= 4
    _, ids = idx.search(far[None, :], 5, SearchFilters(require_in_stock=False))
    assert 7 in ids[0] and list(ids[0]).count(7) == 1
    _, ids = idx.search(far[None, :], 5)  # attributes survive the replacement: 7 is still out of stock
    assert 7 not in ids[0]
    assert sorted(idx.ids.tolist()) == sorted(set(range(2000)) - {3, 4, 5})


@pytest.mark.parametrize("factory", ["HNSW16", "IVF16,Flat", "IVF16,PQ16x4fs,Refine(SQ8)", "exact"])
def test_readers_keep_searching_during_updates(factory):
    items = clustered(4000, d=16, n_clusters=10, seed=6)
    idx = _make(factory).build(items[:2000], np.arange(2000))
    removed: set = set()
    errors: list = []
    stop = threading.Event()
    seen_ids: set = set()
    searches: list = []

    def let_readers_run() -> None:  # interleave: a few searches between consecutive updates
        target = len(searches) + 6
        for _ in range(2000):
            if len(searches) >= target or errors:
                return
            stop.wait(0.001)

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                q = items[rng.integers(0, 4000, 4)]
                before = set(removed)  # removals finished before this search started
                f = SearchFilters(exclude=rng.integers(0, 2000, 20).tolist())
                scores, ids = idx.search(q, 20, f)
                assert ids.shape == (4, 20) and np.isfinite(scores).all()
                assert not set(ids.ravel().tolist()) & (before | set(f.exclude))
                seen_ids.update(ids.ravel().tolist())
                searches.append(1)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for step in range(10):
            lo = 2000 + step * 200
            idx.add(items[lo:lo + 200], np.arange(lo, lo + 200))
            gone = list(range(step * 20, step * 20 + 20))
            idx.remove(gone)
            removed.update(gone)
            idx.add(items[lo - 2000:lo - 1990] * 0.5, np.arange(lo - 1000, lo - 990))  # replacements
            idx.set_item_attributes(np.arange(lo, lo + 5), in_stock=False)
            let_readers_run()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(idx) == 4000 - 200 and seen_ids & set(range(2000, 4000))
    _, ids = idx.search(items[:50], 100)
    assert not np.isin(ids, list(removed)).any()


def test_drift_from_the_ivf_partition_recommends_a_rebuild():
    items = clustered(4000, d=16, n_clusters=10, seed=8)
    idx = FaissIndex(factory="IVF16,Flat", metric="ip").build(items, np.arange(4000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in-distribution additions: no warning
        idx.add(clustered(500, d=16, n_clusters=10, seed=8), np.arange(4000, 4500))
    h = idx.health()
    assert not h["rebuild_recommended"] and h["drift"]["ratio"] < 1.3
    shifted = clustered(500, d=16, n_clusters=10, seed=9) + 25.0  # a new region of the space
    with pytest.warns(RebuildRecommendedWarning, match="IVF centroid"):
        idx.add(shifted, np.arange(5000, 5500))
    h = idx.health()
    assert h["rebuild_recommended"] and h["drift"]["drifted"] and "build()" in h["reasons"][0]
    _, ids = idx.search(shifted[:5], 1, SearchFilters())  # still answers; rebuilding is the caller's call
    assert (ids[:, 0] >= 5000).all()
    idx.build(np.concatenate([items, shifted]), np.arange(4500))
    assert not idx.health()["rebuild_recommended"]


def test_many_hidden_vectors_recommend_a_rebuild():
    items = clustered(1000, d=16, seed=10)
    idx = FaissIndex(factory="HNSW16", metric="ip").build(items, np.arange(1000))
    idx.remove(np.arange(200))
    assert not idx.health()["rebuild_recommended"]
    with pytest.warns(RebuildRecommendedWarning, match="hidden"):
        idx.remove(np.arange(200, 300))
    assert idx.health()["hidden_fraction"] == pytest.approx(0.3)
