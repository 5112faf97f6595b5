"""Serving on arrays equals serving on frames: the candidate feature matrix equals the builder's frame bit for
bit, the compiled forest equals the reference tree walk, and feeds are identical with either path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from recsys.models.rankers import forest as forest_module
from recsys.models.rankers.forest import CompiledForest
from recsys.models.rankers.gbdt import TreeEnsemble
from tests.test_recommender import fitted

ENGINES = ["auto", "compiled", "sklearn", "numpy"]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    # exact on purpose: both paths apply the same elementwise NumPy ufuncs (log1p, the shared _smooth) to the
    # same float64 inputs and round to float32 the same way; no reduction whose order could differ
    return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def test_candidate_matrix_equals_the_builders_frame():
    state = fitted()._state
    features = state.candidate_features()
    assert features is not None
    columns = state.ranking_columns()
    rng = np.random.default_rng(0)
    users = np.array([0, 5, 42, 299, 10**6, "new-user"], dtype=object)
    media = np.array(["guide-0", "app-1", None, "kol-2", "no-such-partner", "app-0"], dtype=object)
    req = np.repeat(np.arange(len(users)), 80)
    pos = rng.integers(0, len(state.catalogue), len(req))
    score = rng.normal(size=len(req))
    score[::7] = np.nan  # popular candidates have no two-tower score
    rank = np.tile(np.arange(1, 81), len(users)).astype(np.float64)
    rows = pd.DataFrame({"user_id": users[req], "item_id": state.catalogue.ids[pos],
                         "timestamp": np.full(len(req), state.as_of.to_datetime64(), dtype="datetime64[ns]"),
                         "media_id": media[req], "two_tower_score": score, "two_tower_rank": rank})
    expected = state.builder.transform(rows)[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    got = features.matrix(users, media, req, pos, score, rank, columns)
    assert got.shape == expected.shape and _same(got, expected)
    assert (got[:, columns.index("user_1d_log_clk")] > 0).any()  # the check would notice a user column of zeros


def test_both_ways_of_gathering_a_block_give_the_same_matrix(monkeypatch):
    """A request's few hundred rows gather each statistics block in one 2-D index, a large batch column by column:
    the same values (both are gathers of the same table), checked by forcing the column-by-column way."""
    from recsys.features import candidate_features as module

    state = fitted()._state
    features, columns = state.candidate_features(), state.ranking_columns()
    users = np.array([0, 5, 42], dtype=object)
    media = np.array(["guide-0", "app-1", None], dtype=object)
    req = np.repeat(np.arange(len(users)), 100)
    pos = np.random.default_rng(1).integers(0, len(state.catalogue), len(req))
    score, rank = np.linspace(-1, 1, len(req)), np.tile(np.arange(1, 101), len(users)).astype(np.float64)
    assert len(req) <= module._ONE_GATHER_ROWS
    one_index = features.matrix(users, media, req, pos, score, rank, columns)
    monkeypatch.setattr(module, "_ONE_GATHER_ROWS", 0)
    by_column = features.matrix(users, media, req, pos, score, rank, columns)
    assert _same(one_index, by_column)
    assert (one_index[:, columns.index("user_1d_log_clk")] > 0).any()  # blocks of real statistics, not zeros


def _tree(threshold: float, miss_left: bool) -> TreeEnsemble:
    """root: x0 <= threshold -> leaf 1.0, else -> node 2: x1 <= 0.5 -> leaf -2.0, else leaf 3.0."""
    return TreeEnsemble({
        "baseline": np.array([0.25]), "roots": np.array([0]),
        "value": np.array([0.0, 1.0, 0.0, -2.0, 3.0]), "feature_idx": np.array([0, 0, 1, 0, 0]),
        "num_threshold": np.array([threshold, 0.0, 0.5, 0.0, 0.0]),
        "missing_go_to_left": np.array([miss_left, 0, 0, 0, 0]), "left": np.array([1, 0, 3, 0, 0]),
        "right": np.array([2, 0, 4, 0, 0]), "is_leaf": np.array([0, 1, 0, 1, 1])})


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("threshold", [0.3, np.inf])
@pytest.mark.parametrize("miss_left", [True, False])
def test_compiled_forest_walks_like_the_reference_on_missing_and_infinite_values(threshold, miss_left, engine):
    X = np.array([[0.1, 0.0], [0.9, 0.2], [0.9, 0.8], [np.nan, 0.8], [np.inf, 0.8], [-np.inf, np.nan]])
    tree = _tree(threshold, miss_left)
    (got,) = CompiledForest([tree], 2, engine=engine).decision_functions(X)
    # exact: one tree, and baseline + leaf values (0.25, 1, -2, 3) are sums of powers of two, exact in any order
    np.testing.assert_array_equal(got, tree.decision_function(X))


@pytest.mark.parametrize("engine", ENGINES)
def test_compiled_forest_equals_the_fitted_gbdt_and_predict_arrays_equals_predict_proba(engine):
    ranker = fitted()._state.ranker
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, len(ranker.columns_))) * rng.choice([0.01, 1.0, 10.0], len(ranker.columns_))
    X[rng.random(X.shape) < 0.05] = np.nan
    forest = CompiledForest([ranker.ctr_, ranker.cvr_], X.shape[1], engine=engine)
    assert forest.engine == ("compiled" if engine == "auto" else engine)
    if forest.engine != "numpy":  # the same leaf in every tree as scikit-learn's own walk
        sklearn_walk = CompiledForest([ranker.ctr_, ranker.cvr_], X.shape[1], engine="sklearn")
        np.testing.assert_array_equal(forest._native_leaves(X), sklearn_walk._native_leaves(X))
    ctr, cvr = forest.decision_functions(X, chunk=700)
    np.testing.assert_allclose(ctr, ranker.ctr_.decision_function(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(cvr, ranker.cvr_.decision_function(X), rtol=0, atol=1e-12)
    frame = pd.DataFrame(X, columns=ranker.columns_)
    pctr, pcvr, pctcvr = ranker.predict_arrays(X)
    ref = ranker.predict_proba(frame)
    np.testing.assert_allclose(pctr, ref["pctr"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(pcvr, ref["pcvr"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(pctcvr, ref["pctcvr"], rtol=0, atol=1e-12)


def test_the_compiled_walk_reads_any_layout_across_many_row_tiles():
    """The walk goes through rows in cache-sized tiles and reads a column-major matrix in place: every layout the
    serving path can hand it gives scikit-learn's own leaves (5,003 rows: dozens of tiles and a ragged last one)."""
    ranker = fitted()._state.ranker
    n = len(ranker.columns_)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5003, n)) * rng.choice([0.01, 1.0, 10.0], n)
    X[rng.random(X.shape) < 0.05] = np.nan
    compiled = CompiledForest([ranker.ctr_, ranker.cvr_], n, engine="compiled")
    expected = CompiledForest([ranker.ctr_, ranker.cvr_], n, engine="sklearn")._native_leaves(X)
    wide = np.asfortranarray(np.hstack([X, X[:, :3]]))  # the serving matrix: Fortran order, extra reason columns
    for layout in (X, np.asfortranarray(X), wide[:, :n], X[::-1][::-1]):
        np.testing.assert_array_equal(compiled._compiled_leaves(layout), expected)  # exact: the same leaf values
    # float32 (the serving matrix's type) is walked as the float64 it converts to exactly: the same leaves as that copy
    x32 = X.astype(np.float32)
    expected32 = CompiledForest([ranker.ctr_, ranker.cvr_], n, engine="sklearn")._native_leaves(x32.astype(np.float64))
    for layout in (x32, np.asfortranarray(x32), np.asfortranarray(np.hstack([x32, x32[:, :3]]))[:, :n]):
        np.testing.assert_array_equal(compiled._compiled_leaves(layout), expected32)


def test_the_compiled_walk_is_built_and_chosen_by_default():
    assert forest_module._compiled_walk() is not None, (
        "recsys/models/rankers/_walk.c was not built: reinstall with a C compiler (`make install`)")
    assert CompiledForest([_tree(0.3, True)], 2).engine == "compiled"


def test_compiled_forest_refuses_bad_input_clearly(monkeypatch):
    forest = CompiledForest([_tree(0.3, True)], 2, engine="compiled")
    with pytest.raises(ValueError, match=r"compiled for 2 columns"):
        forest.decision_functions(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"feature 1, outside the 1 columns"):
        CompiledForest([_tree(0.3, True)], 1)
    with pytest.raises(ValueError, match=r"out holds 8 bytes, expected 16"):  # the C side checks buffer sizes
        forest._native(np.zeros((2, 2)), 8, 2, 2, False, *forest._flat, np.zeros(1))
    monkeypatch.setattr(forest_module, "_compiled_walk", lambda: None)
    with pytest.raises(ValueError, match=r"was not built at install"):
        CompiledForest([_tree(0.3, True)], 2, engine="compiled")
    assert CompiledForest([_tree(0.3, True)], 2).engine == "sklearn"  # auto falls back


def test_feeds_on_arrays_equal_feeds_on_frames():
    from recsys.feed.engine import Request, run_batch

    state = fitted()._state
    frames = replace(state, arrays=False)  # the builder's frames and predict_proba, as before arrays
    assert frames.candidate_features() is None and state.candidate_features() is not None

    def requests():
        return [Request(0, "guide-0", 12), Request(5, "app-1", 7, exclude=(41, 108)), Request(42, None, 20),
                Request(10**6, "kol-0", 9), Request(299, "kol-2", 15, context={"segment": "vip"}),
                Request("new", None, 5)]

    fast, slow = run_batch(state, requests()), run_batch(frames, requests())
    pd.testing.assert_frame_equal(fast, slow)
    assert (fast["reason_code"] != "popular").any()


def test_a_large_batch_ranked_in_slices_gives_the_same_feeds(monkeypatch):
    import recsys.feed.engine as engine
    import recsys.feed.ranking as ranking

    state = fitted()._state

    def requests():
        return [engine.Request(u, m, 10) for u, m in ((0, "guide-0"), (5, "app-1"), (42, None), (7, "kol-0"))]

    whole = engine.run_batch(state, requests())
    monkeypatch.setattr(ranking, "MATRIX_ROWS", 97)  # slices that cut through requests
    pd.testing.assert_frame_equal(engine.run_batch(state, requests()), whole)


def test_feature_arrays_survive_stock_updates_but_not_a_changed_items_table():
    from recsys.feed.updates import set_in_stock

    state = fitted()._state
    arrays = state.candidate_features()
    item = state.catalogue.ids[3]
    after_stock = set_in_stock(state, (item,), False)
    assert after_stock.candidate_features() is arrays  # stock flags do not touch the features: kept
    frame = state.catalogue.frame.copy()
    frame.loc[3, "price"] = frame.loc[3, "price"] * 10  # same length, another price
    repriced = state.evolve(catalogue=replace(state.catalogue, frame=frame))
    assert repriced.arrays is None  # rebuilt on first use, never the old prices
