"""Resuming ``recsys train``: where a run's checkpoints live, which MLflow run it continues, and runs left
RUNNING by a process that died.

Checkpoints go to ``<output.dir>/<name>/checkpoints/<key>/``; ``key`` hashes everything that decides the
two-tower's weights (data, split, features, retrieval settings, seed) with the data hash, so a run resumes
only into a checkpoint of the same config on the same data. ``run.json`` there names the MLflow run that
wrote it; a resumed run continues that run id. Each tracked run carries a ``recsys.process`` tag
(host, pid, process start time); a later ``recsys train`` of the same config marks runs whose process is
gone FAILED, so a SIGKILL never leaves a run RUNNING for good. A lock file keeps two processes from
training into one checkpoint directory at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError, ConfigError
from recsys.fit.settings import TrackingConfig, TrainConfig

__all__ = ["ResumePoint", "checkpoint_key", "process_tag", "process_alive", "settle_stale_runs"]


def checkpoint_key(cfg: TrainConfig, data_hash: str) -> str:
    """16 hex digits of sha256 over the settings that decide the two-tower's weights and the data hash."""
    from recsys.fit.stages import retrieval_settings

    parts = {"seed": cfg.seed, "data": asdict(cfg.data), "split": asdict(cfg.split), "features": asdict(cfg.features),
             "retrieval": asdict(cfg.retrieval), "resolved": asdict(retrieval_settings(cfg)), "data_hash": data_hash}
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_tag() -> str:
    """``host:pid:start`` of this process (the ``recsys.process`` tag of its MLflow run)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def process_alive(tag: str) -> bool:
    """Whether the process a ``recsys.process`` tag names still runs (a process on another host counts as alive:
    it cannot be checked from here)."""
    try:
        host, pid_text, start = tag.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return True
    if host != socket.gethostname():
        return True
    if Path("/proc").is_dir():
        return Path(f"/proc/{pid}").exists() and (not start or _start_ticks(pid) == start)
    from recsys.storage.atomic import pid_alive

    return pid_alive(pid)


def settle_stale_runs(cfg: TrackingConfig, config_name: str, keep: str | None = None) -> list[str]:
    """Mark FAILED the runs of ``config_name`` left RUNNING by a process that is gone (all but ``keep``, the
    run being resumed); returns their ids."""
    import mlflow

    from recsys.tracking.tracker import resolve_tracking_uri

    client = mlflow.MlflowClient(tracking_uri=resolve_tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return []
    name = config_name.replace("'", "\\'")
    runs = client.search_runs([exp.experiment_id], max_results=1000,
                              filter_string=f"attributes.status = 'RUNNING' and tags.`recsys.config` = '{name}'")
    stale = [r for r in runs if r.info.run_id != keep and "recsys.process" in r.data.tags
             and not process_alive(r.data.tags["recsys.process"])]
    for r in stale:
        client.set_tag(r.info.run_id, "recsys.failure", f"process {r.data.tags['recsys.process']} died without "
                       "ending the run (found by a later recsys train of the same config)")
        client.set_terminated(r.info.run_id, "FAILED")
    return [r.info.run_id for r in stale]


class ResumePoint:
    """The checkpoint directory of one (config, data) pair, held under a lock while a run trains into it.

    ``mode``: None resumes when a complete checkpoint is there, True requires one (``--resume``), False
    deletes it and starts over (``--no-resume``). Only the main process (rank 0) locks, clears and records.
    """

    def __init__(self, cfg: TrainConfig, stage: str, data_hash: str, *, mode: bool | None, main: bool = True) -> None:
        self.root = cfg.output_dir / "checkpoints"
        self.key = checkpoint_key(cfg, data_hash)
        self.dir = self.root / self.key
        self.stage, self.data_hash, self.mode, self.main = stage, data_hash, mode, main
        self._lock: Any = None

    def __enter__(self) -> ResumePoint:
        from recsys.fit.checkpoint import latest_checkpoint

        if self.main:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            if self.mode is False:
                self._clear()
        self.resuming = latest_checkpoint(self.dir / "fit") is not None
        if self.mode is True and not self.resuming:
            self.__exit__(None, None, None)
            others = sorted(p.name for p in self.root.iterdir() if p.name != self.key and p.is_dir())
            raise ArtifactError(f"--resume: no checkpoint to resume in {self.dir} (this config on data "
                                f"{self.data_hash[:19]}); checkpoints of other configs or data: {others or 'none'}. "
                                "Run without --resume to start over.")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: one process per config is then the user's care
            return
        self._lock = open(self.dir / ".lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise ConfigError(f"another recsys train is training this config into {self.dir} right now; wait for "
                              "it to end, or give this run another output.dir or name") from None

    def _clear(self) -> None:
        for sub in ("fit", "retrain"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        (self.dir / "run.json").unlink(missing_ok=True)

    def run_to_continue(self, tracking: TrackingConfig, params: dict[str, str]) -> str | None:
        """The MLflow run id that wrote the checkpoint being resumed, else None: same stage, still in the store and
        logged with the same ``params`` (a key outside the checkpoint's, e.g. ``ranker.*``, changed: a new run)."""
        if not (self.main and self.resuming and (self.dir / "run.json").is_file()):
            return None
        rec = json.loads((self.dir / "run.json").read_text())
        if rec.get("stage") != self.stage or not rec.get("run_id"):
            return None
        import mlflow

        from recsys.tracking.tracker import resolve_tracking_uri

        client = mlflow.MlflowClient(tracking_uri=resolve_tracking_uri(tracking))
        try:
            run = client.get_run(rec["run_id"])
        except mlflow.exceptions.MlflowException:  # another store, or the run was purged: a new run it is
            return None
        exp = client.get_experiment_by_name(tracking.experiment)
        same_exp = exp is not None and exp.experiment_id == run.info.experiment_id
        same_params = all(run.data.params.get(k, v) == v for k, v in params.items())
        return rec["run_id"] if same_exp and same_params and run.info.lifecycle_stage == "active" else None

    def record_run(self, run_id: str | None) -> None:
        """Name the MLflow run that trains into this checkpoint (written atomically)."""
        if not self.main:
            return
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps({"run_id": run_id, "stage": self.stage, "data_hash": self.data_hash}))
        os.replace(tmp, self.dir / "run.json")

    def finish(self) -> None:
        """The run ended well: its checkpoints are no longer needed (a rerun trains afresh)."""
        if self.main:
            shutil.rmtree(self.dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only when no other config's checkpoint is there
