"""Sampled metrics only with a warning; leakage guards on pairs, feature times and label columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.errors import ConfigError, DataValidationError, LeakageError
from recsys.evaluation import (
    SampledMetricWarning,
    check_features_before_split,
    check_labels_not_in_features,
    check_no_overlap,
    sampled_metrics,
)
from recsys.evaluation.sampled import _draw_negatives


class MatrixScorer:
    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)

    def score(self, user_indices):
        return self.scores[user_indices]


def _data():
    train = sp.csr_matrix((np.ones(2), ([0, 1], [0, 1])), shape=(2, 50))
    test = sp.csr_matrix((np.ones(2), ([0, 1], [2, 3])), shape=(2, 50))
    return train, test


def test_sampled_metrics_warn_and_score_by_hand():
    train, test = _data()
    best = np.zeros((2, 50))
    best[0, 2] = best[1, 3] = 1.0  # each positive outscores every negative -> rank 0
    with pytest.warns(SampledMetricWarning, match="Krichene & Rendle"):
        m = sampled_metrics(MatrixScorer(best), train, test, n_negatives=20, ks=(1, 5))
    assert m == pytest.approx({"sampled_hit_rate@1": 1.0, "sampled_ndcg@1": 1.0, "sampled_hit_rate@5": 1.0,
                               "sampled_ndcg@5": 1.0, "sampled_auc": 1.0})
    with pytest.warns(SampledMetricWarning):
        worst = sampled_metrics(MatrixScorer(-best), train, test, n_negatives=20, ks=(5,))
    assert worst["sampled_hit_rate@5"] == 0.0 and worst["sampled_auc"] == 0.0
    with pytest.warns(SampledMetricWarning), pytest.raises(ConfigError, match="n_negatives"):
        sampled_metrics(MatrixScorer(best), train, test, n_negatives=50)


def test_sampled_negatives_avoid_every_seen_item():
    n_items = 6
    seen = sp.csr_matrix(np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=np.float32))
    buf = np.zeros((2, n_items), dtype=bool)
    neg = _draw_negatives(np.random.default_rng(0), seen, np.array([0, 0, 1]), 30, buf)
    assert set(neg[:2].ravel()) <= {4, 5}
    assert set(neg[2].ravel()) <= {0, 1, 2, 3}
    assert not buf.any()  # the scratch block is left clean


def test_no_overlap_guard_lists_pairs_and_fix():
    train = sp.csr_matrix((np.ones(3), ([0, 1, 2], [3, 4, 5])), shape=(3, 6))
    check_no_overlap(train, sp.csr_matrix((np.ones(1), ([0], [1])), shape=(3, 6)))
    with pytest.raises(LeakageError, match=r"2 test pairs(?s:.*)\(user 1, item 4\)(?s:.*)Fix"):
        check_no_overlap(train, sp.csr_matrix((np.ones(2), ([1, 2], [4, 5])), shape=(3, 6)))


@pytest.mark.parametrize("stamps,split", [
    (pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-09"]), "2024-01-05"),
    (np.array([100, 200, 300]), 200),  # Unix seconds
])
def test_features_at_or_after_the_split_are_refused(stamps, split):
    features = pd.DataFrame({"user_id": [7, 8, 9], "ctr_7d": [0.1, 0.2, 0.3], "timestamp": stamps})
    check_features_before_split(features.iloc[:1], split)
    with pytest.raises(LeakageError, match=r"2 of 3 rows(?s:.*)row 1(?s:.*)Fix"):
        check_features_before_split(features, split)


def test_feature_guard_bad_input():
    with pytest.raises(DataValidationError, match="'ts'"):
        check_features_before_split(pd.DataFrame({"x": [1]}), "2024-01-01", timestamp_col="ts")
    with pytest.raises(DataValidationError, match="not a time"):
        check_features_before_split(pd.DataFrame({"timestamp": [1]}), object())


def test_label_among_features_is_refused():
    check_labels_not_in_features(["price", "ctr_7d"], ["click", "purchase"])
    with pytest.raises(LeakageError, match=r"\['purchase'\]"):
        check_labels_not_in_features(["price", "purchase"], ["click", "purchase"])
