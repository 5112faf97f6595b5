"""The steps of one ``recsys train`` run, each logged to the console and the MLflow run: data, the two-tower,
the item index, the ranker, the composed Recommender and its bundle, the logged and registered model.

:mod:`recsys.pipeline.train` calls them in order; the training itself is :mod:`recsys.fit.stages`'.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import ArtifactError
from recsys.pipeline.run import EpochLog, Run
from recsys.storage.atomic import write_text_atomically

__all__ = ["load_data", "data", "retrieval", "load_retrieval", "index", "ranker", "example", "bundle", "log_outputs"]


def load_data(run: Run):
    """Tables, split and data hash, before the MLflow run starts: the hash picks the checkpoint to resume."""
    from recsys.fit.tables import data_digest, load_tables, split_tables

    cfg = run.cfg
    run.step(f"data: {cfg.data.source} (validate {cfg.data.validate})")
    tables = load_tables(cfg.data, seed=cfg.seed, progress=run.progress)
    split = split_tables(tables, cfg.split)
    if run.result.stage in ("all", "ranker"):  # a log the ranker cannot use fails now, not after the two-tower
        from recsys.fit.components import require_impression_ids

        require_impression_ids(split.train, cfg.ranker.kind)
    return tables, split, data_digest(tables)


def data(run: Run, tables, split, digest):
    cfg = run.cfg
    counts = tables.row_counts() | {"train_events": len(split.train), "test_events": len(split.test)}
    run.log("   " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + f"; split at {split.cut}")
    run.tracker.set_tags({"data.hash": digest, "data.source": tables.source, "split.cut": split.cut})
    run.metrics({f"rows.{k}": v for k, v in counts.items()}, "data.")
    if cfg.tracking.log_datasets:
        src = tables.location
        run.tracker.log_dataset(split.train, name=f"{cfg.name}-train-events", context="training", digest=digest,
                                source=src)
        run.tracker.log_dataset(split.test, name=f"{cfg.name}-test-events", context="evaluation", digest=digest,
                                source=src)
        run.tracker.log_dataset(tables.items, name=f"{cfg.name}-items", context="training", digest=digest, source=src)
    run.result.tables = tables


def retrieval(run: Run, tables, split, checkpoint_dir: Path | None = None, resume: bool = True):
    from recsys.fit.stages import (
        evaluate_retrieval,
        fit_features,
        retrieval_settings,
        test_matrix,
        train_retrieval,
    )
    from recsys.tracking.plots import loss_curve, recall_curve
    from recsys.tracking.tracker import TrackingCallback

    cfg = run.cfg
    run.step("features and two-tower training")
    if cfg.retrieval.bench_config:  # the settings that train come from the benchmark file: record them too
        from dataclasses import asdict

        run.tracker.log_params({f"retrieval.bench.{k}": v for k, v in asdict(retrieval_settings(cfg)).items()})
    pipeline = fit_features(cfg, tables, split)
    res = train_retrieval(cfg, pipeline, tables, split, callbacks=[TrackingCallback(run.tracker), EpochLog(run.log)],
                          progress=run.progress, checkpoint_dir=checkpoint_dir, resume=resume)
    if res.summary.get("resumed_from"):
        at = res.summary["resumed_from"]
        run.log(f"   resumed from the checkpoint in {checkpoint_dir} at epoch {at['epoch']}, step {at['step']}")
        run.tracker.set_tags({"recsys.resumed_from": f"epoch {at['epoch']} step {at['step']}"})
    if not run.main:  # another torchrun rank: it helped train; rank 0 evaluates, saves and tracks
        return pipeline, res
    hist = res.summary["history"]
    from recsys.fit.distributed import world_from_env

    run.result.evaluation["training"] = {k: res.summary.get(k) for k in ("best_epoch", "epochs_run", "train_seconds",
                                                                        "retrained_epochs", "history")} | {
        "processes": world_from_env().world_size}
    run.log(f"   {res.summary['epochs_run']} epochs, loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}, "
            f"{res.summary['train_seconds']:.0f} s")
    run.plot(loss_curve(hist, run.plots / "loss_curve.png"))
    test, info = test_matrix(pipeline, split, res.data.positives)
    run.metrics(info, "evaluation.")
    if test.nnz:
        run.step(f"full-ranking evaluation on {info['test_users']:,} test users")
        results = evaluate_retrieval(cfg, res, test)
        for name, values in results.items():
            run.metrics(values, "retrieval." if name == "two-tower" else f"baseline.{name}.")
        run.result.evaluation["retrieval"] = results
        run.plot(recall_curve(results, sorted(set(cfg.evaluation.ks)), run.plots / "recall_at_k.png"))
    out = run.out / "retrieval"
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save(out / "pipeline.json")
    res.model.save(out / "model")
    return pipeline, res


def load_retrieval(run: Run, tables, split):
    """The retrieval stage's saved output, for ``stage="index"``."""
    from recsys.features.pipeline import FeaturePipeline
    from recsys.fit.stages import RetrievalResult
    from recsys.models.encode import encode_all
    from recsys.models.two_tower import TwoTowerModel

    out = run.out / "retrieval"
    if not (out / "pipeline.json").is_file() or not (out / "model").is_dir():
        raise ArtifactError(f"no retrieval output in {out}: run `recsys train retrieval -c <config>` (same config) "
                            "first; the index stage indexes that model's item embeddings")
    pipeline = FeaturePipeline.load(out / "pipeline.json")
    model = TwoTowerModel.load(out / "model")
    data = pipeline.training_data(split.train, tables.items, tables.users)
    users, items = encode_all(model, data)
    return pipeline, RetrievalResult(model=model, data=data, summary={}, user_emb=users, item_emb=items)


def index(run: Run, tables, pipeline, res):
    from recsys.fit.stages import build_index
    from recsys.models.encode import embed_items
    from recsys.tracking.plots import ann_curve

    cfg = run.cfg
    run.step(f"item index: {cfg.index.kind}" + (f" {cfg.index.factory}" if cfg.index.kind == "faiss" else ""))
    emb = embed_items(res.model, pipeline, tables.items)
    queries = res.user_emb[np.unique(res.data.positives.tocoo().row)]
    index, record = build_index(cfg.index, emb, tables.items["item_id"].to_numpy(), queries, seed=cfg.seed)
    k = record.get("k", cfg.index.tune_k)
    run.log(f"   {record.get('factory', 'exact')}: recall_at_{k} vs exact {record['recall']:.3f} at "
            f"{record.get('params')} ({record.get('ms_per_query', float('nan')):.3f} ms/query)")
    run.metrics({f"recall@{k}": record["recall"], "ms_per_query": record.get("ms_per_query", float("nan"))}, "index.")
    run.result.evaluation["index"] = record
    if record.get("curve"):
        run.plot(ann_curve(record["curve"], run.plots / "ann_recall_latency.png", k=record["curve_k"],
                           factory=record["factory"], target=cfg.index.recall_target))
    return index, emb


def ranker(run: Run, tables, split, pipeline=None):
    from recsys.fit.stages import train_ranker
    from recsys.tracking.plots import calibration_curve

    cfg = run.cfg
    run.step(f"ranker: {cfg.ranker.kind}")
    res = train_ranker(cfg, tables, split, bins=cfg.evaluation.calibration_bins, pipeline=pipeline)
    if res.ranker is None:  # asked for (kind none), or too few clicks: said and recorded, not silent
        why = res.summary["reason"]
        run.log(f"   no ranker ({why}): rank by two-tower score")
        run.result.evaluation["ranker"] = {"trained": False, "reason": why}
        run.tracker.set_tags({"ranker.skipped": why[:4000]})
        return None
    m = res.metrics
    if m:
        run.log(f"   test impressions: CTR AUC {m['ctr_auc']:.4f}, CVR AUC {m.get('cvr_auc', float('nan')):.4f}, "
                f"CTCVR AUC {m.get('ctcvr_auc', float('nan')):.4f}, CTR ECE {m.get('ctr_ece', float('nan')):.5f}")
    run.metrics(m, "ranker.")
    run.result.evaluation["ranker"] = m
    if res.calibration is not None:
        run.plot(calibration_curve(res.calibration, run.plots / "calibration_ctr.png"))
    return res


def example(tables, split) -> pd.DataFrame:
    from recsys.tracking.feeds import input_example

    users = pd.unique(split.train["user_id"])[:3].tolist()
    known = tables.media if tables.media is not None else tables.media_pools  # partners: None may be refused
    media = pd.unique(known["media_id"].astype(str)).tolist()[:2] if known is not None and len(known) else [None]
    return input_example(users, [media[n % len(media)] for n in range(len(users))], k=10)


def bundle(run: Run, tables, split, digest, pipeline, res, index, emb, ranker):
    from recsys.recommender import Recommender

    cfg = run.cfg
    run.step("compose the Recommender and save the bundle")
    r = cfg.recommender
    rec = Recommender.from_components(
        pipeline=pipeline, model=res.model, items=tables.items, events=split.train, index=index,
        ranker=ranker.ranker if ranker else None, feature_builder=ranker.builder if ranker else None,
        users=tables.users, social=tables.social, media=tables.media, media_pools=tables.media_pools,
        benefits=tables.benefits, item_embeddings=emb, training_data_hash=digest, n_candidates=r.n_candidates,
        max_per_category=r.max_per_category, default_objective=r.default_objective, cold_start=r.cold_start,
        require_in_stock=r.require_in_stock, no_partner=r.no_partner,
        item_to_item=r.item_to_item, friends=r.friends)
    path = rec.save(run.out / "bundle", overwrite=cfg.output.overwrite)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    run.log(f"   {path} ({size / 2**20:.1f} MiB)")
    run.metrics({"bundle_mib": size / 2**20})
    run.result.bundle_dir, run.result.recommender = path, rec
    return rec, path


def log_outputs(run: Run, rec, path, example, promote: bool = False) -> None:
    cfg, tracker = run.cfg, run.tracker
    run.out.mkdir(parents=True, exist_ok=True)  # a ranker stage that trained no ranker has written nothing yet
    write_text_atomically(run.out / "evaluation.json", json.dumps(run.result.evaluation, indent=1, default=str))
    tracker.log_artifact(run.out / "evaluation.json")
    if rec is None or not tracker.enabled:
        return
    if cfg.tracking.log_bundle:
        tracker.log_artifacts(path, "bundle")
    t = cfg.tracking
    champion = (f"@{t.alias} too (--promote)" if promote
                else f"@{t.alias} if it beats @{t.alias} on {t.champion_metric}")
    run.step("log the pyfunc model" + (f" and register it as {t.model_name}@candidate, {champion}" if t.register
                                       else ""))
    run.result.model = tracker.log_recommender(path, example, cfg.tracking, recommender=rec, promote=promote)
    if run.result.model and run.result.model.get("decision"):
        run.log(f"   {run.result.model['decision']}")
    run.log(f"   {run.result.model}")
