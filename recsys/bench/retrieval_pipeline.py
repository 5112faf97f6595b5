"""``recsys benchmark retrieval`` with a pipeline config: each channel alone and the fused pipeline, 3 seeds.

Per seed: the two-tower's validation split is carved from the *training* data (its settings and the seed);
the two-tower trains on the fit part (epoch and popularity prior chosen on validation; ``retrain_full``
honoured), the graph filter, item-to-item table and popularity are fitted on the fit part too, and
:func:`recsys.channels.fusion.fit_fusion_weights` chooses the fusion weights on that validation split. Test is
read once, after every seed's weights are chosen: the graph filter and the other training-free channels are
refitted on all training data (seed-independent, so fitted once), and every seed's fused score and every
channel alone are evaluated in one pass over the test users (LightGCN protocol: all items ranked, training
items masked), the filter's block computed once per chunk for all seeds.

JSON: ``recall@20`` / ``ndcg@20`` / ``train_seconds`` at the top level are the fused pipeline's (mean over
seeds; ``*_std`` beside), ``channels`` holds each channel alone, ``seeds`` each seed's weights and validation
grid (what lost included), ``implicit-als`` runs beside. Fitting time per seed = its two-tower training (as
measured when it ran; a cached run keeps its measured time) + both filter / table fits + the weight search.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.bench.pipeline_settings import PipelineSettings, load_pipeline_settings, make_filter

__all__ = ["run_pipeline_benchmark", "fit_training_free", "select_weights"]


def _log(msg: str) -> None:
    print(msg, flush=True)


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(a.mean()), 6), "std": round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 6)}


def fit_training_free(settings: PipelineSettings, matrix: sp.csr_matrix) -> tuple[dict[str, Any], dict[str, float]]:
    """The training-free channels fitted on ``matrix``: name -> scorer, and name -> fit seconds."""
    from recsys.channels.channels import ItemToItemChannel, PopularChannel

    scorers: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    scorers["graph_filter"] = make_filter(settings.graph_filter).fit(matrix)
    seconds["graph_filter"] = time.perf_counter() - t
    if settings.item_to_item is not None:
        t = time.perf_counter()
        scorers["item_to_item"] = _ChannelScorer(ItemToItemChannel(**settings.item_to_item).fit(matrix))
        seconds["item_to_item"] = time.perf_counter() - t
    scorers["popular"] = _ChannelScorer(PopularChannel().fit(matrix))
    return scorers, seconds


class _ChannelScorer:
    """A channel seen as a :class:`recsys.evaluation.Scorer`."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.channel.scores(users)


def select_weights(settings: PipelineSettings, train: sp.csr_matrix, seed: int) -> dict[str, Any]:
    """One seed's fitting: two-tower, training-free channels on the fit split, weights chosen on validation.

    Reads only ``train``; returns the two-tower embeddings, the fusion fit and the seconds spent."""
    from recsys.channels.fusion import fit_fusion_weights
    from recsys.channels.two_tower_fit import fit_two_tower_embeddings
    from recsys.evaluation import EmbeddingScorer
    from recsys.fit.validation import carve_validation, split_validation_users

    cfg = settings.seeded(seed)
    emb = None
    if settings.uses_two_tower:
        emb = fit_two_tower_embeddings(cfg, train, log=_log, cache_dir=settings.cache_dir,
                                       held_for_fusion=settings.fusion_users)
    fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
    if settings.fusion_users:  # weights chosen only on the users the two-tower did not select on
        _, valid = split_validation_users(valid, settings.fusion_users, cfg.seed)
    t0 = time.perf_counter()
    scorers, fit_seconds = fit_training_free(settings, fit)
    if emb is not None:
        scorers["two_tower"] = EmbeddingScorer(emb.valid_users, emb.valid_items)
    fusion = fit_fusion_weights(scorers, fit, valid, settings.fusion_grid, n_workers=settings.workers)
    seconds = time.perf_counter() - t0
    _log(f"seed {seed}: weights chosen on validation {fusion.weights} -> R@20 {fusion.validation['recall@20']:.4f} "
         f"N@20 {fusion.validation['ndcg@20']:.4f} ({seconds:.0f} s: channels fitted on the fit split + search)")
    return {"embeddings": emb, "fusion": fusion, "selection_seconds": seconds, "fit_split_seconds": fit_seconds}


def run_pipeline_benchmark(data_dir: str | Path, config_path: str | Path,
                           json_path: str | Path | None = None) -> dict[str, Any]:
    """Fit every seed, choose weights on validation, then read test once; returns (and writes) the figures."""
    from recsys.bench.retrieval_output import _write_json
    from recsys.channels.fusion import evaluate_combinations
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.evaluation import EmbeddingScorer

    settings = load_pipeline_settings(config_path)
    ds = load_lightgcn(data_dir)
    train = ds.train_matrix()
    _log(f"{data_dir}: {ds.n_users:,} users x {ds.n_items:,} items, {train.nnz:,} train")
    per_seed = {s: select_weights(settings, train, s) for s in settings.seeds}
    t = time.perf_counter()
    scorers, full_seconds = fit_training_free(settings, train)
    full_fit = time.perf_counter() - t
    test = ds.test_matrix()  # read here, after every weight is chosen
    combos, labels = [], []
    for s, r in per_seed.items():
        w = r["fusion"].weights
        combos.append({(f"two_tower/seed{s}" if n == "two_tower" else n): v for n, v in w.items()})
        labels.append(("fused", s))
        if r["embeddings"] is not None:
            scorers[f"two_tower/seed{s}"] = EmbeddingScorer(r["embeddings"].test_users, r["embeddings"].test_items)
            combos.append({f"two_tower/seed{s}": 1.0})
            labels.append(("two_tower", s))
    for name in ("graph_filter", "item_to_item", "popular"):
        if name in scorers:
            combos.append({name: 1.0})
            labels.append((name, None))
    t = time.perf_counter()
    results = evaluate_combinations(scorers, combos, train, test, n_workers=settings.workers)
    eval_seconds = time.perf_counter() - t
    result = _result(settings, ds, data_dir, config_path, per_seed, labels, results, full_seconds, full_fit,
                     eval_seconds)
    if settings.baselines:
        from recsys.fit.baselines import add_als_row

        add_als_row(result, train, test)
    result["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if json_path is not None:
        _write_json(result, json_path)
    return result


def _result(settings, ds, data_dir, config_path, per_seed, labels, results, full_seconds, full_fit,
            eval_seconds) -> dict[str, Any]:
    """The JSON: fused figures at the top level, each channel beside, each seed's choice and timings."""
    by: dict[str, list] = {}
    for (name, seed), r in zip(labels, results, strict=True):
        by.setdefault(name, []).append((seed, r))
    seeds_out, fused_secs = {}, []
    for s, r in per_seed.items():
        meta = r["embeddings"].meta if r["embeddings"] is not None else {}
        seconds = meta.get("train_seconds", 0.0) + r["selection_seconds"] + full_fit
        fused_secs.append(seconds)
        seeds_out[str(s)] = {
            "weights": r["fusion"].weights, "validation": r["fusion"].validation,
            "validation_tried": r["fusion"].tried, "fit_seconds": round(seconds, 1),
            "two_tower": {k: meta.get(k) for k in ("train_seconds", "train_cpu_seconds", "best_epoch",
                                                   "popularity_prior", "validation", "peak_memory_mb", "from_cache")},
            "fit_split_seconds": {k: round(v, 1) for k, v in r["fit_split_seconds"].items()},
            "selection_seconds": round(r["selection_seconds"], 1)}
    fused = by["fused"]
    out: dict[str, Any] = {"data_dir": str(data_dir), "n_users": ds.n_users, "n_items": ds.n_items,
                           "config_file": str(config_path)}
    for m in ("recall@20", "ndcg@20"):
        ms = _mean_std([r[m] for _, r in fused])
        out[m], out[f"{m}_std"] = ms["mean"], ms["std"]
    out["train_seconds"] = round(float(np.mean(fused_secs)), 1)
    out["fused_per_seed"] = {str(s): {m: round(r[m], 6) for m in r} for s, r in fused}
    out["channels"] = {}
    for name, rows in by.items():
        if name == "fused":
            continue
        entry = {m: _mean_std([r[m] for _, r in rows]) for m in ("recall@20", "ndcg@20")}
        if rows[0][0] is not None:
            entry["per_seed"] = {str(s): {m: round(r[m], 6) for m in r} for s, r in rows}
            entry["train_seconds"] = _mean_std([per_seed[s]["embeddings"].meta["train_seconds"] for s, _ in rows])
        else:
            entry["fit_seconds_all_training_data"] = round(full_seconds.get(name, 0.0), 1)
        out["channels"][name] = entry
    out["seeds"] = seeds_out
    out["training_free_fit_seconds_all_training_data"] = round(full_fit, 1)
    out["test_evaluation_seconds"] = round(eval_seconds, 1)
    out["settings"] = {**{k: v for k, v in asdict(settings).items() if k != "two_tower"},
                       "two_tower": asdict(settings.two_tower)}
    out["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                      "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                      "note": "wall seconds on a 2-core machine shared with other jobs"}
    return out
