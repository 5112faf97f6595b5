"""Defaults that travel: with no config, choose what matters on validation within a budget that scales with the data.

:func:`fit_default` on a users x items training matrix:

1. carves validation out of the training data (a share of a share of users' items, as the benchmark does);
2. fits the training-free graph filter (GF-CF: linear + ideal low-pass, :mod:`recsys.models.graph_filter`) on
   the rest;
3. fits implicit-ALS for a few (regularisation, confidence) settings and keeps the best on validation
   (skipped when the ``implicit`` package is missing), then trains two-tower candidates (temperature, weight decay) one after another while the budget lasts: early
   stop on validation (patience), the best epoch kept, a candidate stopped as soon as it trails the best one
   at the same epoch, and every run ended at the budget's deadline;
4. chooses the filter's ideal weight, then the blend weights of ALS and the two-tower on validation
   (:func:`recsys.tuning.blend.choose_weights`; weight 0 drops a channel);
5. refits the filter and ALS on all training data; the two-tower keeps its weights and encodes users with
   all of their training items.

It returns the blend's scorer and a record of every choice (``chosen``), for the console and MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.fit.callbacks import Callback, StopTraining

__all__ = ["DefaultFit", "default_budget", "fit_default", "TOWER_CANDIDATES", "IDEAL_WEIGHTS", "CHANNEL_WEIGHTS", "ALS_CANDIDATES"]

#: two-tower settings tried in this order (changes to TwoTowerSettings' travelling defaults)
TOWER_CANDIDATES: tuple[dict, ...] = ({"temperature": 0.1}, {"temperature": 0.2},
                                      {"temperature": 0.1, "optimizer": "adamw", "weight_decay": 0.01},
                                      {"temperature": 0.05})
IDEAL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
CHANNEL_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
#: implicit-ALS settings tried (the first is the benchmark's own ALS row: recsys.fit.baselines.DEFAULT_ALS)
ALS_CANDIDATES: tuple[dict, ...] = ({"regularization": 10.0, "alpha": 50.0}, {"regularization": 0.1, "alpha": 10.0},
                                    {"regularization": 10.0, "alpha": 200.0})
VALIDATION_USERS_MAX = 5000  # users scored for the blend's grid (a seeded sample beyond that)


def default_budget(n_interactions: int) -> float:
    """Seconds of choosing (steps 2-4; the refit comes after) for a training matrix of ``n_interactions``: 60 s plus
    1 s per 4,000 interactions, at most 360 s (Gowalla's 810k: 263 s), so a fit of Gowalla's size can stay within
    10 minutes."""
    return float(min(360.0, 60.0 + n_interactions / 4000))


@dataclass
class DefaultFit:
    """The fitted blend (``scorer``), what was chosen (``chosen``) and the seconds each step took."""

    scorer: Any
    chosen: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


class _Race(Callback):
    """Stops a candidate at the deadline, or when its validation recall trails the best candidate's at that epoch."""

    def __init__(self, deadline: float, best_curve: dict[int, float], log: Callable[[str], None]) -> None:
        self.deadline, self.best_curve, self.log = deadline, best_curve, log

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get("recall@20", 0.0)
        self.log(f"     epoch {epoch}: validation recall@20 {value:.4f}  ({metrics.get('seconds', 0):.0f} s)")
        if epoch >= 2 and epoch in self.best_curve and value < 0.99 * self.best_curve[epoch]:
            self.log("     stopped: trails the best candidate at this epoch")
            raise StopTraining()
        if time.monotonic() > self.deadline:
            raise StopTraining()


def _towers(fit: sp.csr_matrix, valid: sp.csr_matrix, deadline: float, seed: int,
            log: Callable[[str], None]) -> tuple[Any, dict, list[dict]]:
    """Two-tower candidates trained while time is left; the best model by validation recall@20."""
    from recsys.features.retrieval_data import RetrievalData
    from recsys.fit.two_tower import train_two_tower
    from recsys.fit.two_tower_settings import TwoTowerSettings

    best, best_curve, tried = None, {}, []
    for changes in TOWER_CANDIDATES:
        if time.monotonic() > deadline:
            break
        cfg = replace(TwoTowerSettings(baselines=False, seed=seed, device="cpu"), **changes)
        log(f"   two-tower {changes}")
        fitted = train_two_tower(cfg, RetrievalData(fit), validation=valid, progress=False,
                                 callbacks=[_Race(deadline, best_curve, log)])
        s = fitted.summary
        value = float(s["best_metrics"].get("recall@20", 0.0))
        tried.append({**changes, "validation_recall@20": round(value, 6), "best_epoch": s["best_epoch"],
                      "epochs_run": s["epochs_run"]})
        if best is None or value > best[1]["best_metrics"]["recall@20"]:
            best = (fitted.model, s, changes)
            best_curve = {h["epoch"]: h.get("recall@20", 0.0) for h in s["history"]}
    if best is None:
        return None, {}, tried
    return best[0], best[2], tried


def _encode(model: Any, train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    from recsys.features.retrieval_data import RetrievalData
    from recsys.models.encode import encode_all

    model.set_item_audience(train)
    return encode_all(model, RetrievalData(train))


def _als(fit: sp.csr_matrix, valid: sp.csr_matrix, users: np.ndarray, seed: int,
         log: Callable[[str], None]) -> tuple[dict | None, list[dict], tuple | None]:
    """The ALS setting with the best validation recall@20, every setting tried and the best one's factors
    (None, [], None when ``implicit`` is not installed)."""
    from recsys.errors import MissingDependencyError
    from recsys.models.baselines import ImplicitALS
    from recsys.tuning.blend import _metric_sums

    best, tried = None, []
    for params in ALS_CANDIDATES:
        try:
            model = ImplicitALS(factors=64, iterations=15, seed=seed, **params).fit(fit)
        except MissingDependencyError as e:
            log(f"   implicit-ALS channel skipped: {e}")
            return None, tried, None
        recall = 0.0
        for s in range(0, len(users), 1024):
            b = users[s:s + 1024]
            recall += _metric_sums(model.score(b), fit[b], valid[b], 20)[0]
        tried.append({**params, "validation_recall@20": round(recall / len(users), 6)})
        log(f"   implicit-ALS {params}: validation recall@20 {recall / len(users):.4f}")
        if best is None or tried[-1]["validation_recall@20"] > best[1]:
            best = (params, tried[-1]["validation_recall@20"], model)
    return best[0], tried, (best[2].user_factors_, best[2].item_factors_)


def _als_factors(params: dict, train: sp.csr_matrix, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from recsys.models.baselines import ImplicitALS

    model = ImplicitALS(factors=64, iterations=15, seed=seed, **params).fit(train)
    return model.user_factors_, model.item_factors_


def fit_default(train: sp.csr_matrix, *, budget_s: float | None = None, seed: int = 0,
                log: Callable[[str], None] = print) -> DefaultFit:
    """The travelling default fitted on ``train`` (module docstring); ``budget_s`` None: :func:`default_budget`."""
    from recsys.fit.validation import carve_validation
    from recsys.models.graph_filter import GraphFilter
    from recsys.tuning.blend import BlendScorer, choose_weights

    t0 = time.monotonic()
    budget = default_budget(train.nnz) if budget_s is None else float(budget_s)
    rank = int(max(1, min(256, train.shape[1] // 4, train.shape[0] // 4)))
    fit, valid = carve_validation(train, 0.2, 0.2, seed)
    log(f"default: budget {budget:.0f} s for choosing; validation {valid.nnz:,} items held out of training")
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    if len(users) > VALIDATION_USERS_MAX:
        users = np.sort(np.random.default_rng(seed).choice(users, VALIDATION_USERS_MAX, replace=False))
    clock = _Clock()
    graph = GraphFilter(ideal_weight=1.0, ideal_rank=rank, seed=seed).fit(fit)
    log(f"   graph filter fitted on the rest in {clock.lap('graph_fit'):.0f} s (ideal rank {rank})")
    als_params, als_tried, als_factors = _als(fit, valid, users, seed, log)
    channels = {"als": als_factors} if als_params else {}
    clock.lap("als")
    # keep time for the weights' grid: about three filter passes over the sampled users, measured at 0.2-0.6 of
    # the filter's fit (the refit on all data comes after the budget)
    reserve = 0.5 * clock.seconds["graph_fit"] + 10
    model, tower_changes, tried = _towers(fit, valid, t0 + budget - reserve, seed, log)
    if model is not None:
        channels["two_tower"] = _encode(model, fit)
    clock.lap("two_tower")
    best, grid = choose_weights(graph, channels, fit, valid, ideal_weights=IDEAL_WEIGHTS,
                                channel_weights=CHANNEL_WEIGHTS, users=users)
    clock.lap("grid")
    final_graph = GraphFilter(ideal_weight=best["ideal_weight"], ideal_rank=rank, seed=seed).fit(train)
    final = {}
    if best.get("als"):
        final["als"] = (_als_factors(als_params, train, seed), best["als"])
    if best.get("two_tower"):
        final["two_tower"] = (_encode(model, train), best["two_tower"])
    clock.lap("refit")
    graph_alone = max(r["recall@20"] for r in grid if set(r) == {"ideal_weight", "recall@20", "ndcg@20"})
    chosen = {"ideal_weight": best["ideal_weight"], "ideal_rank": rank, "als_weight": best.get("als", 0.0),
              "als": als_params if best.get("als") else None, "tower_weight": best.get("two_tower", 0.0),
              "two_tower": tower_changes if best.get("two_tower") else None,
              "validation_recall@20": round(best["recall@20"], 6), "validation_ndcg@20": round(best["ndcg@20"], 6),
              "graph_alone_validation_recall@20": round(graph_alone, 6), "als_candidates": als_tried,
              "tower_candidates": tried, "budget_s": round(budget, 1), "validation_users": int(len(users))}
    clock.seconds["total"] = time.monotonic() - t0
    return DefaultFit(scorer=BlendScorer(final_graph, final), chosen=chosen,
                      seconds={k: round(v, 1) for k, v in clock.seconds.items()})


class _Clock:
    """Seconds per named step, each measured from the end of the previous one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> float:
        now = time.monotonic()
        self.seconds[name] = now - self._last
        self._last = now
        return self.seconds[name]
