"""Objectives per media partner: clicks, purchases, GMV, expected commission."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import ConfigError, DataValidationError
from recsys.models.rankers.objectives import (
    normalise_objective,
    objective_scores,
    partner_objectives,
    score_rows,
    top_k_per_group,
)

PREDS = pd.DataFrame({"pctr": [0.10, 0.05, 0.02], "pcvr": [0.01, 0.10, 0.50]}).assign(
    pctcvr=lambda d: d["pctr"] * d["pcvr"])
ROWS = pd.DataFrame({"price": [10.0, 100.0, 50.0], "commission_rate": [0.5, 0.02, 0.2],
                     "media_id": ["app", "guide", "kol"]})


def test_each_objective_picks_a_different_best_item():
    best = {o: int(np.argmax(score_rows(PREDS, ROWS, o))) for o in ("clicks", "purchases", "gmv", "commission")}
    # clicks: 0.10 vs 0.05 vs 0.02; purchases: .001 .005 .01; gmv: .01 .5 .5 -> ties by order; commission: .005 .01 .1
    assert best == {"clicks": 0, "purchases": 2, "gmv": 1, "commission": 2}
    np.testing.assert_allclose(score_rows(PREDS, ROWS, "commission"), [0.005, 0.01, 0.1])


def test_per_partner_objectives_and_synonyms():
    media = pd.DataFrame({"media_id": ["app", "guide"], "objective": ["CTR", "earnings"]})
    mapping = partner_objectives(media)
    assert mapping == {"app": "clicks", "guide": "commission"}
    got = score_rows(PREDS, ROWS, mapping, default="purchases")  # kol is missing -> default
    np.testing.assert_allclose(got, [0.10, 0.005 * 100 * 0.02, 0.01])
    with pytest.raises(ConfigError, match="objective 'likes'"):
        normalise_objective("likes")
    with pytest.raises(DataValidationError, match="price"):
        objective_scores(PREDS, "gmv")


def test_top_k_per_group():
    groups = np.array([1, 1, 1, 2, 2, 3])
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.3, 0.0])
    assert top_k_per_group(groups, scores, 2).tolist() == [False, True, True, True, True, True]
    assert top_k_per_group(groups, scores, 1).tolist() == [False, True, False, True, False, True]
