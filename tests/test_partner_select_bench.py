"""The partners benchmark on a small synthetic world: the truth it values proposals with, and its bounds (no
method beats the oracle; the random candidate is the candidates' mean)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.bench.partners import run_partners_benchmark, true_commission
from recsys.datasets.synthetic import generate_world


def test_true_commission_is_the_truths_mean_over_users() -> None:
    world = generate_world(5_000, seed=3, progress=False)
    users, items = np.array([0, 4, 9]), np.array([1, 2, 7, 30])
    got = true_commission(world.truth, users, items, "guide-1")
    want = [np.mean([world.truth.expected_value(u, i, "commission", media="guide-1") for u in users]) for i in items]
    # one broadcast call against scalar calls: equal up to float rounding
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert (got > 0).all()


@pytest.mark.slow
def test_benchmark_figures_are_bounded_by_the_oracle(tmp_path) -> None:
    out = run_partners_benchmark(40_000, seed=1, carry_n=5, recruit_k=2, recruit_items=3, recruit_groups=1,
                                 progress=False, json_path=tmp_path / "r.json")
    assert (tmp_path / "r.json").exists() and out["world"]["ranker"] == "gbdt"
    carry = out["carry"]["partners"]
    assert carry and out["carry"]["summary"]["n"] == len(carry)
    for row in carry:
        assert row["oracle"] >= max(row["proposed"], row["popular"], row["random"]) - 1e-12
        assert 0 <= row["overlap_with_oracle"] <= 1
    recruit = out["recruit"]["targets"]
    assert recruit
    for row in recruit:
        assert row["oracle"] >= max(row["proposed"], row["biggest"]) - 1e-12
        assert row["fit_oracle"] >= max(row["fit_proposed"], row["fit_biggest"]) - 1e-12
        assert len(row["proposed_partners"]) == 2 == len(set(row["proposed_partners"]))
