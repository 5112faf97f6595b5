"""The state one ``recsys train`` run carries through its steps: config, tracker, console log, timings, figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.fit.settings import TrainConfig

__all__ = ["TrainResult", "Run", "EpochLog"]


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


class Run:
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


class EpochLog:
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
