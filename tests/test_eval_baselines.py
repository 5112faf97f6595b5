"""Baselines (popular, random, implicit ALS), the side-by-side runner and its CLI, the evaluation benchmark."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import MissingDependencyError, RecsysError
from recsys.evaluation import evaluate_topk
from recsys.models.baselines import ImplicitALS, MostPopular, RandomRecommender


def blocks(n_users=40, n_items=20, seed=0):
    """Two communities: users 0..19 like items 0..9, users 20..39 like items 10..19; one held out each."""
    rng = np.random.default_rng(seed)
    train_rows, train_cols, test_rows, test_cols = [], [], [], []
    for u in range(n_users):
        items = rng.permutation(10) + (0 if u < n_users // 2 else 10)
        train_rows += [u] * 6
        train_cols += items[:6].tolist()
        test_rows.append(u)
        test_cols.append(int(items[6]))
    def m(r, c):
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_users, n_items))
    return m(train_rows, train_cols), m(test_rows, test_cols)


def test_most_popular_ranks_by_training_counts():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]], dtype=np.float32))
    model = MostPopular().fit(train)
    np.testing.assert_array_equal(model.item_popularity_, [3, 1, 1, 0])
    assert model.score(np.array([0, 2])).shape == (2, 4)
    test = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float32))
    # with training items masked, user 0 ranks item 2 first (hit), user 1 item 1 (hit), user 2 item 1 or 2
    # (popularity 1 each) before the held-out item 3 (popularity 0): a miss
    r = evaluate_topk(model, train, test, ks=(1,), metrics=("hit_rate",))
    assert r["hit_rate@1"] == pytest.approx(2 / 3)
    with pytest.raises(RecsysError, match="fit"):
        MostPopular().score(np.array([0]))


def test_random_is_deterministic_per_user_and_near_chance():
    train, test = blocks()
    model = RandomRecommender(seed=3).fit(train)
    np.testing.assert_array_equal(model.score(np.array([5, 7]))[1], model.score(np.array([7]))[0])
    assert not np.array_equal(model.score(np.array([5]))[0], RandomRecommender(seed=4).fit(train).score([5])[0])
    r = evaluate_topk(model, train, test, ks=(5,))
    assert r["recall@5"] < 0.6  # chance is 5 of 14 unseen items


def test_implicit_als_finds_the_communities():
    pytest.importorskip("implicit")
    train, test = blocks()
    als = ImplicitALS(factors=4, iterations=10, alpha=20.0, regularization=0.1, num_threads=1).fit(train)
    assert als.user_factors_.shape == (40, 4) and als.item_factors_.shape == (20, 4)
    als_r = evaluate_topk(als.scorer(), train, test, ks=(4,))
    pop_r = evaluate_topk(MostPopular().fit(train), train, test, ks=(4,))
    assert als_r["recall@4"] >= 0.9  # 4 unseen community items in the top 4, one of them held out
    assert als_r["recall@4"] > pop_r["recall@4"]


def test_implicit_missing_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "implicit.cpu.als", None)
    train, _ = blocks()
    with pytest.raises(MissingDependencyError, match="pip install"):
        ImplicitALS().fit(train)


def write_lightgcn(path, train, test):
    path.mkdir()
    for name, m in (("train.txt", train), ("test.txt", test)):
        lines = [" ".join(map(str, [u, *m[u].indices.tolist()])) for u in range(m.shape[0])]
        (path / name).write_text("\n".join(lines) + "\n")
    return path


def test_run_baselines_prints_and_writes_json(tmp_path, capsys):
    pytest.importorskip("implicit")
    from recsys.bench.baselines import run_baselines

    d = write_lightgcn(tmp_path / "tiny", *blocks())
    result = run_baselines(d, json_path=tmp_path / "out" / "b.json",
                           als_params={"factors": 4, "iterations": 5, "alpha": 20.0, "num_threads": 1})
    saved = json.loads((tmp_path / "out" / "b.json").read_text())
    assert saved == result
    assert list(saved) == ["popular", "random", "implicit-als"]
    for entry in saved.values():
        assert {"recall@20", "ndcg@20", "seconds"} <= set(entry)
        assert 0 <= entry["recall@20"] <= 1 and entry["seconds"] >= 0
    assert saved["implicit-als"]["params"]["factors"] == 4
    out = capsys.readouterr().out
    assert "popular" in out and "implicit-als" in out and "recall@20" in out


def test_cli_evaluate_baselines(tmp_path, monkeypatch):
    pytest.importorskip("implicit")
    from typer.testing import CliRunner

    import recsys.fit.baselines as bb
    from recsys.cli.evaluate import evaluate_app

    monkeypatch.setattr(bb, "DEFAULT_ALS", {**bb.DEFAULT_ALS, "factors": 4, "iterations": 3, "num_threads": 1})
    d = write_lightgcn(tmp_path / "tiny", *blocks())
    res = CliRunner().invoke(evaluate_app, ["baselines", "--data-dir", str(d), "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "b.json").read_text())) == {"popular", "random", "implicit-als"}


def test_holdout_split_keeps_every_pair_once():
    from recsys.bench.baselines import holdout_split

    train, _ = blocks()
    fit, valid = holdout_split(train, 0.2, seed=1)
    assert (fit + valid != train).nnz == 0 and fit.multiply(valid).nnz == 0
    np.testing.assert_array_equal(np.diff(valid.indptr), 1)  # round(6 * 0.2) = 1 per user


def test_memory_case_runs_small():
    from recsys.bench.evaluation import memory_case

    r = memory_case(300, 500, dim=8)
    assert 0 <= r["recall@20"] <= 1 and r["peak_rss_bytes"] >= r["setup_peak_rss_bytes"] > 0
