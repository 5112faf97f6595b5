"""``recsys train``: one command from raw events to a registered model, every run tracked in MLflow.

    load and validate data -> split -> features -> two-tower -> index -> ranker -> evaluate
    -> save the bundle -> log (params, metrics, plots, datasets, bundle, code version) -> register

>>> from recsys.fit.settings import load_config
>>> result = run_training(load_config("experiments/synthetic-demo.yaml"))      # doctest: +SKIP
>>> result.model["alias_uri"]                                                   # doctest: +SKIP
'models:/guess-you-like@champion'

``stage`` runs one part alone, each as its own tracked run: ``retrieval`` (features + two-tower,
saved under ``<output.dir>/<name>/retrieval``), ``index`` (needs that retrieval output) and
``ranker``. The stages themselves live in :mod:`recsys.fit.stages`; the run's steps (each logged to the console
and MLflow) in :mod:`recsys.pipeline.steps`.

Under ``torchrun --nproc_per_node=N`` (see :mod:`recsys.fit.distributed`) every process loads the
same data and trains the two-tower model data-parallel; rank 0 alone logs, evaluates, builds the
index and the ranker, saves and tracks. The other ranks print nothing and write nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from recsys.errors import ConfigError
from recsys.fit.settings import STAGES, TrainConfig, config_to_dict, flat_params
from recsys.pipeline import steps
from recsys.pipeline.run import Run, TrainResult
from recsys.progress import show_progress

__all__ = ["TrainResult", "run_training"]


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
    run = Run(cfg, tracker, log or (lambda _msg: None), show_progress(progress))
    run.result.stage = stage
    tables, split, digest = steps.load_data(run)
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


def _tracked(run: Run, stage: str, tables, split, digest, point, run_id: str | None, promote: bool,
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
        steps.data(run, tables, split, digest)
        rec = path = None
        if stage == "ranker":
            res = steps.ranker(run, tables, split)
            if res is not None:
                res.ranker.save(run.out / "ranker" / "ranker")
        elif stage == "index":
            pipeline, retr = steps.load_retrieval(run, tables, split)
            index, _ = steps.index(run, tables, pipeline, retr)
            index.save(run.out / "index")
        else:
            pipeline, retr = steps.retrieval(run, tables, split, point.dir, point.mode is not False)
            if stage == "all" and run.main:
                index, emb = steps.index(run, tables, pipeline, retr)
                ranker = steps.ranker(run, tables, split, pipeline)
                rec, path = steps.bundle(run, tables, split, digest, pipeline, retr, index, emb, ranker)
        if run.main:
            steps.log_outputs(run, rec, path, steps.example(tables, split) if rec is not None else None, promote)
        run.result.seconds = time.perf_counter() - run._t
        tracker.log_metrics({"seconds_total": run.result.seconds})
        run.result.run_id, run.result.experiment_id = tracker.run_id, tracker.experiment_id
        run.result.tracking_uri, run.result.run_link = tracker.tracking_uri, tracker.run_link()
