"""Defaults that travel: with no config, choose what matters on validation within a budget that scales with the data.

:func:`fit_default` on a users x items training matrix:

1. carves validation out of the training data (a share of a share of users' items, as the benchmark does);
2. fits the training-free graph filter (GF-CF: linear + ideal low-pass, :mod:`recsys.models.graph_filter`) on
   the rest;
3. trains two-tower candidates (temperature, weight decay) one after another while the budget lasts: early
   stop on validation (patience), the best epoch kept, a candidate stopped as soon as it trails the best one
   at the same epoch, and every run ended at the budget's deadline;
4. chooses the filter's ideal weight and the two-tower's blend weight together on validation
   (:func:`recsys.tuning.blend.choose_weights`; weight 0 drops the two-tower);
5. refits the filter on all training data; the two-tower keeps its weights and encodes users with all of
   their training items.

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

__all__ = ["DefaultFit", "default_budget", "fit_default", "TOWER_CANDIDATES", "IDEAL_WEIGHTS", "TOWER_WEIGHTS"]

#: two-tower settings tried in this order (changes to TwoTowerSettings' travelling defaults)
TOWER_CANDIDATES: tuple[dict, ...] = ({"temperature": 0.1}, {"temperature": 0.2},
                                      {"temperature": 0.1, "optimizer": "adamw", "weight_decay": 0.01},
                                      {"temperature": 0.05})
IDEAL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
TOWER_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)
VALIDATION_USERS_MAX = 5000  # users scored for the blend's grid (a seeded sample beyond that)


def default_budget(n_interactions: int) -> float:
    """Seconds of choosing (steps 2-4) for a training matrix of ``n_interactions``: 60 s plus 1 s per 4,000
    interactions, at most 360 s (Gowalla's 810k: 263 s), so the whole fit of Gowalla's size stays in 10 minutes."""
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


def fit_default(train: sp.csr_matrix, *, budget_s: float | None = None, seed: int = 0,
                log: Callable[[str], None] = print) -> DefaultFit:
    """The travelling default fitted on ``train`` (module docstring); ``budget_s`` None: :func:`default_budget`."""
    from recsys.fit.validation import carve_validation
    from recsys.models.graph_filter import GraphFilter
    from recsys.tuning.blend import BlendScorer, choose_weights

    t0 = time.monotonic()
    budget = default_budget(train.nnz) if budget_s is None else float(budget_s)
    deadline = t0 + budget
    rank = int(max(1, min(256, train.shape[1] // 4, train.shape[0] // 4)))
    fit, valid = carve_validation(train, 0.2, 0.2, seed)
    log(f"default: budget {budget:.0f} s for choosing; validation {valid.nnz:,} items held out of training")
    graph = GraphFilter(ideal_weight=1.0, ideal_rank=rank, seed=seed).fit(fit)
    seconds = {"graph_fit": time.monotonic() - t0}
    log(f"   graph filter fitted on the rest in {seconds['graph_fit']:.0f} s (ideal rank {rank})")
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    if len(users) > VALIDATION_USERS_MAX:
        users = np.sort(np.random.default_rng(seed).choice(users, VALIDATION_USERS_MAX, replace=False))
    # keep time for the grid (~3 filter passes over the sampled users) and the refit on all data
    reserve = 2.5 * seconds["graph_fit"] + 10
    model, tower_changes, tried = _towers(fit, valid, deadline - reserve, seed, log)
    seconds["two_tower"] = time.monotonic() - t0 - seconds["graph_fit"]
    tower = _encode(model, fit) if model is not None else None
    grid = choose_weights(graph, tower, fit, valid, ideal_weights=IDEAL_WEIGHTS, tower_weights=TOWER_WEIGHTS,
                          users=users)
    best = grid[0]
    seconds["grid"] = time.monotonic() - t0 - seconds["graph_fit"] - seconds["two_tower"]
    final_graph = GraphFilter(ideal_weight=best["ideal_weight"], ideal_rank=rank, seed=seed).fit(train)
    final_tower = _encode(model, train) if model is not None and best["tower_weight"] > 0 else None
    seconds["refit"] = time.monotonic() - t0 - sum(seconds.values())
    seconds["total"] = time.monotonic() - t0
    chosen = {"ideal_weight": best["ideal_weight"], "ideal_rank": rank, "tower_weight": best["tower_weight"],
              "two_tower": tower_changes if best["tower_weight"] > 0 else None,
              "validation_recall@20": round(best["recall@20"], 6), "validation_ndcg@20": round(best["ndcg@20"], 6),
              "graph_alone_validation_recall@20": round(max(r["recall@20"] for r in grid if r["tower_weight"] == 0), 6),
              "tower_candidates": tried, "budget_s": round(budget, 1), "validation_users": int(len(users))}
    scorer = BlendScorer(final_graph, final_tower, best["tower_weight"] if final_tower is not None else 0.0)
    return DefaultFit(scorer=scorer, chosen=chosen, seconds={k: round(v, 1) for k, v in seconds.items()})
