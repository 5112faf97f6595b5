"""Rankers: calibrated pCTR / pCVR / pCTCVR behind one interface (see :mod:`recsys.models.rankers.base`).

Heavy modules load lazily: ``from recsys.models.rankers import GBDTRanker`` imports scikit-learn's
pieces only when fitting, ``ESMMRanker`` imports torch.
"""

from __future__ import annotations

from recsys.models.rankers.base import OUTPUTS, CalibratedRanker, Ranker, load_ranker
from recsys.models.rankers.objectives import OBJECTIVES, objective_scores, score_rows

__all__ = ["OUTPUTS", "OBJECTIVES", "CalibratedRanker", "Ranker", "load_ranker", "objective_scores", "score_rows",
           "GBDTRanker", "ESMMRanker"]


def __getattr__(name: str):
    if name == "GBDTRanker":
        from recsys.models.rankers.gbdt import GBDTRanker

        return GBDTRanker
    if name == "ESMMRanker":
        from recsys.models.rankers.esmm import ESMMRanker

        return ESMMRanker
    raise AttributeError(name)
