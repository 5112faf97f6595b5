"""Trackers: :class:`Tracker` does nothing (tracking off); :class:`MlflowTracker` records to MLflow.

Both have the same methods, so the training pipeline calls them unconditionally. Metric names keep
their meaning but follow MLflow's alphabet (``recall@20`` is logged as ``recall_at_20``).
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from recsys.evaluation.names import metric_name
from recsys.fit.callbacks import Callback
from recsys.fit.settings import TrackingConfig

__all__ = ["Tracker", "MlflowTracker", "TrackingCallback", "make_tracker", "resolve_tracking_uri", "metric_name",
           "code_version", "DEFAULT_TRACKING_URI"]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SCHEMA_SAMPLE_ROWS = 5_000


def resolve_tracking_uri(cfg: TrackingConfig) -> str:
    """``cfg.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded ``sqlite:///mlflow.db`` of the
    working directory, as an absolute path: MLflow keeps one database engine per URI for the process, so a
    relative URI would keep writing to the first directory's file after the process changes directory."""
    given = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if given:
        return given
    return f"sqlite:///{(Path.cwd() / DEFAULT_TRACKING_URI.removeprefix('sqlite:///')).as_posix()}"


def code_version() -> dict[str, str]:
    """The library version and, inside a git checkout, the commit and whether the tree has local changes."""
    from recsys.version import __version__

    out = {"recsys.version": __version__}
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            out["mlflow.source.git.commit"] = sha.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10)
            out["git.dirty"] = str(bool(dirty.stdout.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


class Tracker:
    """Tracking switched off: every method accepts its arguments and records nothing."""

    enabled = False
    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, str] | None = None,
                  run_id: str | None = None) -> Iterator[Tracker]:
        """A run named ``run_name`` with ``tags``; ``run_id`` continues that run (a resumed training) instead."""
        yield self

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Run parameters (the flattened config)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, prefix: str = "") -> None:
        """Numeric metrics (non-numbers are skipped), optionally at a step (the epoch)."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Run tags (code version, data hash, stage)."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """One file."""

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A directory's files."""

    def log_dict(self, data: dict, name: str) -> None:
        """A JSON/YAML document (``name`` ends in .json or .yaml)."""

    def log_dataset(self, df: Any, *, name: str, context: str, digest: str, source: str) -> None:
        """A dataset input: its name, schema, row count, its own digest, and the hash of all the run's tables
        (``digest``) as a tag."""

    def log_recommender(self, bundle_dir: Path, input_example: Any, cfg: TrackingConfig,
                        recommender: Any = None, promote: bool = False) -> dict | None:
        """The pyfunc model and its registration as a candidate (champion if it wins, or ``promote``);
        returns its URIs, version and the promotion decision."""
        return None

    def run_link(self) -> str | None:
        """The UI path of the run (``#/experiments/<id>/runs/<run id>``)."""
        return None


class MlflowTracker(Tracker):
    """Records to the MLflow store of :func:`resolve_tracking_uri` (mlflow imported on :meth:`start_run`)."""

    enabled = True

    def __init__(self, cfg: TrackingConfig) -> None:
        self.cfg = cfg

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, str] | None = None,
                  run_id: str | None = None) -> Iterator[MlflowTracker]:
        import mlflow

        self.tracking_uri = resolve_tracking_uri(self.cfg)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(self.cfg.experiment)
        self.experiment_id = exp.experiment_id if exp is not None else client.create_experiment(
            self.cfg.experiment, artifact_location=self.cfg.artifact_location)
        with mlflow.start_run(run_id=run_id, run_name=run_name, experiment_id=self.experiment_id,
                              tags=dict(tags or {})) as run:
            self.run_id = run.info.run_id
            self.set_tags(code_version())
            yield self

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        items = {k: str(v)[:6000] for k, v in params.items()}
        mlflow.log_params(items)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, prefix: str = "") -> None:
        import mlflow

        clean = {}
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                continue
            clean[metric_name(prefix + k)] = float(v)
        if clean:
            mlflow.log_metrics(clean, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifacts(str(path), artifact_path=artifact_path)

    def log_dict(self, data: dict, name: str) -> None:
        import mlflow

        mlflow.log_dict(data, name)

    def log_dataset(self, df: Any, *, name: str, context: str, digest: str, source: str) -> None:
        import mlflow
        from mlflow.data.code_dataset_source import CodeDatasetSource

        from recsys.storage.bundle import data_hash

        # the dataset's own digest (MLflow's dataset view tells tables apart by it); ``digest``, the hash of all
        # the run's tables, goes in its tags
        short = data_hash({name: df}).split(":", 1)[-1][:32]
        with warnings.catch_warnings():  # MLflow's hint about integer columns and missing values
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_pandas(df, source=CodeDatasetSource({"source": source}), name=name, digest=short)
            # MLflow infers the schema value by value (seconds per 100k rows of strings): infer it on a sample
            # and hand it to the dataset's cached property; the row count in its profile stays the full one.
            ds.__dict__["schema"] = mlflow.models.infer_signature(df.head(SCHEMA_SAMPLE_ROWS)).inputs
            mlflow.log_input(ds, context=context, tags={"data_hash": digest, "rows": str(len(df))})

    def log_recommender(self, bundle_dir: Path, input_example: Any, cfg: TrackingConfig,
                        recommender: Any = None, promote: bool = False) -> dict | None:
        from recsys.tracking.mlflow_model import log_recommender

        return log_recommender(bundle_dir, input_example, name=cfg.model_name if cfg.register else None,
                               alias=cfg.alias, recommender=recommender, champion_metric=cfg.champion_metric,
                               promote=promote)

    def run_link(self) -> str | None:
        if self.run_id is None:
            return None
        return f"#/experiments/{self.experiment_id}/runs/{self.run_id}"


class TrackingCallback(Callback):
    """Trainer hook: per epoch (step = epoch) ``<prefix>train_loss``, ``<prefix>elapsed_seconds`` and the
    validation metrics as ``<prefix>validation.<name>`` (kept apart from the final test metrics); the best
    epoch and its validation metrics at the end."""

    NAMES = {"loss": "train_loss", "seconds": "elapsed_seconds"}

    def __init__(self, tracker: Tracker, prefix: str = "retrieval.") -> None:
        self.tracker = tracker
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return self.NAMES.get(key, f"validation.{key}")

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics({self._name(k): v for k, v in metrics.items() if k != "epoch"}, step=epoch,
                                 prefix=self.prefix)

    def on_train_end(self, summary: dict[str, Any]) -> None:
        best = {f"best_{self._name(k)}": v for k, v in (summary.get("best_metrics") or {}).items()
                if k not in ("epoch", "seconds", "loss")}
        self.tracker.log_metrics({"best_epoch": summary.get("best_epoch", 0), "epochs_run": summary.get("epochs_run", 0),
                                  "train_seconds": summary.get("train_seconds", 0.0), **best}, prefix=self.prefix)


def make_tracker(cfg: TrackingConfig, *, enabled: bool | None = None) -> Tracker:
    """An :class:`MlflowTracker` when tracking is on (``enabled`` overrides ``cfg.enabled``), else a no-op."""
    on = cfg.enabled if enabled is None else enabled
    return MlflowTracker(cfg) if on else Tracker()
