"""The fused retrieval score: standardisation, many weightings in one pass (same figures as evaluate_topk), the
weights chosen on validation, and the pipeline benchmark never reading test while choosing them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.channels.fusion import (
    FusedScorer,
    evaluate_combinations,
    fit_fusion_weights,
    standardise,
    weight_grid,
)
from recsys.errors import ConfigError
from recsys.evaluation import EmbeddingScorer, evaluate_topk


class Fixed:
    """A scorer returning rows of a fixed matrix."""

    def __init__(self, m: np.ndarray) -> None:
        self.m = np.asarray(m, np.float32)

    def score(self, users):
        return self.m[np.asarray(users)]


def _random_case(seed: int = 0, n_users: int = 40, n_items: int = 30):
    rng = np.random.default_rng(seed)
    seen = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    target = sp.csr_matrix(((rng.random((n_users, n_items)) < 0.15) & (seen.toarray() == 0)).astype(np.float32))
    return rng, seen, target


def test_standardise_uses_unseen_items_only_and_keeps_the_ranking():
    block = np.array([[10.0, 1.0, 2.0, 3.0], [5.0, -np.inf, 5.0, 7.0]], np.float32)
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    z = standardise(block, seen)
    # row 0: unseen 1, 2, 3 -> mean 2, population std sqrt(2/3); the seen item stays at 0
    np.testing.assert_allclose(z[0], [0, -1 / np.sqrt(2 / 3), 0, 1 / np.sqrt(2 / 3)], atol=1e-5)
    # row 1: -inf becomes the row's lowest finite score (5): values 5, 5, 5, 7 -> mean 5.5, std sqrt(.75)
    np.testing.assert_allclose(z[1], np.array([-.5, -.5, -.5, 1.5]) / np.sqrt(.75), atol=1e-5)
    assert np.isfinite(standardise(np.full((1, 3), -np.inf))).all()


def test_one_pass_over_many_weightings_equals_evaluate_topk_on_each():
    rng, seen, target = _random_case()
    a, b = Fixed(rng.normal(size=seen.shape)), Fixed(rng.normal(size=seen.shape) * 5 + 3)
    combos = [{"a": 1.0}, {"b": 1.0}, {"a": 1.0, "b": 0.5}]
    got = evaluate_combinations({"a": a, "b": b}, combos, seen, target, chunk_size=7)
    for combo, r in zip(combos, got, strict=True):
        ref = evaluate_topk(FusedScorer({"a": a, "b": b}, combo, seen), seen, target, (20,), metrics=("recall", "ndcg"))
        # the same top-k on the same rows; means over chunks vs over all users: float sums in another order
        assert r["recall@20"] == pytest.approx(ref["recall@20"], abs=1e-9)
        assert r["ndcg@20"] == pytest.approx(ref["ndcg@20"], abs=1e-9)
    threaded = evaluate_combinations({"a": a, "b": b}, combos, seen, target, chunk_size=7, n_workers=3)
    for x, y in zip(got, threaded, strict=True):  # the same chunks summed in the same order: equal
        assert x == y
    # one channel alone ranks as its raw scores do
    raw = evaluate_topk(a, seen, target, (20,), metrics=("recall", "ndcg"))
    assert got[0]["recall@20"] == pytest.approx(raw["recall@20"], abs=1e-9)


def test_weights_are_chosen_on_validation():
    # channel "good" scores the validation items highest, "noise" is random: any weight on noise can only hurt
    rng, fit, valid = _random_case(1, n_users=60, n_items=50)
    good = Fixed(valid.toarray() + 0.01 * rng.random(valid.shape))
    noise = Fixed(rng.normal(size=valid.shape) * 10)
    out = fit_fusion_weights({"good": good, "noise": noise}, fit, valid, {"good": [1.0], "noise": [0.0, 0.5, 2.0]})
    assert out.weights == {"good": 1.0, "noise": 0.0}
    assert out.validation["recall@20"] == pytest.approx(1.0)
    assert len(out.tried) == 3 and all(t["recall@20"] <= 1.0 for t in out.tried)
    assert weight_grid({"a": [0.0], "b": [0.0, 1.0]}) == [{"a": 0.0, "b": 1.0}]
    with pytest.raises(ConfigError, match="non-zero"):
        fit_fusion_weights({"good": good}, fit, valid, {"good": [0.0]})
    with pytest.raises(ConfigError, match="not among"):
        evaluate_combinations({"good": good}, [{"other": 1.0}], fit, valid)


def test_fused_scorer_is_the_weighted_sum_of_standardised_scores():
    rng, seen, _ = _random_case(2)
    u, i = rng.normal(size=(40, 4)), rng.normal(size=(30, 4))
    a, b = EmbeddingScorer(u, i), Fixed(rng.random(seen.shape))
    got = FusedScorer({"a": a, "b": b}, {"a": 0.3, "b": 2.0}, seen).score(np.arange(5))
    ref = 0.3 * standardise(a.score(np.arange(5)), seen[:5]) + 2.0 * standardise(b.score(np.arange(5)), seen[:5])
    np.testing.assert_allclose(got, ref, atol=1e-5)  # float32 sums, same terms


def _write_lightgcn(path, test_shift: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    path.mkdir()
    train, test = [], []
    for b in range(4):
        items = np.arange(b * 10, (b + 1) * 10)
        for k in range(12):
            perm = np.random.default_rng([seed, b, k]).permutation(items)
            train.append(f"{b * 12 + k} " + " ".join(map(str, perm[:6])))
            test_items = perm[6:8] if not test_shift else rng.choice(40, 2, replace=False)
            test.append(f"{b * 12 + k} " + " ".join(map(str, test_items)))
    (path / "train.txt").write_text("\n".join(train) + "\n")
    (path / "test.txt").write_text("\n".join(test) + "\n")
    return path


PIPELINE = """pipeline:
  two_tower: {dim: 8, epochs: 3, batch_size: 16, lr: 0.05, temperature: 0.2, validation_users: 1.0}
  graph_filter: {kind: chebycf, ideal_rank: 8, order: 4}
  item_to_item: {neighbours: 5}
  fusion_grid: {graph_filter: [1.0], two_tower: [0.0, 0.5], popular: [0.0, 0.2], item_to_item: [0.0, 0.5]}
  seeds: [0, 1]
  baselines: false
"""


def test_pipeline_benchmark_writes_fused_figures_and_never_reads_test_for_weights(tmp_path, monkeypatch):
    from recsys.bench import retrieval_pipeline
    from recsys.bench.retrieval import run_retrieval_benchmark

    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPELINE)
    chosen = []
    real = retrieval_pipeline.select_weights

    def spy(settings, train, seed):
        out = real(settings, train, seed)
        chosen.append(out["fusion"].weights)
        return out

    monkeypatch.setattr(retrieval_pipeline, "select_weights", spy)
    results = []
    for k, shift in enumerate((0, 1)):  # the same training data, two different test sets
        results.append(run_retrieval_benchmark(_write_lightgcn(tmp_path / f"d{k}", shift), cfg, tmp_path / f"{k}.json"))
    assert chosen[:2] == chosen[2:]  # the weights do not depend on test
    assert results[0]["recall@20"] != results[1]["recall@20"]  # ... while the test figures do
    on_disk = json.loads((tmp_path / "0.json").read_text())
    for key in ("recall@20", "ndcg@20", "train_seconds", "recall@20_std", "peak_memory_mb"):
        assert key in on_disk, key
    assert set(on_disk["channels"]) == {"two_tower", "graph_filter", "item_to_item", "popular"}
    assert set(on_disk["seeds"]) == {"0", "1"} and len(on_disk["seeds"]["0"]["validation_tried"]) == 8  # 1 x 2 x 2 x 2
    assert results[0]["recall@20"] > 0.9  # users only touch their own block of 10 items


def test_pipeline_config_errors(tmp_path):
    from recsys.bench.pipeline_settings import load_pipeline_settings

    bad = tmp_path / "bad.yaml"
    for text, match in (("pipeline: {colour: red}\n", "unknown pipeline keys"),
                        ("pipeline: {graph_filter: {kind: magic}}\n", "kind"),
                        ("pipeline: {fusion_grid: {friends: [1.0]}}\n", "fusion_grid"),
                        ("pipeline: {fusion_grid: {item_to_item: [1.0]}}\n", "item_to_item"),
                        ("pipeline: {seeds: []}\n", "seeds"),
                        ("pipeline: {fusion_users: 1.0}\n", "fusion_users"),
                        ("pipeline: {fusion_users: yes}\n", "fusion_users")):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_pipeline_settings(bad)


def test_validation_users_split_apart_whole_and_seeded():
    from recsys.fit.validation import split_validation_users

    rng = np.random.default_rng(0)
    dense = (rng.random((400, 30)) < 0.1).astype(np.float32)
    dense[::7] = 0  # users without held-out items stay out of both parts
    valid = sp.csr_matrix(dense)
    rest, held = split_validation_users(valid, 0.5, seed=3)
    assert (rest + held != valid).nnz == 0  # every held-out item in exactly one part ...
    r_users, h_users = set(np.flatnonzero(rest.getnnz(axis=1))), set(np.flatnonzero(held.getnnz(axis=1)))
    assert not r_users & h_users  # ... and each user's items all in one
    assert 0.35 < len(h_users) / (len(r_users) + len(h_users)) < 0.65
    again = split_validation_users(valid, 0.5, seed=3)[1]
    assert (again != held).nnz == 0 and (split_validation_users(valid, 0.5, seed=4)[1] != held).nnz > 0
    whole, none = split_validation_users(valid, 0.0)
    assert (whole != valid).nnz == 0 and none.nnz == 0
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        split_validation_users(valid, 1.0)


def test_fusion_users_choose_the_weights_and_the_two_tower_never_selects_on_them(tmp_path, monkeypatch):
    import recsys.channels.fusion as fusion
    import recsys.channels.two_tower_fit as two_tower_fit
    from recsys.bench.retrieval import run_retrieval_benchmark
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.fit.validation import carve_validation, split_validation_users

    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPELINE.replace("seeds: [0, 1]", "seeds: [0]") + "  fusion_users: 0.5\n")
    seen: dict = {}
    real_train, real_fit = two_tower_fit.train_on_ids, fusion.fit_fusion_weights

    def train_spy(cfg_, train, epochs, validation, log):
        seen["two_tower"] = validation
        return real_train(cfg_, train, epochs, validation, log)

    def fusion_spy(scorers, fit, validation, grid, **kw):
        seen["fusion"] = validation
        return real_fit(scorers, fit, validation, grid, **kw)

    monkeypatch.setattr(two_tower_fit, "train_on_ids", train_spy)
    monkeypatch.setattr(fusion, "fit_fusion_weights", fusion_spy)
    data = _write_lightgcn(tmp_path / "d", 0)
    run_retrieval_benchmark(data, cfg, tmp_path / "out.json")
    train = load_lightgcn(data).train_matrix()
    _, valid = carve_validation(train, 0.2, 1.0, 0)
    rest, held = split_validation_users(valid, 0.5, 0)
    assert held.nnz and rest.nnz
    assert (seen["two_tower"] != rest).nnz == 0 and (seen["fusion"] != held).nnz == 0
