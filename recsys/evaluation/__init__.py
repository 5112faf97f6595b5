"""Evaluation that can be trusted: full-ranking top-K metrics (LightGCN protocol), ranking metrics for
pCTR/pCVR, beyond-accuracy and business-value metrics, sampled metrics on request, leakage guards.

Everything works from the public interface (a :class:`Scorer` or arrays of scores), never a torch module.
"""

from recsys.evaluation.beyond import (
    beyond_accuracy,
    catalog_coverage,
    gini_index,
    intra_list_diversity,
    long_tail_share,
    novelty,
)
from recsys.evaluation.business import expected_commission_at_k, gmv_at_k, value_at_k
from recsys.evaluation.leakage import (
    check_features_before_split,
    check_labels_not_in_features,
    check_no_overlap,
)
from recsys.evaluation.ranking import (
    Calibration,
    auc,
    calibration,
    conversion_metrics,
    gauc,
    gauc_details,
    logloss,
    reliability_plot,
)
from recsys.evaluation.sampled import SampledMetricWarning, sampled_metrics
from recsys.evaluation.topk import METRICS, EmbeddingScorer, Scorer, evaluate_topk, recommend_topk

__all__ = [
    "METRICS", "Calibration", "EmbeddingScorer", "SampledMetricWarning", "Scorer", "auc", "beyond_accuracy",
    "calibration", "catalog_coverage", "check_features_before_split", "check_labels_not_in_features",
    "check_no_overlap", "conversion_metrics", "evaluate_topk", "expected_commission_at_k", "gauc", "gauc_details",
    "gini_index", "gmv_at_k", "intra_list_diversity", "logloss", "long_tail_share", "novelty", "recommend_topk",
    "reliability_plot", "sampled_metrics", "value_at_k",
]
