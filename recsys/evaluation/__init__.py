"""Evaluation that can be trusted: full-ranking top-K metrics (LightGCN protocol), ranking metrics for
pCTR/pCVR, beyond-accuracy and business-value metrics, sampled metrics on request, leakage guards.

Everything works from the public interface (a :class:`Scorer` or arrays of scores), never a torch module.
Names load lazily on first use, so ``recsys.cli.evaluate`` (and ``recsys --help``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys.lazy import lazy_exports

_EXPORTS = {
    "topk": ["METRICS", "EmbeddingScorer", "Scorer", "evaluate_topk", "recommend_topk"],
    "ranking": ["Calibration", "auc", "calibration", "conversion_metrics", "gauc", "gauc_details", "logloss",
                "reliability_plot"],
    "beyond": ["beyond_accuracy", "catalog_coverage", "gini_index", "intra_list_diversity", "long_tail_share",
               "novelty"],
    "business": ["expected_commission_at_k", "gmv_at_k", "value_at_k"],
    "sampled": ["SampledMetricWarning", "sampled_metrics"],
    "leakage": ["check_features_before_split", "check_labels_not_in_features", "check_no_overlap"],
}
_WHERE = {name: f".{module}" for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)


if TYPE_CHECKING:  # for type checkers and IDEs
    from recsys.evaluation.beyond import (  # noqa: F401
        beyond_accuracy,
        catalog_coverage,
        gini_index,
        intra_list_diversity,
        long_tail_share,
        novelty,
    )
    from recsys.evaluation.business import expected_commission_at_k, gmv_at_k, value_at_k  # noqa: F401
    from recsys.evaluation.leakage import (  # noqa: F401
        check_features_before_split,
        check_labels_not_in_features,
        check_no_overlap,
    )
    from recsys.evaluation.ranking import (  # noqa: F401
        Calibration,
        auc,
        calibration,
        conversion_metrics,
        gauc,
        gauc_details,
        logloss,
        reliability_plot,
    )
    from recsys.evaluation.sampled import SampledMetricWarning, sampled_metrics  # noqa: F401
    from recsys.evaluation.topk import METRICS, EmbeddingScorer, Scorer, evaluate_topk, recommend_topk  # noqa: F401
