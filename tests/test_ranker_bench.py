"""The ranker benchmark's pieces: carted-pair rows without label leakage, the leakage demo, the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.bench import ranker as bench
from recsys.errors import ConfigError


def _write_multibehavior(root, seed: int = 0, n_users: int = 60, n_items: int = 40):
    rng = np.random.default_rng(seed)
    cart = {(u, i) for u in range(n_users) for i in rng.choice(n_items, 8, replace=False)}
    cart = sorted(cart)
    buy = [p for p in cart if rng.random() < 0.3 + 0.4 * (p[1] < 10)]  # items 0-9 convert more
    rest = [p for p in cart if p not in set(buy)]
    test = [rest[k] for k in rng.choice(len(rest), n_users, replace=False)]
    for name, pairs in (("cart", cart), ("train", buy), ("buy", buy), ("valid", buy[:n_users]), ("test", test)):
        (root / f"{name}.txt").write_text("".join(f"{u} {i}\n" for u, i in pairs))
    return root


def test_carted_pair_rows_never_see_their_own_label(tmp_path):
    from recsys.datasets.taobao import load_taobao_multibehavior

    data = load_taobao_multibehavior(_write_multibehavior(tmp_path))
    X_tr, X_te = bench._taobao_rows(data)
    # flip one training row's label (add or remove its purchase): that row's features must not move
    row = X_tr.index[0]
    u, i = int(X_tr.loc[row, "user_id"]), int(X_tr.loc[row, "item_id"])
    pairs = data.train[["user_id", "item_id"]]
    is_bought = ((pairs["user_id"] == u) & (pairs["item_id"] == i)).any()
    flipped = pairs.loc[~((pairs["user_id"] == u) & (pairs["item_id"] == i))] if is_bought else \
        pd.concat([pairs, pd.DataFrame({"user_id": [u], "item_id": [i]})], ignore_index=True)
    data.train = flipped
    X_tr2, _ = bench._taobao_rows(data)
    features = [c for c in X_tr.columns if c not in ("_label", "user_id", "item_id")]
    pd.testing.assert_series_equal(X_tr.loc[row, features], X_tr2.loc[row, features])
    assert X_tr2.loc[row, "_label"] != X_tr.loc[row, "_label"]
    assert X_te["_label"].sum() > 0 and set(X_te.columns) == set(X_tr.columns)


def test_taobao_benchmark_runs_end_to_end_and_writes_its_table(tmp_path):
    (tmp_path / "data").mkdir()
    data_dir = _write_multibehavior(tmp_path / "data")
    out = tmp_path / "out"
    result = bench.run_ranker_benchmark("taobao-multibehavior", data_dir=data_dir, quick=True, out_dir=out,
                                        json_path=tmp_path / "r.json")
    assert {"gbdt", "esmm", "random", "item-popularity"} <= set(result["models"])
    for m in result["models"].values():
        assert 0 <= m["auc"] <= 1 and 0 <= m["hit_rate@1"] <= m["hit_rate@3"] <= m["hit_rate@5"] <= 1
    assert json.loads((tmp_path / "r.json").read_text())["data"] == "taobao-multibehavior"
    readme = (out / "README.md").read_text()
    assert "## taobao-multibehavior" in readme and "| gbdt |" in readme and "recsys benchmark ranker" in readme


def test_leakage_demo_passes_honest_features_and_flags_leaks():
    rng = np.random.default_rng(0)
    y = pd.DataFrame({"click": (rng.random(3000) < 0.1).astype(int)})
    y["purchase"] = y["click"] * (rng.random(3000) < 0.3)
    X = pd.DataFrame({"a": rng.normal(size=3000), "b": y["click"] + rng.normal(size=3000)})
    from recsys.features.ranking_features import check_feature_leakage

    out = bench._leakage_demo(X, y, check_feature_leakage)
    assert out["honest features"] == "passed"
    assert all(v.startswith("LeakageError") for k, v in out.items() if k != "honest features")


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="--data 'movielens'"):
        bench.run_ranker_benchmark("movielens")


def test_synthetic_benchmark_puts_the_generating_truth_in_the_table_as_its_ceiling(tmp_path):
    """A seeded 40k-event world in quick mode: the oracle row (the true click and purchase probabilities)
    is in the JSON and the table; its AUCs are at least every ranker's up to noise (the test period holds
    only ~20 purchases, so CTCVR AUC gets 0.03 of slack, CTR AUC 0.01 on ~1,200 clicks; CVR AUC on ~30
    clicked-and-bought rows is too noisy to compare)."""
    result = bench.run_ranker_benchmark("synthetic", n_events=40_000, quick=True, out_dir=tmp_path)
    models = result["models"]
    oracle = models["oracle"]
    assert oracle["ctcvr_pred_over_truth"] == pytest.approx(1.0, abs=1e-4)  # its own mean over itself, rounded
    for name, m in models.items():
        assert oracle["ctr_auc"] >= m["ctr_auc"] - 0.01, name
        assert oracle["ctcvr_auc"] >= m["ctcvr_auc"] - 0.03, name
    truth = result["test_truth"]
    assert truth["calibration_slice_purchases"] > 0 and truth["calibration_slice_ctcvr"] > 0
    assert truth["purchases"] > 0 and truth["expected_purchases"] > 0
    for name, m in models.items():  # every row carries the 95% interval of its pCTCVR / observed
        lo, hi = m["ctcvr_pred_over_observed_95"]
        assert lo < m["ctcvr_pred_over_observed"] < hi, name
    readme = (tmp_path / "README.md").read_text()
    assert "| oracle |" in readme and "calibration slice" in readme and "pCTCVR/obs (95%)" in readme
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [  # plots go to out_dir, not experiments/ranker
        "reliability_synthetic_40000_esmm_ctr.png", "reliability_synthetic_40000_gbdt_ctr.png"]


def test_ratio_interval_is_the_exact_poisson_interval_and_covers_95_percent():
    """100 observed events: the exact (Garwood) 95% interval of the mean is 81.36-121.63 (standard tables),
    so predicted 100 gives 100/121.63-100/81.36. Then coverage: for 4,000 seeded Poisson(300) counts the
    interval of (expected 300) / observed covers 1 about 95% of the time (+-0.35% at 1 sigma; bound 93.5-97%,
    exact intervals err on the wide side)."""
    lo, hi = bench.ratio_interval(100.0, 100)
    # tables give the bounds to 2 decimals, hence the tolerance
    assert lo == pytest.approx(100 / 121.63, abs=1e-3) and hi == pytest.approx(100 / 81.36, abs=1e-3)
    counts = np.random.default_rng(0).poisson(300, 4000)
    covered = [lo <= 1.0 <= hi for lo, hi in (bench.ratio_interval(300.0, int(c)) for c in counts)]
    assert 0.935 <= np.mean(covered) <= 0.97
    assert bench.ratio_interval(5.0, 0)[1] == float("inf")
    with pytest.raises(ConfigError, match="non-negative"):
        bench.ratio_interval(-1.0, 3)
