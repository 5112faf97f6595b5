"""The stages of ``recsys train``: features -> two-tower -> index -> ranker, each with its evaluation.

Each function takes the typed config section it needs and returns plain results (fitted objects,
metric dicts, curves for the plots); :mod:`recsys.pipeline.train` runs them in order, tracks and saves.
Evaluation never sees test data while fitting: the two-tower validates on a share carved out of the
training matrix, the ranker's features for test impressions are built point-in-time after the cut.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.fit.settings import (
    IndexConfig,
    RankerConfig,
    TrainConfig,
    TwoTowerSettings,
    load_two_tower_settings,
)
from recsys.fit.tables import ENGAGED, Split, Tables

__all__ = ["RetrievalResult", "RankerResult", "fit_features", "train_retrieval", "evaluate_retrieval",
           "build_index", "train_ranker", "test_matrix",
           "retrieval_settings", "ann_sweep"]


@dataclass
class RetrievalResult:
    """The trained two-tower model, its training data (index space) and the per-epoch history."""

    model: Any
    data: Any
    summary: dict
    user_emb: np.ndarray | None = None
    item_emb: np.ndarray | None = None


@dataclass
class RankerResult:
    """A fitted ranker with its feature builder for serving, test metrics and the calibration curve."""

    ranker: Any
    builder: Any
    metrics: dict = field(default_factory=dict)
    calibration: Any = None
    summary: dict = field(default_factory=dict)  # recsys.fit.components.ranker_labels's record: trained, or why not


def fit_features(cfg: TrainConfig, tables: Tables, split: Split):
    """The feature pipeline fitted on training events (ids and histories only for interaction-only data)."""
    from recsys.features.pipeline import FeaturePipeline
    from recsys.fit.components import profile_columns

    f = cfg.features
    if tables.interaction_only:
        pipe = FeaturePipeline(item_categoricals=(), price_column=None, title_column=None, context_column=None,
                               history_len=f.history_len)
    else:
        pipe = FeaturePipeline(user_categoricals=profile_columns(tables.users), title_buckets=f.title_buckets,
                               price_buckets=f.price_buckets, history_len=f.history_len)
    return pipe.fit(split.train, tables.items, tables.users)


def retrieval_settings(cfg: TrainConfig) -> TwoTowerSettings:
    """The two-tower settings of a ``recsys train`` config: its ``bench_config`` file (``default``: the
    benchmark's travelling configuration), or its own ``retrieval`` keys."""
    r = cfg.retrieval
    if r.bench_config == "default":  # the benchmark's travelling configuration (no --config)
        return TwoTowerSettings()
    if r.bench_config:
        path = Path(r.bench_config)
        repo_path = Path(__file__).resolve().parents[2] / path
        return load_two_tower_settings(path if path.exists() or path.is_absolute() or not repo_path.exists()
                                       else repo_path)
    return r.two_tower(cfg.seed)


def _stage_settings(cfg: TrainConfig, data: Any, interaction_only: bool) -> TwoTowerSettings:
    """:func:`retrieval_settings` as this stage trains them: on the CPU, item-id dropout and checkpoints from the
    ``retrieval`` section, no more uniform negatives than items, impression negatives only with impressions."""
    bc, r = retrieval_settings(cfg), cfg.retrieval
    return replace(bc, item_id_dropout=0.0 if interaction_only else r.item_id_dropout,
                   checkpoint_every=r.checkpoint_every, device="cpu",
                   num_negatives=min(bc.num_negatives, data.positives.shape[1]),
                   negatives=bc.negatives if bc.negatives != "impressions" or data.impressions is not None else "mixed")


def train_retrieval(cfg: TrainConfig, pipeline: Any, tables: Tables, split: Split, *, callbacks: list,
                    progress: bool, checkpoint_dir: Path | None = None, resume: bool = True) -> RetrievalResult:
    """Train the two-tower model; with a validation share, pick the best epoch on it (early stopping), and
    with the benchmark's ``retrain_full`` train again on all training data for that many epochs.

    ``checkpoint_dir``: checkpoint there (``fit/``, ``retrain/``) and resume from what it holds; the summary's
    ``resumed_from`` says where (epoch, step) or is None."""
    from recsys.features.retrieval_data import RetrievalData
    from recsys.fit.two_tower import train_two_tower
    from recsys.fit.validation import apply_chosen_prior, carve_validation
    from recsys.models.encode import encode_all

    data = pipeline.training_data(split.train, tables.items, tables.users)
    bc = _stage_settings(cfg, data, tables.interaction_only)
    validate_share = bc.validation_fraction if cfg.retrieval.bench_config else cfg.retrieval.validation_fraction
    fit_data, valid = data, None
    if validate_share > 0:
        fit, valid = carve_validation(data.positives, validate_share, bc.validation_users, bc.seed)
        fit_data = RetrievalData(fit, history=fit, impressions=data.impressions, user_features=data.user_features,
                                 item_features=data.item_features)

    sub = (lambda name: checkpoint_dir / name) if checkpoint_dir is not None else (lambda name: None)  # noqa: E731
    sizes = pipeline.tower_sizes()
    model, summary, resumed_from = train_two_tower(bc, fit_data, sizes=sizes, validation=valid, callbacks=callbacks,
                                                   progress=progress, checkpoint_dir=sub("fit"), resume=resume)
    summary = {**summary, "resumed_from": resumed_from}
    if valid is not None and cfg.retrieval.bench_config and bc.retrain_full:
        model = train_two_tower(bc, data, sizes=sizes, epochs=summary["best_epoch"], progress=progress,
                                checkpoint_dir=sub("retrain"), resume=resume).model
        summary = {**summary, "retrained_epochs": summary["best_epoch"]}
    model.set_item_audience(data.positives)  # item_audience: served with every training interaction
    model, _ = apply_chosen_prior(model, summary, data.positives)
    from recsys.fit.distributed import is_main_process

    if not is_main_process():  # another torchrun rank: rank 0 encodes, evaluates and saves
        return RetrievalResult(model=model, data=data, summary=summary)
    users, items = encode_all(model, data)
    return RetrievalResult(model=model, data=data, summary=summary, user_emb=users, item_emb=items)


def test_matrix(pipeline: Any, split: Split, train_positives: sp.csr_matrix) -> tuple[sp.csr_matrix, dict]:
    """Engaged test pairs in the pipeline's index space, minus pairs already engaged in training."""
    test = split.test[split.test["event_type"].astype(str).isin(ENGAGED)]
    u = pipeline.users_.transform(test["user_id"].to_numpy())
    i = pipeline.items_.transform(test["item_id"].to_numpy())
    known = (u != pipeline.users_.oov_index) & (i != pipeline.items_.oov_index)
    m = sp.csr_matrix((np.ones(int(known.sum()), np.float32), (u[known], i[known])), shape=train_positives.shape)
    m.sum_duplicates()
    m.data[:] = 1.0  # a pair engaged twice counts once
    seen = m.multiply(train_positives > 0)
    out = (m - seen).tocsr()
    out.eliminate_zeros()
    info = {"test_pairs": int(out.nnz), "test_users": int((np.diff(out.indptr) > 0).sum()),
            "test_pairs_seen_in_train": int(seen.nnz), "test_rows_unknown_ids": int((~known).sum())}
    return out, info


def evaluate_retrieval(cfg: TrainConfig, res: RetrievalResult, test: sp.csr_matrix) -> dict[str, dict]:
    """Full-ranking metrics (train items masked) of the two-tower model and the baselines, per K."""
    from recsys.evaluation import EmbeddingScorer, evaluate_topk
    from recsys.models.baselines import MostPopular, RandomRecommender

    train = res.data.positives
    ks = tuple(sorted(set(cfg.evaluation.ks)))
    models: dict[str, Any] = {"two-tower": EmbeddingScorer(res.user_emb, res.item_emb)}
    if "popular" in cfg.evaluation.baselines:
        models["popular"] = MostPopular().fit(train)
    if "random" in cfg.evaluation.baselines:
        models["random"] = RandomRecommender(seed=cfg.seed).fit(train)
    metrics = ("recall", "ndcg", "hit_rate")
    return {name: evaluate_topk(scorer, train, test, ks, metrics=metrics) for name, scorer in models.items()}


def build_index(cfg: IndexConfig, item_emb: np.ndarray, item_ids: np.ndarray, queries: np.ndarray,
                seed: int = 0) -> tuple[Any, dict]:
    """The item index, tuned on user queries; the record has recall vs exact and the latency grid."""
    from recsys.index import ExactIndex, FaissIndex, auto_index, tune_index

    k = min(cfg.tune_k, len(item_ids))
    rng = np.random.default_rng(seed)
    q = queries[rng.choice(len(queries), min(cfg.tune_queries, len(queries)), replace=False)]
    if cfg.kind == "exact":
        return ExactIndex(metric="ip").build(item_emb, item_ids), {"kind": "exact", "recall": 1.0, "grid": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cfg.kind == "faiss":
            index = FaissIndex(factory=cfg.factory, metric="ip", seed=seed).build(item_emb, item_ids)
            record = tune_index(index, q, k=k, recall_target=cfg.recall_target, reference_vectors=item_emb)
        else:
            index = auto_index(item_emb, item_ids, memory_budget_mb=cfg.memory_budget_mb, metric="ip",
                               recall_target=cfg.recall_target, sample_queries=q, k=k, seed=seed)
            record = index.tuning
    chosen = min((g for g in record["grid"] if g["params"] == record["params"]),
                 key=lambda g: g["ms_per_query_batch"], default={"ms_per_query_batch": float("nan")})
    return index, {"kind": cfg.kind, "factory": index.factory, "k": k, "recall": record["recall"],
                   "ms_per_query": chosen["ms_per_query_batch"], "params": record["params"],
                   "met_target": record["met_target"], "grid": record["grid"],
                   "curve_k": min(cfg.curve_k, len(item_ids)),
                   "curve": ann_sweep(index, q, item_emb, min(cfg.curve_k, len(item_ids)))}


def _knob_grid(factory: str) -> list[dict]:
    import re

    if "HNSW" in factory:
        return [{"efSearch": e} for e in (4, 8, 16, 32, 64, 128, 256, 512)]
    m = re.search(r"IVF(\d+)", factory)
    if m:
        nlist = int(m.group(1))
        return [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if p <= nlist]
    return [{}]


def ann_sweep(index: Any, queries: np.ndarray, reference: np.ndarray, k: int) -> list[dict]:
    """Recall@k against exact search and ms per query for each search setting of a FAISS index (the
    ANN-recall-against-latency curve; the tuned setting serves, this only measures)."""
    import time

    from recsys.index.tuning import exact_labels, recall_at_k

    truth = exact_labels(reference, queries, k)
    out = []
    for params in _knob_grid(index.factory):
        index.raw_search(queries[:8], k, params=params)  # warm-up
        t0, reps = time.perf_counter(), 0
        while reps < 3 or (time.perf_counter() - t0 < 0.2 and reps < 50):
            _, labels = index.raw_search(queries, k, params=params)
            reps += 1
        ms = (time.perf_counter() - t0) * 1000 / (reps * len(queries))
        out.append({"params": params, "recall": recall_at_k(labels, truth), "ms_per_query_batch": ms})
    return out


def _ranker_object(cfg: RankerConfig, seed: int):
    from recsys.models.rankers.registry import build_ranker

    return build_ranker(cfg.kind, {"max_iter": cfg.max_iter, "epochs": cfg.epochs, "seed": seed,
                                   "check_leakage": cfg.check_leakage, "num_threads": cfg.num_threads}, cfg.options)


def train_ranker(cfg: TrainConfig, tables: Tables, split: Split, *, bins: int = 10, pipeline: Any = None
                 ) -> RankerResult:
    """Fit the ranker on training impressions; score test impressions with point-in-time features.

    With ``recommender.item_to_item`` set, the rows also carry the item-to-item channel's score, point in time
    (:mod:`recsys.feed.item_score`), from ``pipeline``'s histories (the retrieval stage's feature pipeline; fitted
    here when not given).

    Events without ``impression_id`` raise ``DataValidationError``; ``ranker.kind: none`` and too few clicked
    impressions (with a ``RankerSkippedWarning``) give a result with ``ranker=None`` and the reason in
    ``summary``, never a silent skip."""
    from recsys.evaluation import calibration, conversion_metrics
    from recsys.features.ranking_features import RankingFeatureBuilder, impression_labels
    from recsys.fit.components import ranker_labels

    rows_tr, record = ranker_labels(split.train, cfg.ranker.kind)
    if rows_tr is None:
        return RankerResult(ranker=None, builder=None, summary=record)
    rows_te = impression_labels(split.test)
    cols = ["user_id", "item_id", "timestamp"] + (["media_id"] if "media_id" in rows_tr.columns else [])
    builder = RankingFeatureBuilder(windows=list(cfg.ranker.windows), include_ids=cfg.ranker.kind != "gbdt")
    builder.fit(split.train, tables.items, tables.social, tables.benefits)
    train_rows, test_rows = rows_tr[cols], rows_te[cols]
    if cfg.recommender.item_to_item:
        from recsys.feed.item_score import FEATURE, point_in_time_scores

        pipeline = pipeline if pipeline is not None else fit_features(cfg, tables, split)
        train_rows = train_rows.assign(**{FEATURE: point_in_time_scores(pipeline, split.train, tables.items,
                                                                        train_rows)})
        if len(test_rows):
            events = pd.concat([split.train, split.test], ignore_index=True)  # test rows see train + earlier test
            test_rows = test_rows.assign(**{FEATURE: point_in_time_scores(pipeline, events, tables.items, test_rows)})
    ranker = _ranker_object(cfg.ranker, cfg.seed).fit(builder.transform(train_rows), rows_tr[["click", "purchase"]])
    metrics, cal = {}, None
    if len(rows_te) and rows_te["click"].nunique() == 2:
        scorer = copy.deepcopy(builder).update(split.test)
        pred = ranker.predict_proba(scorer.transform(test_rows))
        frame = pd.DataFrame({"click": rows_te["click"].to_numpy(), "purchase": rows_te["purchase"].to_numpy(),
                              "pctr": pred["pctr"].to_numpy(), "pcvr": pred["pcvr"].to_numpy(),
                              **{c: rows_te[c].to_numpy() for c in ("user_id", "media_id") if c in rows_te}})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics = conversion_metrics(frame)
        cal = calibration(frame["click"].to_numpy(), frame["pctr"].to_numpy(), n_bins=bins, strategy="quantile")
        metrics["ctr_pred_over_observed"] = float(frame["pctr"].mean() / max(frame["click"].mean(), 1e-12))
    return RankerResult(ranker=ranker, builder=builder, metrics=metrics, calibration=cal, summary=record)
