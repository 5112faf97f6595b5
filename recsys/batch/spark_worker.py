"""The executor side of Spark batch scoring: each Python worker loads the shipped bundle once and scores.

Imported by the functions :mod:`recsys.batch.spark` hands to ``mapInPandas``; the model a worker holds lives
here, so it outlives one task (PySpark reuses its Python workers). Each input row is one chunk of the job's
plan (``media_id``, ``chunk``, ``user_ids``), scored by one :func:`~recsys.batch.rows.score_chunk` call, so a
worker scores exactly the chunks the local job scores, users in the same order. The driver side registers the
bundle (:func:`ship_bundle`); pyspark is imported only inside the functions.

When the driver's environment names a folder in :data:`REPORT_ENV`, every worker writes one small JSON file
there per model load and per chunk scored (its pid, the task's partition, the chunk's users): how a test sees
what the workers did. Unset (the default), nothing is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.batch.parts import write_json
from recsys.batch.rows import ModelInfo, nest, score_chunk
from recsys.batch.workers import SCORING_THREADS
from recsys.errors import ArtifactError, DataValidationError
from recsys.threads import limit_threads

__all__ = ["ShippedBundle", "ship_bundle", "worker_model", "score_chunks", "manifest_sha256", "REPORT_ENV",
           "report_dir"]

REPORT_ENV = "RECSYS_SPARK_WORKER_REPORT"  # a folder for the workers' load / chunk reports (tests set it)


@dataclass(frozen=True)
class ShippedBundle:
    """Where an executor finds the bundle: a ``SparkFiles`` name (``shipped``) or a path all of them can read,
    and the sha256 of the manifest the driver loaded (an executor refuses any other bundle)."""

    location: str
    manifest_sha256: str
    shipped: bool


_LOADED: dict[tuple[str, str], Any] = {}  # per Python worker: the one model it holds
_LOCK = threading.Lock()


def manifest_sha256(bundle: Path) -> str:
    try:
        return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    except OSError as e:
        raise ArtifactError(f"{bundle} is not a bundle directory (no readable manifest.json: {e})") from None


def ship_bundle(spark, bundle: Path, ship: bool) -> ShippedBundle:
    """Register ``bundle`` with ``SparkContext.addFile`` (``ship``), or keep its path for the executors.

    Spark names a shipped folder by its last component; when another folder of that name is already
    registered, a hard-linked (else copied) twin named for this bundle's path and manifest goes instead."""
    sha = manifest_sha256(bundle)
    if not ship:
        return ShippedBundle(str(bundle), sha, shipped=False)
    sc = spark.sparkContext
    taken = {u.rstrip("/").rsplit("/", 1)[-1]: u.rstrip("/") for u in sc.listFiles}
    source = bundle
    if taken.get(bundle.name, f"file:{bundle}") != f"file:{bundle}":
        source = _stage_root() / f"{bundle.name}-{hashlib.sha256(f'{bundle}|{sha}'.encode()).hexdigest()[:16]}"
        if not source.exists():
            shutil.copytree(bundle, source, copy_function=_link_or_copy)
    sc.addFile(str(source), recursive=True)
    return ShippedBundle(source.name, sha, shipped=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stage_root() -> Path:
    """A folder under Spark's driver-side file root (Spark removes it when the session stops)."""
    from pyspark import SparkFiles

    return Path(SparkFiles.getRootDirectory()) / "_recsys_stage"


def report_dir() -> str | None:
    """The folder :data:`REPORT_ENV` names in this (driver) process, absolute; None when unset."""
    folder = os.environ.get(REPORT_ENV)
    return str(Path(folder).resolve()) if folder else None


def _report(folder: str | None, event: str, **fields: Any) -> None:
    """One report file ``{event}-{pid}-{hex}.json`` in ``folder`` (written atomically); nothing when None."""
    if folder is None:
        return
    from pyspark import TaskContext

    task = TaskContext.get()
    Path(folder).mkdir(parents=True, exist_ok=True)
    data = {"event": event, "pid": os.getpid(), "partition": task.partitionId() if task else None, **fields}
    write_json(Path(folder) / f"{event}-{os.getpid()}-{uuid.uuid4().hex[:12]}.json", data)


def worker_model(bundle: ShippedBundle, report: str | None = None) -> Any:
    """The bundle's Recommender in this Python worker: loaded (and verified) on first use, then kept
    (``report``: a folder that gets one ``load`` report per load)."""
    from recsys.loading import load

    if bundle.shipped:
        from pyspark import SparkFiles

        path = SparkFiles.get(bundle.location)
    else:
        path = bundle.location
    key = (path, bundle.manifest_sha256)
    with _LOCK:
        rec = _LOADED.get(key)
        if rec is None:
            found = manifest_sha256(Path(path))
            if found != bundle.manifest_sha256:
                raise ArtifactError(f"the bundle at {path} on this executor is not the one the driver loaded "
                                    f"(manifest sha256 {found[:12]}..., expected {bundle.manifest_sha256[:12]}...); "
                                    "ship it again or point every executor at the same bundle")
            rec = load(path)  # verifies every file's size and sha256 here, on the executor
            limit_threads(SCORING_THREADS)  # as the local job's processes: the same rows (recsys.batch.workers)
            _LOADED.clear()   # one model per worker: a new job's model replaces the last one
            _LOADED[key] = rec
            _report(report, "load", bundle=path)
    return rec


def score_chunks(batches: Iterator[pd.DataFrame], bundle: ShippedBundle, info: ModelInfo, *, k: int,
                 nested: bool, scored_at: pd.Timestamp, columns: list[str], report: str | None = None
                 ) -> Iterator[pd.DataFrame]:
    """One partition: each row one chunk (``media_id``, ``user_ids``, ``rows``: the input rows it came from),
    scored as one :func:`~recsys.batch.rows.score_chunk` call on its users in their order."""
    rec = None
    for batch in batches:
        for media, ids, rows in zip(batch["media_id"], batch["user_ids"], batch["rows"], strict=True):
            users = list(ids.tolist() if hasattr(ids, "tolist") else ids)
            partner = media if isinstance(media, str) else None  # a null partner arrives as None or NaN
            if len(users) != rows:
                raise DataValidationError(f"{rows - len(users)} rows of the users DataFrame have no user_id "
                                          f"(partner {partner!r}): drop or fill them")
            rec = worker_model(bundle, report) if rec is None else rec
            _report(report, "chunk", media_id=partner, users=users)
            frame = score_chunk(rec, users, k=k, media_id=partner, model=info, scored_at=scored_at)
            yield (nest(frame) if nested else frame)[columns]
