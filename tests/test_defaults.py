"""The travelling default (recsys.tuning.defaults): weights chosen on validation, a budget that scales with
the data, what it chose printed and logged to MLflow. Tiny block-structured data with a known right answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.tuning.blend import BlendScorer, choose_weights, standardise
from recsys.tuning.defaults import default_budget


def _blocks(n_users: int = 120, n_items: int = 60, groups: int = 4, per_user: int = 8, seed: int = 0) -> sp.csr_matrix:
    """Each user interacts only with items of their group (items i with i % groups == user % groups)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        own = np.arange(u % groups, n_items, groups)
        for i in rng.choice(own, per_user, replace=False):
            rows.append(u)
            cols.append(i)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


def test_standardise_gives_rows_of_mean_0_and_sd_1():
    block = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=np.float32)
    out = standardise(block.copy())
    # float32 arithmetic: compare within 1e-6, not bit for bit
    np.testing.assert_allclose(out[0], [-1.2247449, 0.0, 1.2247449], atol=1e-6)
    assert np.all(out[1] == 0)  # a constant row scores every item alike, without dividing by 0


def test_validation_picks_the_channel_that_knows_the_held_out_items():
    from recsys.fit.validation import holdout_split
    from recsys.models.graph_filter import GraphFilter

    train = _blocks(n_items=200)  # 50 items a group: the filter alone cannot tell which unseen ones were held out
    fit, valid = holdout_split(train, 0.25, seed=0)
    graph = GraphFilter(ideal_weight=1.0, ideal_rank=8).fit(fit)
    # an oracle channel: each user's embedding is the 0/1 row of their validation items (items: the identity)
    oracle = (valid.toarray().astype(np.float32), np.eye(train.shape[1], dtype=np.float32))
    noise = (np.random.default_rng(1).normal(size=(train.shape[0], 4)).astype(np.float32),
             np.random.default_rng(2).normal(size=(train.shape[1], 4)).astype(np.float32))
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    best, grid = choose_weights(graph, {"oracle": oracle, "noise": noise}, fit, valid, ideal_weights=(0.0, 0.2),
                                channel_weights=(0.0, 1.0, 2.0), users=users)
    assert best["oracle"] > 0 and best["noise"] == 0
    assert grid[0]["recall@20"] < 0.9  # the filter alone (first pass) misses some
    assert best["recall@20"] == pytest.approx(1.0)  # every validation item is in the oracle's top 20
    assert len(grid) == 2 + 9  # the filter's two ideal weights, then 3 x 3 channel weights


def test_blend_scorer_adds_standardised_channels():
    from recsys.models.graph_filter import GraphFilter

    train = _blocks()
    graph = GraphFilter(ideal_weight=0.0).fit(train)
    u = np.random.default_rng(0).normal(size=(train.shape[0], 3)).astype(np.float32)
    i = np.random.default_rng(1).normal(size=(train.shape[1], 3)).astype(np.float32)
    users = np.arange(5)
    both = BlendScorer(graph, {"c": ((u, i), 0.5)}).score(users)
    expected = standardise(graph.scores(users)) + 0.5 * standardise((u[users] @ i.T).astype(np.float32))
    np.testing.assert_allclose(both, expected, atol=1e-5)  # the same sums in another order: float32 rounding
    assert BlendScorer(graph, {"c": ((u, i), 0.0)}).channels == {}  # a zero weight drops the channel


def test_budget_scales_with_the_data_and_is_capped():
    assert default_budget(10_000) < default_budget(100_000) < default_budget(800_000) <= 360
    assert default_budget(50_000_000) == 360


def test_default_fit_chooses_on_validation_and_finds_the_groups():
    from recsys.evaluation import evaluate_topk
    from recsys.fit.validation import holdout_split
    from recsys.tuning.defaults import fit_default

    data = _blocks(per_user=10)
    train, test = holdout_split(data, 0.2, seed=5)  # test: items of the user's own group, never seen in train
    messages: list[str] = []
    fitted = fit_default(train, budget_s=20, log=messages.append)
    c = fitted.chosen
    assert {"ideal_weight", "als_weight", "tower_weight", "validation_recall@20", "tower_candidates"} <= set(c)
    assert c["validation_recall@20"] >= c["graph_alone_validation_recall@20"]  # the blend includes weight 0
    metrics = evaluate_topk(fitted.scorer, train, test, (20,), metrics=("recall",))
    # 15 items per group, 8 seen: the group's 7 unseen items fill the top 20 when the groups are found
    assert metrics["recall@20"] > 0.95
    assert any("budget" in m for m in messages)


def _lightgcn_dir(root: Path, data: sp.csr_matrix, test: sp.csr_matrix) -> Path:
    for name, m in (("train.txt", data), ("test.txt", test)):
        lines = [" ".join(map(str, [u, *m[u].indices])) for u in range(m.shape[0]) if m[u].nnz]
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_run_default_prints_and_logs_what_it_chose(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from recsys.fit.validation import holdout_split
    from recsys.tuning.default_run import run_default

    train, test = holdout_split(_blocks(per_user=10), 0.2, seed=5)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    lines: list[str] = []
    result = run_default(_lightgcn_dir(tmp_path, train, test), budget_s=10, baseline=False, log=lines.append,
                         json_path=tmp_path / "default.json")
    assert any(line.startswith("chosen on validation") for line in lines)
    assert (tmp_path / "default.json").is_file() and result["recall@20"] > 0.95
    client = mlflow.MlflowClient(tracking_uri=store)
    run = client.search_runs([client.get_experiment_by_name("recsys-default").experiment_id])[0]
    assert run.data.params["chosen.ideal_weight"] == str(result["chosen"]["ideal_weight"])
    assert run.data.metrics["test.recall_at_20"] == pytest.approx(result["recall@20"])


def test_benchmark_retrieval_without_a_config_runs_the_travelling_default(tmp_path):
    """`recsys benchmark retrieval --data-dir DIR` with no --config: the default that chooses on validation (not the
    two-tower's own defaults), its choices printed, the JSON where asked and nothing else written."""
    import json
    import subprocess
    import sys

    from recsys.fit.validation import holdout_split

    data = tmp_path / "data"
    data.mkdir()
    train, test = holdout_split(_blocks(per_user=10), 0.2, seed=5)
    _lightgcn_dir(data, train, test)
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run([sys.executable, "-m", "recsys", "benchmark", "retrieval", "--data-dir", str(data),
                          "--json", str(tmp_path / "default.json"), "--budget", "10s"],
                         cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "chosen on validation" in out.stdout
    result = json.loads((tmp_path / "default.json").read_text())
    assert {"recall@20", "ndcg@20", "train_seconds", "chosen"} <= set(result)
    assert result["recall@20"] > 0.95  # the groups are found (as in test_default_fit_chooses_on_validation...)
    assert list(work.iterdir()) == []  # a benchmark writes only where it is told: no MLflow store here
    bad = subprocess.run([sys.executable, "-m", "recsys", "benchmark", "retrieval", "--data-dir", str(data),
                          "--config", str(tmp_path / "x.yaml"), "--budget", "10s"], cwd=work, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--budget is for the travelling default" in bad.stderr
