"""Filtered search never leaks an excluded, not-allowed, ineligible, out-of-stock or removed item,
and returns K items whenever K eligible items exist, whichever strategy serves it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.errors import DataValidationError
from recsys.index import ExactIndex, FaissIndex, FilterConfig, SearchFilters
from recsys.index.filters import plan_search
from tests.test_index_recall import clustered

N = 600
IDS = [f"item-{i:04d}" for i in range(N)]
SEGMENTS = ["", "vip", "kids"]
rng = np.random.default_rng(7)
ITEMS, QUERIES = clustered(N, d=16, n_clusters=8, seed=7, n_queries=20)
IN_STOCK = rng.random(N) > 0.2
SEGMENT = [SEGMENTS[i] for i in rng.choice(3, N, p=[0.7, 0.2, 0.1])]
REMOVED = set(rng.choice(IDS, 40, replace=False).tolist())

# strategy name -> config forcing it (subset: everything small; postfilter/selector: never subset)
CONFIGS = {"subset": FilterConfig(), "postfilter": FilterConfig(subset_max=0, postfilter_min=0.0),
           "selector": FilterConfig(subset_max=0, postfilter_min=1.1)}
_BUILT: dict = {}


def _index(factory: str):
    """Built once per backend (hypothesis runs many examples on the same index)."""
    if factory not in _BUILT:
        idx = ExactIndex(metric="ip") if factory == "exact" else FaissIndex(factory=factory, metric="ip", search_params={"nprobe": 2})
        idx.build(ITEMS, IDS)
        idx.set_item_attributes(IDS, in_stock=IN_STOCK, eligibility=SEGMENT)
        idx.remove(sorted(REMOVED))
        _BUILT[factory] = idx
    return _BUILT[factory]


def _eligible(f: SearchFilters) -> set:
    out = set()
    for i, item in enumerate(IDS):
        if item in REMOVED or item in f.exclude or (f.allow is not None and item not in f.allow):
            continue
        if f.require_in_stock and not IN_STOCK[i]:
            continue
        if SEGMENT[i] and SEGMENT[i] not in f.segments:
            continue
        out.add(item)
    return out


id_lists = st.lists(st.sampled_from(IDS + ["unknown-1", "unknown-2"]), max_size=80, unique=True)
filters = st.builds(SearchFilters, exclude=id_lists,
                    allow=st.one_of(st.none(), st.lists(st.sampled_from(IDS), max_size=300, unique=True)),
                    segments=st.frozensets(st.sampled_from(["vip", "kids", "other"])), require_in_stock=st.booleans(),
                    widen=st.booleans())


@pytest.mark.parametrize("factory", ["exact", "Flat", "HNSW16", "IVF8,Flat", "IVF8,PQ8x4fs,Refine(SQ8)"])
@pytest.mark.parametrize("strategy", list(CONFIGS))
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(f=filters, k=st.integers(1, 60), row=st.integers(0, len(QUERIES) - 1))
def test_filters_never_leak_and_return_k_when_possible(factory, strategy, f, k, row):
    idx = _index(factory)
    idx.filter_config = CONFIGS[strategy]
    scores, ids = idx.search(QUERIES[row:row + 1], k, f)
    eligible = _eligible(f)
    got = [i for i in ids[0] if i is not None]
    assert set(got) <= eligible, f"leaked {set(got) - eligible}"
    assert len(got) == len(set(got)) == min(k, len(eligible))
    assert got == list(ids[0][:len(got)]) and np.isneginf(scores[0][len(got):]).all()  # padding at the end
    if factory in ("exact", "Flat"):  # exact backends: the best eligible scores, exactly
        idx_exact = _index("exact")
        idx_exact.filter_config = FilterConfig()
        ref, _ = idx_exact.search(QUERIES[row:row + 1], k, f)
        np.testing.assert_allclose(scores, ref, rtol=1e-5, atol=1e-5)


def test_strategy_follows_selectivity():
    idx = FaissIndex(factory="IVF8,Flat", metric="ip").build(ITEMS, IDS)
    idx.filter_config = FilterConfig(subset_max=50, postfilter_min=0.5)
    plan = lambda f: plan_search(idx._state, f, 10, idx.filter_config).strategy  # noqa: E731
    assert plan(None) == "plain"
    assert plan(SearchFilters(allow=IDS[:20])) == "subset"
    assert plan(SearchFilters(allow=IDS[:200])) == "selector"
    assert plan(SearchFilters(exclude=IDS[:20])) == "postfilter"
    assert plan(SearchFilters(allow=["nope"])) == "empty"
    s, ids = idx.search(QUERIES[:2], 5, SearchFilters(allow=["nope"]))
    assert np.isneginf(s).all() and (ids == None).all()  # noqa: E711


def test_selector_and_subset_agree_with_exact_on_a_partner_pool():
    """A 5% allow-list (a partner's pool) and a 30% one: recall against exact filtered search."""
    items, queries = clustered(20_000, d=32, seed=11, n_queries=30)
    ids = np.arange(20_000, dtype=np.int64) + 2**60
    pool_small = set(np.random.default_rng(0).choice(ids, 1000, replace=False).tolist())
    pool_big = set(np.random.default_rng(1).choice(ids, 6000, replace=False).tolist())
    exact = ExactIndex(metric="ip").build(items, ids)
    for factory in ("HNSW32", "IVF64,Flat"):
        idx = FaissIndex(factory=factory, metric="ip").build(items, ids)
        idx.tune(queries, k=100, recall_target=0.95, reference_vectors=items)
        idx.filter_config = FilterConfig(subset_max=2000)  # small pool: subset; big pool: selector
        for pool in (pool_small, pool_big):
            f = SearchFilters(allow=pool)
            _, truth = exact.search(queries, 100, f)
            _, got = idx.search(queries, 100, f)
            assert (got >= 0).all(), "always K"
            rec = np.mean([len(np.intersect1d(a, b)) / 100 for a, b in zip(got, truth, strict=True)])
            assert rec >= 0.9, (factory, len(pool), rec)


def test_an_unwidened_search_returns_the_best_eligible_items_of_the_lists_it_scans():
    """widen=False: the index's own nprobe, and exactly the eligible items of the scanned lists, best first
    (what over-fetching the unfiltered search and dropping the rest approximates), from one reused selector."""
    idx = FaissIndex(factory="IVF8,Flat", metric="ip", search_params={"nprobe": 2}).build(ITEMS, IDS)
    idx.set_item_attributes(IDS, in_stock=IN_STOCK, eligibility=SEGMENT)
    idx.filter_config = FilterConfig(subset_max=0)  # never the exact subset path (a 1M catalogue's case)
    f = SearchFilters(segments={"vip"}, widen=False)
    eligible = {item for i, item in enumerate(IDS) if IN_STOCK[i] and SEGMENT[i] in ("", "vip")}  # nothing removed
    scanned_s, scanned = idx.raw_search(QUERIES, N)  # every vector of the 2 scanned lists, best first
    for row in range(len(QUERIES)):
        labels = scanned[row][scanned[row] >= 0]
        best = [IDS[j] for j in labels if IDS[j] in eligible][:10]
        assert len(best) == 10
        s, ids = idx.search(QUERIES[row:row + 1], 10, f)
        assert list(ids[0]) == best
        assert np.all(np.diff(s[0]) <= 0)
    # widened (the default), the same filter searches more lists: a superset of scanned candidates
    _, wide = idx.search(QUERIES, 10, SearchFilters(segments={"vip"}))
    assert all(set(w) <= eligible for w in wide.tolist())
    assert sum(1 for k in idx._state.cache if k[0] == "bits") == 1  # the base filters' bitmap, built once


def test_per_query_filters_and_validation():
    idx = _index("Flat")
    idx.filter_config = FilterConfig()
    per_row = [SearchFilters(exclude=IDS[:300]), SearchFilters(allow=IDS[:5], require_in_stock=False,
                                                              segments={"vip", "kids"})]
    _, ids = idx.search(QUERIES[:2], 10, per_row)
    assert not set(ids[0]) & set(IDS[:300])
    assert {i for i in ids[1] if i is not None} == set(IDS[:5]) - REMOVED
    with pytest.raises(DataValidationError, match="2 queries"):
        idx.search(QUERIES[:2], 10, per_row[:1])
    with pytest.raises(DataValidationError, match="single string"):
        SearchFilters(exclude="item-0001")
    with pytest.raises(DataValidationError, match="int ids but this index holds str"):
        idx.search(QUERIES[:1], 10, SearchFilters(exclude=[1, 2]))
    assert SearchFilters(segments="vip").segments == frozenset({"vip"})


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_batched_exclusions_match_one_by_one(factory):
    """A nightly batch (each user excludes their own seen items) equals searching user by user."""
    idx = _index(factory)
    idx.filter_config = FilterConfig(subset_max=0)  # over-fetching ANN, not exact subsets
    r = np.random.default_rng(3)
    per_row = [SearchFilters(exclude=r.choice(IDS, int(r.integers(1, 150)), replace=False).tolist(),
                             segments={"vip"}) for _ in QUERIES]
    calls: list = []
    engine_search = idx._engine_search
    idx._engine_search = lambda *a, **kw: (calls.append(len(a[1])), engine_search(*a, **kw))[1]
    try:
        s_batch, i_batch = idx.search(QUERIES, 30, per_row)
    finally:
        del idx._engine_search
    assert calls == [len(QUERIES)], "one ANN call for the whole batch"
    for row, f in enumerate(per_row):
        s_one, i_one = idx.search(QUERIES[row:row + 1], 30, f)
        assert not set(i_batch[row]) & f.exclude
        if factory == "Flat":
            np.testing.assert_allclose(s_batch[row], s_one[0], rtol=1e-5)
        else:
            assert len(set(i_batch[row]) & set(i_one[0])) >= 27
