"""Ranking metrics for pCTR/pCVR: AUC vs scikit-learn, GAUC, LogLoss and calibration by hand, the PNG plot."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from recsys.errors import ConfigError, DataValidationError
from recsys.evaluation import (
    auc,
    calibration,
    conversion_metrics,
    gauc,
    gauc_details,
    logloss,
    reliability_plot,
)


def test_auc_hand_case_and_ties():
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3 of 4
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 300))
def test_auc_equals_sklearn(seed, n):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    s = np.round(rng.random(n), 1)  # coarse scores -> many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert 0.0 <= auc(y, s) <= 1.0
    assert auc(y, y + 0.0) == pytest.approx(1.0)  # a perfect ranking scores 1


def test_auc_refuses_a_single_class_and_bad_labels():
    with pytest.raises(DataValidationError, match="both classes"):
        auc([1, 1], [0.2, 0.3])
    with pytest.raises(DataValidationError, match="0/1"):
        auc([0, 2], [0.2, 0.3])
    with pytest.raises(DataValidationError, match="length"):
        auc([0, 1, 1], [0.2, 0.3])


def test_perfect_auc_on_many_rows_warns_about_label_leakage():
    y = np.arange(2000) % 2
    with pytest.warns(UserWarning, match="label"):
        assert auc(y, y * 0.9) == 1.0


def test_gauc_hand_case_skips_single_class_groups():
    # group a: AUC 1 on 2 rows; group b: pos 0.2 vs negs 0.5, 0.1 -> 0.5 on 3 rows; group c: all positive, skipped
    labels = [1, 0, 0, 1, 0, 1, 1]
    scores = [0.9, 0.1, 0.5, 0.2, 0.1, 0.3, 0.7]
    groups = ["a", "a", "b", "b", "b", "c", "c"]
    assert gauc(labels, scores, groups) == pytest.approx((1.0 * 2 + 0.5 * 3) / 5)
    assert gauc(labels, scores, groups, weights="uniform") == pytest.approx(0.75)
    assert gauc(labels, scores, groups, weights="clicks") == pytest.approx(0.75)
    d = gauc_details(labels, scores, groups)
    assert (d["n_groups"], d["n_groups_used"], d["n_groups_skipped"]) == (3, 2, 1)
    assert d["row_share_used"] == pytest.approx(5 / 7)
    with pytest.raises(ConfigError, match="weights"):
        gauc(labels, scores, groups, weights="clickz")


def test_gauc_equals_per_group_sklearn(rng):
    n = 600
    g = rng.integers(0, 25, n)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 2)
    num = den = 0.0
    for grp in np.unique(g):
        m = g == grp
        if y[m].min() != y[m].max():
            num += roc_auc_score(y[m], s[m]) * m.sum()
            den += m.sum()
    assert gauc(y, s, g) == pytest.approx(num / den, abs=1e-12)


def test_logloss_hand_case_and_sklearn(rng):
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    y, p = rng.integers(0, 2, 200), rng.random(200)
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-9)
    assert np.isfinite(logloss([1, 0], [0.0, 1.0]))  # clipped, not inf


def test_calibration_hand_case_and_plot(tmp_path):
    # bin [0, .5): predicted 0.1, observed 1/2; bin [.5, 1]: predicted 0.9, observed 1 -> ECE = .5*.4 + .5*.1
    cal = calibration([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], n_bins=2)
    np.testing.assert_allclose(cal.mean_predicted, [0.1, 0.9])
    np.testing.assert_allclose(cal.observed_rate, [0.5, 1.0])
    np.testing.assert_array_equal(cal.counts, [2, 2])
    assert cal.ece == pytest.approx(0.25)
    assert calibration([0, 1], [0.0, 1.0]).ece == pytest.approx(0.0)  # perfectly calibrated
    q = calibration(np.arange(100) % 2, np.linspace(0, 1, 100), n_bins=4, strategy="quantile")
    assert q.counts.sum() == 100 and 0 <= q.ece <= 1
    png = reliability_plot(cal, tmp_path / "plots" / "rel.png", title="CTR")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="strategy"):
        calibration([0, 1], [0.2, 0.3], strategy="kmeans")


def test_conversion_metrics_use_the_right_rows():
    # CVR is judged on clicked rows only: there pcvr orders purchases perfectly, while an unclicked row
    # with a huge pcvr would break it if it were (wrongly) included.
    frame = pd.DataFrame({
        "user_id": [1, 1, 1, 2, 2, 2],
        "click":    [1, 1, 0, 1, 0, 1],
        "purchase": [1, 0, 0, 0, 0, 1],
        "pctr":     [0.9, 0.6, 0.1, 0.7, 0.2, 0.8],
        "pcvr":     [0.5, 0.1, 0.99, 0.2, 0.99, 0.6],
    })
    m = conversion_metrics(frame)
    assert m["ctr_auc"] == pytest.approx(1.0)
    assert m["cvr_auc"] == pytest.approx(1.0) and m["cvr_rows"] == 4
    ctcvr_score = frame.pctr * frame.pcvr
    assert m["ctcvr_auc"] == pytest.approx(roc_auc_score(frame.click & frame.purchase, ctcvr_score))
    assert m["ctr_gauc_user_id"] == pytest.approx(1.0)
    assert "ctr_gauc_media_id" not in m and 0 <= m["ctr_ece"] <= 1
    with pytest.raises(DataValidationError, match="pcvr"):
        conversion_metrics(frame.drop(columns="pcvr"))
