"""Baseline recommenders evaluated on (train, test) matrices: most popular, random and implicit's ALS.

The benchmarks (``recsys.bench.baselines``) and the default training run (``recsys.tuning``) both
place their models beside these, so the evaluation lives in the library, not in a benchmark.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import scipy.sparse as sp

from recsys.errors import MissingDependencyError

#: ALS hyperparameters of the baseline table: the ``ALS_GRID`` point with the best mean validation
#: Recall@20 over Gowalla and Yelp2018 (``tune_als``; experiments/baselines/als_validation_*.json).
DEFAULT_ALS = {"factors": 64, "regularization": 10.0, "alpha": 50.0, "iterations": 15, "num_threads": 0,
               "seed": 0}


def evaluate_baselines(train: sp.csr_matrix, test: sp.csr_matrix, *, ks=(20,), als_params: dict | None = None,
                       names: Iterable[str] = ("popular", "random", "implicit-als")) -> dict[str, dict]:
    """Fit and evaluate each named baseline on (train, test); a missing `implicit` is reported, not fatal."""
    from recsys.evaluation import evaluate_topk
    from recsys.models.baselines import ImplicitALS, MostPopular, RandomRecommender

    params = {**DEFAULT_ALS, **(als_params or {})}
    makers = {"popular": MostPopular, "random": lambda: RandomRecommender(seed=0),
              "implicit-als": lambda: ImplicitALS(**params)}
    results: dict[str, dict] = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            model = makers[name]().fit(train)
        except MissingDependencyError as e:
            print(f"{name:<13} skipped: {e}")
            results[name] = {"error": str(e)}
            continue
        t1 = time.perf_counter()
        scorer = model.scorer()
        metrics = evaluate_topk(scorer, train, test, ks, metrics=("recall", "ndcg"))
        t2 = time.perf_counter()
        entry = {**{k: round(v, 6) for k, v in metrics.items()}, "seconds": round(t2 - t0, 2),
                 "fit_seconds": round(t1 - t0, 2), "eval_seconds": round(t2 - t1, 2)}
        if name == "implicit-als":
            entry["params"] = params
            entry["threads"] = params["num_threads"] or os.cpu_count()
        results[name] = entry
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        print(f"{name:<13} {shown}  {entry['seconds']:.1f} s (fit {entry['fit_seconds']:.1f} s)", flush=True)
    return results


def add_als_row(result: dict[str, Any], train: sp.csr_matrix, test: sp.csr_matrix) -> dict[str, Any]:
    """implicit-ALS (:data:`DEFAULT_ALS`) fitted and evaluated beside a model: ``result["implicit-als"]`` and,
    when it ran, ``result["ratio_vs_als"]`` (the model's ``recall@20`` / ``ndcg@20`` over ALS's). Returns
    ``result``."""
    als = evaluate_baselines(train, test, names=("implicit-als",))["implicit-als"]
    result["implicit-als"] = als
    if "recall@20" in als:
        result["ratio_vs_als"] = {k: round(result[k] / als[k], 3) for k in ("recall@20", "ndcg@20")}
    return result
