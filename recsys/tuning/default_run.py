"""``recsys tune --data-dir DIR`` (no tune file): the travelling default on a LightGCN-format directory, beside
implicit-ALS, test read once; what it chose is printed and logged to MLflow (experiment ``recsys-default``).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsys.storage.atomic import write_text_atomically

__all__ = ["run_default"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_default(data_dir: str | Path, *, budget_s: float | None = None, json_path: str | Path | None = None,
                tracking: bool = True, baseline: bool = True, seed: int = 0,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit :func:`recsys.tuning.defaults.fit_default` on ``data_dir``'s train.txt, evaluate Recall@20 / NDCG@20
    on its test.txt (full ranking, training items masked) beside implicit-ALS; returns the figures."""
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.evaluation import evaluate_topk
    from recsys.tuning.defaults import fit_default

    ds = load_lightgcn(data_dir)
    train, test = ds.train_matrix(), ds.test_matrix()
    log(f"{data_dir}: {ds.n_users:,} users x {ds.n_items:,} items, {train.nnz:,} train / {test.nnz:,} test")
    t0, c0 = time.perf_counter(), time.process_time()
    fitted = fit_default(train, budget_s=budget_s, seed=seed, log=log)
    fit_seconds, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    metrics = evaluate_topk(fitted.scorer, train, test, (20,), metrics=("recall", "ndcg"))
    c = fitted.chosen
    log(f"chosen on validation: graph filter ideal weight {c['ideal_weight']} (rank {c['ideal_rank']}); implicit-ALS "
        f"{c['als'] or 'not used'} at blend weight {c['als_weight']}; two-tower {c['two_tower'] or 'not used'} at "
        f"blend weight {c['tower_weight']}; validation recall@20 "
        f"{c['validation_recall@20']:.4f} (graph filter alone {c['graph_alone_validation_recall@20']:.4f})")
    log(f"default: test recall@20 {metrics['recall@20']:.4f}  ndcg@20 {metrics['ndcg@20']:.4f}  fit {fit_seconds:.0f} s "
        f"(cpu {fit_cpu:.0f} s), peak {_peak_mb():.0f} MB")
    result: dict[str, Any] = {
        "data_dir": str(data_dir), "n_users": ds.n_users, "n_items": ds.n_items, "train_pairs": int(train.nnz),
        "recall@20": round(metrics["recall@20"], 6), "ndcg@20": round(metrics["ndcg@20"], 6),
        "train_seconds": round(fit_seconds, 1), "train_cpu_seconds": round(fit_cpu, 1),
        "peak_memory_mb": round(_peak_mb(), 1), "chosen": c, "step_seconds": fitted.seconds,
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)}}
    if baseline:
        from recsys.fit.baselines import add_als_row

        if "ratio_vs_als" in add_als_row(result, train, test):
            log(f"ratio to implicit-ALS: recall@20 {result['ratio_vs_als']['recall@20']:.3f}x, "
                f"ndcg@20 {result['ratio_vs_als']['ndcg@20']:.3f}x")
    if json_path is not None:
        path = write_text_atomically(json_path, json.dumps(result, indent=2, default=float) + "\n")
        log(f"wrote {path}")
    if tracking:
        _track(result, Path(data_dir).name)
    return result


def _track(result: dict, name: str) -> None:
    """One MLflow run (experiment ``recsys-default``): the choices as parameters, the figures as metrics."""
    from recsys.fit.settings import TrackingConfig
    from recsys.tracking.tracker import make_tracker

    tracker = make_tracker(TrackingConfig(experiment="recsys-default"), enabled=True)
    c = result["chosen"]
    with tracker.start_run(f"default-{name}", tags={"recsys.stage": "default", "data.dir": result["data_dir"]}):
        tracker.log_params({"chosen.ideal_weight": c["ideal_weight"], "chosen.ideal_rank": c["ideal_rank"],
                            "chosen.tower_weight": c["tower_weight"], "chosen.two_tower": c["two_tower"],
                            "chosen.als_weight": c["als_weight"], "chosen.als": c["als"],
                            "budget_s": c["budget_s"]})
        tracker.log_metrics({"test.recall@20": result["recall@20"], "test.ndcg@20": result["ndcg@20"],
                             "validation.recall@20": c["validation_recall@20"], "train_seconds": result["train_seconds"],
                             **{f"seconds.{k}": v for k, v in result["step_seconds"].items()},
                             **{f"ratio_vs_als.{k}": v for k, v in result.get("ratio_vs_als", {}).items()}})
        tracker.log_dict(result, "default.json")
