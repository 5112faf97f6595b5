"""``recsys train``: one command from raw events to a registered model, every run tracked in MLflow.

    load and validate data -> split -> features -> two-tower -> index -> ranker -> evaluate
    -> save the bundle -> log (params, metrics, plots, datasets, bundle, code version) -> register

>>> from recsys.fit.settings import load_config
>>> result = run_training(load_config("experiments/synthetic-demo.yaml"))      # doctest: +SKIP
>>> result.model["alias_uri"]                                                   # doctest: +SKIP
'models:/guess-you-like@champion'

``stage`` runs one part alone, each as its own tracked run: ``retrieval`` (features + two-tower,
saved under ``<output.dir>/<name>/retrieval``), ``index`` (needs that retrieval output) and
``ranker``. The stages themselves live in :mod:`recsys.fit.stages`.

Under ``torchrun --nproc_per_node=N`` (see :mod:`recsys.fit.distributed`) every process loads the
same data and trains the two-tower model data-parallel; rank 0 alone logs, evaluates, builds the
index and the ranker, saves and tracks. The other ranks print nothing and write nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ArtifactError, ConfigError
from recsys.fit.settings import STAGES, TrainConfig, config_to_dict, flat_params
from recsys.progress import show_progress

__all__ = ["TrainResult", "run_training"]


@dataclass
class TrainResult:
    """What a run produced: metrics, evaluation tables, where the outputs are and how to reach the run."""

    config: TrainConfig
    stage: str
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None
    bundle_dir: Path | None = None
    recommender: Any = None
    tables: Any = None
    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    run_link: str | None = None
    model: dict | None = None
    seconds: float = 0.0


class _Run:
    """Shared state of one run: config, tracker, logging, timings, figures."""

    def __init__(self, cfg: TrainConfig, tracker: Any, log: Callable[[str], None], progress: bool) -> None:
        from recsys.fit.distributed import is_main_process

        self.cfg, self.tracker, self.log, self.progress = cfg, tracker, log, progress
        self.main = is_main_process()  # rank 0 under torchrun, always true in one process
        self.out = cfg.output_dir
        self.plots = self.out / "plots"
        self.result = TrainResult(config=cfg, stage="", output_dir=self.out)
        self._t = time.perf_counter()

    def step(self, title: str) -> None:
        self.log(f"== {title}  [{time.perf_counter() - self._t:.0f} s]")

    def metrics(self, values: dict, prefix: str = "") -> None:
        """Record metrics under the MLflow-safe names (``recall@20`` -> ``recall_at_20``) the run logs them by,
        so ``result.metrics``, the console summary and the MLflow run share one set of keys."""
        from recsys.evaluation.names import metric_name

        clean = {metric_name(prefix + k): v for k, v in values.items()
                 if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}
        self.result.metrics.update({k: float(v) for k, v in clean.items()})
        self.tracker.log_metrics(clean)

    def plot(self, path: Path) -> None:
        self.tracker.log_artifact(path, "plots")


def _load_data(run: _Run):
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


def _data(run: _Run, tables, split, digest):
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


def _retrieval(run: _Run, tables, split, checkpoint_dir: Path | None = None, resume: bool = True):
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
    res = train_retrieval(cfg, pipeline, tables, split, callbacks=[TrackingCallback(run.tracker), _EpochLog(run.log)],
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


class _EpochLog:
    """Trainer hook: one console line per epoch (loss, validation metrics, elapsed seconds)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        from recsys.evaluation.names import metric_name  # the names MLflow shows: recall_at_20, not recall@20

        shown = (f"{metric_name(k)} {v:.4f}" if isinstance(v, float) else f"{metric_name(k)} {v}"
                 for k, v in metrics.items() if k != "epoch")
        self.log("   epoch " + "  ".join(shown) + f"  (epoch {epoch})")

    def on_train_end(self, summary: dict) -> None:
        pass


def _load_retrieval(run: _Run, tables, split):
    """The retrieval stage's saved output, for ``stage="index"``."""
    from recsys.features.pipeline import FeaturePipeline
    from recsys.fit.stages import RetrievalResult
    from recsys.fit.trainer import encode_all
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


def _index(run: _Run, tables, pipeline, res):
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


def _ranker(run: _Run, tables, split):
    from recsys.fit.stages import train_ranker
    from recsys.tracking.plots import calibration_curve

    cfg = run.cfg
    run.step(f"ranker: {cfg.ranker.kind}")
    res = train_ranker(cfg, tables, split, bins=cfg.evaluation.calibration_bins)
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


def _example(tables, split) -> pd.DataFrame:
    from recsys.tracking.feeds import input_example

    users = pd.unique(split.train["user_id"])[:3].tolist()
    known = tables.media if tables.media is not None else tables.media_pools  # partners: None may be refused
    media = pd.unique(known["media_id"].astype(str)).tolist()[:2] if known is not None and len(known) else [None]
    return input_example(users, [media[n % len(media)] for n in range(len(users))], k=10)


def _bundle(run: _Run, tables, split, digest, pipeline, res, index, emb, ranker):
    from recsys.recommender import Recommender

    cfg = run.cfg
    run.step("compose the Recommender and save the bundle")
    r = cfg.recommender
    rec = Recommender.from_components(
        pipeline=pipeline, model=res.model, items=tables.items, events=split.train, index=index,
        ranker=ranker.ranker if ranker else None, feature_builder=ranker.builder if ranker else None,
        users=tables.users, social=tables.social, media=tables.media, media_pools=tables.media_pools,
        item_embeddings=emb, training_data_hash=digest, n_candidates=r.n_candidates,
        max_per_category=r.max_per_category, default_objective=r.default_objective, cold_start=r.cold_start,
        require_in_stock=r.require_in_stock, no_partner=r.no_partner)
    path = rec.save(run.out / "bundle", overwrite=cfg.output.overwrite)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    run.log(f"   {path} ({size / 2**20:.1f} MiB)")
    run.metrics({"bundle_mib": size / 2**20})
    run.result.bundle_dir, run.result.recommender = path, rec
    return rec, path


def _log_outputs(run: _Run, rec, path, example, promote: bool = False) -> None:
    cfg, tracker = run.cfg, run.tracker
    run.out.mkdir(parents=True, exist_ok=True)  # a ranker stage that trained no ranker has written nothing yet
    (run.out / "evaluation.json").write_text(json.dumps(run.result.evaluation, indent=1, default=str))
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


def run_training(cfg: TrainConfig, *, stage: str = "all", tracking: bool | None = None,
                 progress: bool | None = None, log: Callable[[str], None] | None = print,
                 promote: bool = False, resume: bool | None = None) -> TrainResult:
    """Run ``stage`` ("all", "retrieval", "index" or "ranker") of ``cfg``; ``tracking`` overrides the config.

    The registered model becomes champion only if it beats the current one on ``tracking.champion_metric``
    (or is the first version); ``promote`` (``recsys train --promote``) makes it champion regardless.
    Stages "all" and "retrieval" checkpoint the two-tower and resume a killed run of the same config on the
    same data (continuing its MLflow run); ``resume`` True requires a checkpoint (``--resume``), False starts
    over (``--no-resume``). Runs of this config left RUNNING by a dead process are marked FAILED
    (:mod:`recsys.pipeline.resume`).
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {list(STAGES)}")
    if resume is not None and stage not in ("all", "retrieval"):
        raise ConfigError(f"--resume/--no-resume apply to the stages that train the two-tower (all, retrieval), "
                          f"not to {stage!r}: that stage keeps no checkpoint")
    from recsys.fit.distributed import is_main_process
    from recsys.tracking.tracker import make_tracker

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    if not is_main_process():  # a torchrun rank other than 0: it only helps train the two-tower model
        if stage not in ("all", "retrieval"):
            return TrainResult(config=cfg, stage=stage)
        tracking, log, progress = False, None, False
    tracker = make_tracker(cfg.tracking, enabled=tracking)
    run = _Run(cfg, tracker, log or (lambda _msg: None), show_progress(progress))
    run.result.stage = stage
    tables, split, digest = _load_data(run)
    from recsys.pipeline.resume import ResumePoint, settle_stale_runs

    point = ResumePoint(cfg, stage, digest, mode=resume, main=run.main) if stage in ("all", "retrieval") else None
    with point or contextlib.nullcontext():
        params = flat_params(cfg) | {"stage": stage}
        run_id = point.run_to_continue(cfg.tracking, params) if point is not None and tracker.enabled else None
        if run.main and tracker.enabled:
            settle_stale_runs(cfg.tracking, cfg.name, keep=run_id)
        _tracked(run, stage, tables, split, digest, point, run_id, promote, params)
        if point is not None:
            point.finish()
    run.step(f"done ({stage})")
    return run.result


def _tracked(run: _Run, stage: str, tables, split, digest, point, run_id: str | None, promote: bool,
             params: dict[str, str]) -> None:
    """The MLflow run of ``stage``: a new one, or ``run_id`` continued (resuming its checkpoint)."""
    from recsys.pipeline.resume import process_tag

    cfg, tracker = run.cfg, run.tracker
    run_name = cfg.tracking.run_name or (cfg.name if stage == "all" else f"{cfg.name}-{stage}")
    tags = {"recsys.stage": stage, "recsys.config": cfg.name, "recsys.process": process_tag()}
    if point is not None:
        tags["recsys.checkpoint_dir"] = str(point.dir)
    with tracker.start_run(run_name, tags=tags, run_id=run_id):
        if run_id:
            run.log(f"   continuing MLflow run {run_id} (it wrote the checkpoint being resumed)")
        if point is not None:
            point.record_run(tracker.run_id)
        tracker.log_params(params)
        tracker.log_dict(config_to_dict(cfg), "config.yaml")
        _data(run, tables, split, digest)
        rec = path = None
        if stage == "ranker":
            res = _ranker(run, tables, split)
            if res is not None:
                res.ranker.save(run.out / "ranker" / "ranker")
        elif stage == "index":
            pipeline, retr = _load_retrieval(run, tables, split)
            index, _ = _index(run, tables, pipeline, retr)
            index.save(run.out / "index")
        else:
            pipeline, retr = _retrieval(run, tables, split, point.dir, point.mode is not False)
            if stage == "all" and run.main:
                index, emb = _index(run, tables, pipeline, retr)
                ranker = _ranker(run, tables, split)
                rec, path = _bundle(run, tables, split, digest, pipeline, retr, index, emb, ranker)
        if run.main:
            _log_outputs(run, rec, path, _example(tables, split) if rec is not None else None, promote)
        run.result.seconds = time.perf_counter() - run._t
        tracker.log_metrics({"seconds_total": run.result.seconds})
        run.result.run_id, run.result.experiment_id = tracker.run_id, tracker.experiment_id
        run.result.tracking_uri, run.result.run_link = tracker.tracking_uri, tracker.run_link()
