"""Rankers: calibrated pCTR / pCVR / pCTCVR behind one interface (see :mod:`recsys.models.rankers.base`).

Heavy modules load lazily: ``from recsys.models.rankers import GBDTRanker`` imports scikit-learn's
pieces only when fitting, ``ESMMRanker`` imports torch.
"""

from __future__ import annotations

from recsys.lazy import lazy_exports
from recsys.models.rankers.base import OUTPUTS, CalibratedRanker, Ranker
from recsys.models.rankers.objectives import OBJECTIVES, objective_scores, score_rows
from recsys.models.rankers.registry import RANKER_KINDS, load_ranker, ranker_class

__all__ = ["OUTPUTS", "OBJECTIVES", "RANKER_KINDS", "CalibratedRanker", "Ranker", "load_ranker", "ranker_class",
           "objective_scores", "score_rows", "GBDTRanker", "ESMMRanker"]

__getattr__, __dir__ = lazy_exports(__name__, {"GBDTRanker": ".gbdt", "ESMMRanker": ".esmm"})
