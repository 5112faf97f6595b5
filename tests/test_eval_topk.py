"""Full-ranking top-K metrics: hand-computed cases, LightGCN's published NDCG/Recall code, properties, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import ConfigError, DataValidationError, LeakageError
from recsys.evaluation import EmbeddingScorer, evaluate_topk, recommend_topk
from recsys.evaluation.topk import default_chunk_size, fast_topk


class MatrixScorer:
    """Scores from a dense (n_users, n_items) matrix; records the block sizes it was asked for."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)
        self.calls: list[int] = []

    def score(self, user_indices):
        self.calls.append(len(user_indices))
        return self.scores[user_indices].copy()


def csr(pairs, shape):
    rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)


def test_hand_computed_case():
    # user 0: train {0}, test {1, 3}; order after masking item 0: 2, 1, 4, 3, 5 -> top3 hits [0, 1, 0]
    # user 1: train {5}, test {0}; item 0 ranks first -> hits [1, 0, 0]; user 2 has no test items (ignored)
    train = csr([(0, 0), (1, 5), (2, 1)], (3, 6))
    test = csr([(0, 1), (0, 3), (1, 0)], (3, 6))
    scores = [[9, 5, 6, 2, 3, 1], [6, 5, 4, 3, 2, 9], [0, 0, 0, 0, 0, 0]]
    r = evaluate_topk(MatrixScorer(scores), train, test, ks=(3,))
    ndcg_u0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))  # DCG: hit at rank 2; IDCG over min(2, 3) = 2 positions
    assert r["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert r["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert r["hit_rate@3"] == pytest.approx(1.0)
    assert r["ndcg@3"] == pytest.approx((ndcg_u0 + 1) / 2)
    assert r["mrr@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert r["map@3"] == pytest.approx(((1 / 2) / 2 + 1) / 2)  # AP@3 = sum P@i * hit_i / min(#test, K)
    r1 = evaluate_topk(MatrixScorer(scores), train, test, ks=(1,))
    assert r1["recall@1"] == pytest.approx(0.5) and r1["ndcg@1"] == pytest.approx(0.5)


def lightgcn_reference(test_lists, ranked, k):
    """Direct transcription of LightGCN's utils.RecallPrecision_ATk and NDCGatK_r (kuandeng/LightGCN)."""
    r = np.array([[1.0 if i in set(t) else 0.0 for i in row[:k]] for t, row in zip(test_lists, ranked, strict=True)])
    right_pred = r[:, :k].sum(1)
    recall = np.sum(right_pred / np.array([len(t) for t in test_lists]))
    pred_data = r[:, :k]
    test_matrix = np.zeros((len(pred_data), k))
    for i, items in enumerate(test_lists):
        length = k if k <= len(items) else len(items)
        test_matrix[i, :length] = 1
    idcg = np.sum(test_matrix * 1.0 / np.log2(np.arange(2, k + 2)), axis=1)
    dcg = np.sum(pred_data * (1.0 / np.log2(np.arange(2, k + 2))), axis=1)
    idcg[idcg == 0.0] = 1.0
    ndcg = dcg / idcg
    ndcg[np.isnan(ndcg)] = 0.0
    return recall / len(test_lists), np.sum(ndcg) / len(test_lists)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_matches_lightgcn_published_code(rng, k):
    n_users, n_items = 60, 40
    dense = rng.random((n_users, n_items))
    train = sp.csr_matrix(dense < 0.15, dtype=np.float32)
    test = sp.csr_matrix((dense >= 0.15) & (dense < 0.3), dtype=np.float32)
    scores = rng.standard_normal((n_users, n_items))
    users = np.flatnonzero(np.diff(test.indptr))
    masked = np.where(train.toarray() > 0, -np.inf, scores)
    ranked = np.argsort(-masked, axis=1, kind="stable")[users]
    test_lists = [test[u].indices.tolist() for u in users]
    ref_recall, ref_ndcg = lightgcn_reference(test_lists, ranked, k)
    got = evaluate_topk(MatrixScorer(scores), train, test, ks=(k,), chunk_size=7)
    assert got[f"recall@{k}"] == pytest.approx(ref_recall, abs=1e-12)
    assert got[f"ndcg@{k}"] == pytest.approx(ref_ndcg, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_users=st.integers(1, 12), n_items=st.integers(2, 30), k=st.integers(1, 12))
def test_metrics_in_unit_interval_and_perfect_ranking_scores_one(seed, n_users, n_items, k):
    rng = np.random.default_rng(seed)
    u = rng.random((n_users, n_items))
    train = sp.csr_matrix(u < 0.3, dtype=np.float32)
    test = sp.csr_matrix(u > 0.8, dtype=np.float32)
    if test.nnz == 0:
        test = csr([(0, int(np.argmax(u[0])))], (n_users, n_items))
        train = train - train.multiply(test)
    rand = evaluate_topk(MatrixScorer(rng.standard_normal(u.shape)), train, test, ks=(k,))
    assert all(0.0 <= v <= 1.0 for v in rand.values()), rand
    perfect = MatrixScorer(test.toarray() + 0.01 * rng.random(u.shape))
    p = evaluate_topk(perfect, train, test, ks=(k,))
    for name in ("ndcg", "hit_rate", "mrr", "map"):
        assert p[f"{name}@{k}"] == pytest.approx(1.0), name
    n_test = np.diff(test.indptr)
    if k >= n_test.max():
        assert p[f"recall@{k}"] == pytest.approx(1.0)


def test_chunking_gives_the_same_answer_and_bounds_the_block(rng):
    train = sp.random(50, 30, density=0.1, format="csr", random_state=1)
    test = sp.random(50, 30, density=0.1, format="csr", random_state=2)
    test = test - test.multiply(train != 0)
    scorer = MatrixScorer(rng.standard_normal((50, 30)))
    a = evaluate_topk(scorer, train, test, ks=(5, 10))
    scorer.calls.clear()
    b = evaluate_topk(scorer, train, test, ks=(5, 10), chunk_size=3)
    assert max(scorer.calls) <= 3
    assert a == pytest.approx(b)
    # the default block at 100k items holds at most 256 MiB of float32 scores
    assert default_chunk_size(100_000) * 100_000 * 4 <= 256 * 2**20


def test_embedding_scorer_and_recommend_topk(rng):
    user, item = rng.standard_normal((5, 4)), rng.standard_normal((9, 4))
    s = EmbeddingScorer(user, item)
    np.testing.assert_allclose(s.score(np.array([3, 1])), (user[[3, 1]] @ item.T), rtol=1e-5)
    train = csr([(0, int(np.argmax(user[0] @ item.T)))], (5, 9))
    top = recommend_topk(s, train, k=3)
    assert top.shape == (5, 3)
    assert train[0].indices[0] not in top[0]
    with pytest.raises(DataValidationError, match="same width"):
        EmbeddingScorer(user, item[:, :3])


def test_refuses_leakage_with_examples():
    train = csr([(0, 1), (1, 2)], (2, 4))
    test = csr([(0, 1), (1, 3)], (2, 4))
    with pytest.raises(LeakageError, match=r"1 test pairs also appear in train.*\(user 0, item 1\)(?s:.*)Fix"):
        evaluate_topk(MatrixScorer(np.zeros((2, 4))), train, test)
    evaluate_topk(MatrixScorer(np.zeros((2, 4))), train, test, check_leakage=False)


def test_bad_inputs_say_what_arrived():
    train = csr([(0, 1)], (2, 4))
    with pytest.raises(DataValidationError, match=r"\(2, 4\).*\(2, 5\)"):
        evaluate_topk(MatrixScorer(np.zeros((2, 4))), train, csr([(1, 2)], (2, 5)))
    with pytest.raises(ConfigError, match="unknown metrics"):
        evaluate_topk(MatrixScorer(np.zeros((2, 4))), train, csr([(1, 2)], (2, 4)), metrics=("auc",))
    with pytest.raises(DataValidationError, match="returned shape"):
        evaluate_topk(MatrixScorer(np.zeros((2, 3))), train, csr([(1, 2)], (2, 4)))
    with pytest.raises(ConfigError, match="user_emb"):
        evaluate_topk(MatrixScorer(np.zeros((2, 4))), train, csr([(1, 2)], (2, 4)), index=object())


class FaissAdapter:
    """The tiny `search(queries, k) -> (scores, ids)` interface evaluate_topk expects."""

    def __init__(self, index):
        self.index = index

    def search(self, queries, k):
        return self.index.search(queries, k)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_through_a_faiss_index_reports_the_recall_cost(rng, kind):
    faiss = pytest.importorskip("faiss")
    n_users, n_items, d = 300, 2000, 16
    user, item = rng.standard_normal((n_users, d)).astype(np.float32), rng.standard_normal((n_items, d)).astype(np.float32)
    scores = user @ item.T
    train = sp.csr_matrix(scores > np.quantile(scores, 0.995, axis=1, keepdims=True), dtype=np.float32)
    test = sp.csr_matrix((scores > np.quantile(scores, 0.99, axis=1, keepdims=True)) & (train.toarray() == 0),
                         dtype=np.float32)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, 8, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 16
    index.add(item)
    r = evaluate_topk(EmbeddingScorer(user, item), train, test, ks=(20,), index=FaissAdapter(index))
    assert r["exact_recall@20"] > 0.5  # train holds the top-10 items, so the exact top 20 hits most of test
    assert r["recall_cost@20"] == pytest.approx(r["exact_recall@20"] - r["recall@20"])
    if kind == "flat":
        assert r["recall_cost@20"] == pytest.approx(0.0, abs=1e-9)
        assert r["ann_recall@20"] == pytest.approx(1.0)
    else:
        assert 0.5 < r["ann_recall@20"] <= 1.0
        assert r["recall_cost@20"] >= -0.02


@pytest.mark.parametrize("n_cols,k", [(5000, 20), (4097, 7), (300, 20), (20, 20)])
def test_fast_topk_matches_torch_topk(rng, n_cols, k):
    import torch

    x = np.round(rng.standard_normal((50, n_cols)), 2).astype(np.float32)  # rounding makes ties
    x[:, ::3] = -np.inf  # masked items
    x[0, :] = 1.0  # a row of ties
    t = torch.from_numpy(x)
    got = fast_topk(t, k)
    ref = torch.topk(t, k, dim=1)
    np.testing.assert_array_equal(np.take_along_axis(x, got.numpy(), 1), ref.values.numpy())
    assert all(len(set(row)) == k for row in got.numpy().tolist())  # distinct columns


def test_worker_threads_give_the_same_answer(rng):
    user, item = rng.standard_normal((200, 8)), rng.standard_normal((300, 8))
    train = sp.random(200, 300, density=0.05, format="csr", random_state=3)
    test = sp.random(200, 300, density=0.03, format="csr", random_state=4)
    test = test - test.multiply(train != 0)
    scorer = EmbeddingScorer(user, item)
    assert scorer.thread_safe and not getattr(MatrixScorer(np.zeros((1, 1))), "thread_safe", False)
    import torch

    threads = torch.get_num_threads()
    one = evaluate_topk(scorer, train, test, ks=(5, 20), chunk_size=16, n_workers=1)
    three = evaluate_topk(scorer, train, test, ks=(5, 20), chunk_size=16, n_workers=3)
    assert one == pytest.approx(three, abs=1e-12)
    assert torch.get_num_threads() == threads  # kernel thread counts are restored after the parallel run
