"""The retrieval benchmark runner on a tiny LightGCN-format directory: JSON figures, config errors."""

import json

import numpy as np
import pytest

from recsys.bench.retrieval import run_retrieval_benchmark
from recsys.errors import ConfigError
from recsys.fit.settings import TwoTowerSettings
from recsys.fit.settings import load_two_tower_settings as load_config
from recsys.fit.validation import carve_validation


def _write_lightgcn(path, n_blocks=4, users_per_block=12, items_per_block=10, seed=0):
    """Block-structured users: train on most of their block, test on two more items of it."""
    rng = np.random.default_rng(seed)
    path.mkdir()
    train, test = [], []
    for b in range(n_blocks):
        items = np.arange(b * items_per_block, (b + 1) * items_per_block)
        for k in range(users_per_block):
            u = b * users_per_block + k
            perm = rng.permutation(items)
            train.append(f"{u} " + " ".join(map(str, perm[:6])))
            test.append(f"{u} " + " ".join(map(str, perm[6:8])))
    (path / "train.txt").write_text("\n".join(train) + "\n")
    (path / "test.txt").write_text("\n".join(test) + "\n")
    return path


def test_benchmark_writes_the_figures(tmp_path):
    data = _write_lightgcn(tmp_path / "blocks")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dim: 8\nepochs: 6\nbatch_size: 16\nlr: 0.05\nvalidation_fraction: 0.2\ntemperature: 0.2\n")
    out = tmp_path / "out.json"
    result = run_retrieval_benchmark(data, cfg, out)
    on_disk = json.loads(out.read_text())
    for key in ("recall@20", "ndcg@20", "train_seconds", "peak_memory_mb", "best_epoch", "implicit-als"):
        assert key in on_disk, key
    assert on_disk["recall@20"] == result["recall@20"]
    assert 1 <= result["best_epoch"] <= 6 and result["config"]["dim"] == 8
    # users only ever touch their own block of 10 items: 20 recommendations must hold both test items
    assert result["recall@20"] > 0.9


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dimension: 64\n")
    with pytest.raises(ConfigError, match="dimension"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    assert load_config(None) == TwoTowerSettings()


def test_validation_is_carved_from_training_rows_only():
    import scipy.sparse as sp

    train = sp.random(50, 40, density=0.3, format="csr", random_state=0)
    train.data[:] = 1
    fit, valid = carve_validation(train, 0.2, user_share=0.5, seed=0)
    assert (fit + valid - train).nnz == 0 and fit.multiply(valid).nnz == 0
    assert 0 < valid.nnz < 0.2 * train.nnz
    assert np.count_nonzero(np.diff(valid.indptr)) < 40  # only about half of the users give validation items


def test_popularity_prior_is_chosen_on_validation_from_the_grid(tmp_path):
    data = _write_lightgcn(tmp_path / "blocks")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dim: 8\nepochs: 3\nbatch_size: 16\nlr: 0.05\ntemperature: 0.2\nbaselines: false\n"
                   "popularity_prior: [0.0, 0.05, 0.5]\n")
    result = run_retrieval_benchmark(data, cfg, None)
    assert result["popularity_prior"] in (0.0, 0.05, 0.5)
    for h in result["validation_history"]:  # the served recall is the best of the grid, no-prior included
        assert h["recall@20"] >= h["recall@20_no_prior"] and h["popularity_prior"] in (0.0, 0.05, 0.5)
    assert result["popularity_prior"] == result["validation"]["popularity_prior"]
    with pytest.raises(ConfigError, match="popularity_prior"):
        TwoTowerSettings(popularity_prior=[])
    assert TwoTowerSettings(popularity_prior=0.1).popularity_prior == (0.1,)


def _train_with_bench_config(tmp_path, bench_yaml: str):
    """``recsys train`` on the block data, its two-tower settings from a benchmark config."""
    from recsys.fit.settings import config_from_dict
    from recsys.pipeline.train import run_training

    bench = tmp_path / "bench.yaml"
    bench.write_text(bench_yaml)
    cfg = config_from_dict({"name": "bench", "data": {"source": "lightgcn", "path": str(_write_lightgcn(tmp_path / "blocks"))},
                            "split": {"method": "published"}, "retrieval": {"bench_config": str(bench)},
                            "index": {"kind": "exact"}, "ranker": {"kind": "none"},
                            "output": {"dir": str(tmp_path / "runs")}})
    return run_training(cfg, tracking=False, progress=False, log=None)


def test_recsys_train_serves_the_popularity_prior_its_bench_config_chose(tmp_path):
    # the train pipeline validates with the same prior grid as the benchmark and keeps the chosen weight
    result = _train_with_bench_config(tmp_path, "dim: 8\nepochs: 2\nbatch_size: 64\npopularity_prior: [0.5]\n"
                                                "validation_users: 1.0\n")
    model_config = json.loads((result.bundle_dir / "model" / "config.json").read_text())
    assert '"item_bias": true' in json.dumps(model_config)  # the prior lives in the item-bias coordinate
    assert len(result.recommender.recommend(0, k=3)) == 3


def test_train_prior_puts_the_fitted_counts_prior_into_the_training_task(tmp_path):
    import scipy.sparse as sp

    from recsys.fit.two_tower import build_task

    train = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=np.float32))  # counts 3, 1, 0
    task = build_task(TwoTowerSettings(train_prior=0.1), train)
    assert np.allclose(task.item_prior.numpy(), 0.1 * np.log1p([3, 1, 0]))
    assert build_task(TwoTowerSettings(), train).item_prior is None  # default: off
    with pytest.raises(ConfigError, match="train_prior"):
        build_task(TwoTowerSettings(train_prior=0.1))
    with pytest.raises(ConfigError, match="train_prior"):
        build_task(TwoTowerSettings(train_prior=0.1, task="bpr"), train)
    data = _write_lightgcn(tmp_path / "blocks")  # end to end: trains, and the served prior comes from the grid
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dim: 8\nepochs: 3\nbatch_size: 16\nlr: 0.05\ntemperature: 0.2\nbaselines: false\n"
                   "train_prior: 0.05\npopularity_prior: [0.0, 0.05]\n")
    result = run_retrieval_benchmark(data, cfg, None)
    assert result["config"]["train_prior"] == 0.05 and result["popularity_prior"] in (0.0, 0.05)
    assert result["recall@20"] > 0.5


def test_retrain_full_serves_a_model_retrained_on_all_training_data(tmp_path, monkeypatch):
    # retrain_full: the selection run picks the epoch on validation, then a second run trains on every training
    # interaction for exactly that many epochs, with no validation, and that model is the one scored on test
    import recsys.bench.retrieval as R

    calls = []
    real_train = R._train

    def spy(cfg, train, epochs, validation, log):
        model, summary = real_train(cfg, train, epochs, validation, log)
        calls.append({"nnz": train.nnz, "epochs": epochs, "validated": validation is not None,
                      "epochs_run": summary["epochs_run"], "model": model})
        return model, summary

    monkeypatch.setattr(R, "_train", spy)
    data = _write_lightgcn(tmp_path / "blocks")
    cfg = tmp_path / "cfg.yaml"
    body = "dim: 8\nepochs: 4\nbatch_size: 16\nlr: 0.05\ntemperature: 0.2\nbaselines: false\npatience: 9\n"
    cfg.write_text(body + "retrain_full: true\n")
    result = run_retrieval_benchmark(data, cfg, None)
    n_train = 4 * 12 * 6
    assert [c["validated"] for c in calls] == [True, False]
    assert calls[0]["nnz"] < n_train and calls[1]["nnz"] == n_train  # the selection run misses its validation items
    assert calls[1]["epochs"] == calls[1]["epochs_run"] == result["best_epoch"]
    assert result["config"]["retrain_full"] is True and result["recall@20"] > 0.9
    # the figures are the retrained model's, not the selection run's
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.evaluation import EmbeddingScorer, evaluate_topk
    from recsys.fit.trainer import RetrievalData, encode_all

    ds = load_lightgcn(data)
    train, test = ds.train_matrix(), ds.test_matrix()

    def ndcg(model):
        return evaluate_topk(EmbeddingScorer(*encode_all(model, RetrievalData(train))), train, test, (20,),
                             metrics=("ndcg",))["ndcg@20"]

    assert result["ndcg@20"] == round(ndcg(calls[1]["model"]), 6) != round(ndcg(calls[0]["model"]), 6)
    calls.clear()
    cfg.write_text(body)  # off (the default): one run, the selection run's weights are served
    run_retrieval_benchmark(data, cfg, None)
    assert [c["validated"] for c in calls] == [True]


def test_recsys_train_retrains_on_all_data_when_its_bench_config_says_so(tmp_path):
    result = _train_with_bench_config(tmp_path, "dim: 8\nepochs: 2\nbatch_size: 64\nvalidation_users: 1.0\n"
                                                "retrain_full: true\npatience: 9\n")
    training = result.evaluation["training"]
    assert training["retrained_epochs"] == training["best_epoch"] >= 1
    assert len(result.recommender.recommend(0, k=3)) == 3
