"""Two-tower retrieval benchmark on any LightGCN-format directory (train.txt, test.txt).

``recsys benchmark retrieval --data-dir DIR [--config FILE] --json PATH``: carves a validation split
out of the *training* data (a share of each user's items), trains the two-tower model and picks
the epoch on validation, optionally retrains on the whole training set for that many epochs,
then reports full-ranking Recall@20 / NDCG@20 on test (training items masked, the user's
history = all training items), training time and peak memory, beside implicit-ALS fitted in
the same process. The runner knows no dataset names: everything tunable is in
:class:`~recsys.fit.settings.TwoTowerSettings` (YAML keys of ``--config``; unknown keys are errors), the
one settings type that ``recsys train`` and ``Recommender.fit`` train with too.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from recsys.bench.retrieval_output import _write_json
from recsys.channels.two_tower_fit import train_on_ids as _train
from recsys.fit.baselines import add_als_row
from recsys.fit.two_tower_settings import TwoTowerSettings, load_two_tower_settings
from recsys.fit.validation import apply_chosen_prior, carve_validation

__all__ = ["run_retrieval_benchmark", "retrieval_command"]


def _log(msg: str) -> None:
    print(msg, flush=True)


def run_retrieval_benchmark(data_dir: str | Path, config_path: str | Path | None = None,
                            json_path: str | Path | None = None) -> dict[str, Any]:
    """Train, select on validation, evaluate on test; returns (and optionally writes) the figures.

    A config whose top level is ``pipeline:`` runs the channels and the fused pipeline instead
    (:mod:`recsys.bench.retrieval_pipeline`)."""
    from recsys.bench.pipeline_settings import is_pipeline_config
    from recsys.datasets.lightgcn import load_lightgcn

    if is_pipeline_config(config_path):
        from recsys.bench.retrieval_pipeline import run_pipeline_benchmark

        return run_pipeline_benchmark(data_dir, config_path, json_path)

    cfg = load_two_tower_settings(config_path)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    ds = load_lightgcn(data_dir)
    train, test = ds.train_matrix(), ds.test_matrix()
    _log(f"{data_dir}: {ds.n_users:,} users x {ds.n_items:,} items, {train.nnz:,} train / {test.nnz:,} test")
    model, summary, prior, cost = _select_and_fit(cfg, train)
    metrics = _evaluate(model, train, test)
    _log(f"two-tower: recall@20 {metrics['recall@20']:.4f}  ndcg@20 {metrics['ndcg@20']:.4f}  "
         f"train {cost['train_seconds']:.0f} s (cpu {cost['train_cpu_seconds']:.0f} s)  "
         f"peak {cost['peak_memory_mb']:.0f} MB")
    result = _result(cfg, ds, data_dir, config_path, metrics, summary, prior, cost)
    if cfg.baselines:
        add_als_row(result, train, test)
    if json_path is not None:
        _write_json(result, json_path)
    return result


def _select_and_fit(cfg: TwoTowerSettings, train: sp.csr_matrix) -> tuple[Any, dict, Any, dict[str, float]]:
    """The selection run on a validation split carved from ``train`` (and, with ``retrain_full``, a retrain on
    all of it for the chosen epochs), the chosen popularity prior applied; with its time and peak memory."""
    fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    _log(f"selection run: train on {fit.nnz:,}, validate on {valid.nnz:,} held out of the training data")
    model, summary = _train(cfg, fit, cfg.epochs, valid, _log)
    if cfg.retrain_full:
        _log(f"retrain on all training data for the chosen {summary['best_epoch']} epochs")
        model, _ = _train(cfg, train, summary["best_epoch"], None, _log)
    model.set_item_audience(train)  # item_audience: test is scored with every training interaction
    model, prior = apply_chosen_prior(model, summary, train, _log)
    train_seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return model, summary, prior, {"train_seconds": train_seconds, "train_cpu_seconds": cpu_seconds,
                                   "peak_memory_mb": peak_mb}


def _evaluate(model: Any, train: sp.csr_matrix, test: sp.csr_matrix) -> dict[str, float]:
    """Full-ranking Recall@20 / NDCG@20 on test, training items masked."""
    from recsys.evaluation import EmbeddingScorer, evaluate_topk
    from recsys.features.retrieval_data import RetrievalData
    from recsys.models.encode import encode_all

    users, items = encode_all(model, RetrievalData(train))
    return evaluate_topk(EmbeddingScorer(users, items), train, test, (20,), metrics=("recall", "ndcg"))


def _result(cfg: TwoTowerSettings, ds: Any, data_dir: str | Path, config_path: str | Path | None,
            metrics: dict[str, float], summary: dict, prior: Any, cost: dict[str, float]) -> dict[str, Any]:
    """The figures of the run, its settings and the machine it ran on."""
    import torch

    return {
        "data_dir": str(data_dir), "n_users": ds.n_users, "n_items": ds.n_items,
        "recall@20": round(metrics["recall@20"], 6), "ndcg@20": round(metrics["ndcg@20"], 6),
        "train_seconds": round(cost["train_seconds"], 1), "train_cpu_seconds": round(cost["train_cpu_seconds"], 1),
        "peak_memory_mb": round(cost["peak_memory_mb"], 1), "best_epoch": summary["best_epoch"],
        "epochs_run": summary["epochs_run"],
        "popularity_prior": prior,
        "validation": summary["best_metrics"], "validation_history": summary["history"],
        "config": asdict(cfg), "config_file": str(config_path) if config_path else None,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
    }


def retrieval_command(data_dir: Path, config: Path | None = None, json: Path | None = None) -> None:
    """Typer body for ``recsys benchmark retrieval --data-dir DIR [--config FILE] --json PATH``."""
    from recsys.errors import RecsysError

    try:
        run_retrieval_benchmark(data_dir, config, json)
    except RecsysError as e:
        import typer

        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
