"""The executor side of Spark batch scoring: each Python worker loads the shipped bundle once and scores.

Imported by the functions :mod:`recsys.batch.spark` hands to ``mapInPandas``; the model a worker holds lives
here, so it outlives one task (PySpark reuses its Python workers). The driver side registers the bundle
(:func:`ship_bundle`); pyspark is imported only inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.batch.rows import ModelInfo, nest, score_chunk
from recsys.errors import ArtifactError

__all__ = ["ShippedBundle", "ship_bundle", "worker_model", "score_frames", "manifest_sha256"]


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


def worker_model(bundle: ShippedBundle) -> Any:
    """The bundle's Recommender in this Python worker: loaded (and verified) on first use, then kept."""
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
            _LOADED.clear()   # one model per worker: a new job's model replaces the last one
            _LOADED[key] = rec
    return rec


def score_frames(batches: Iterator[pd.DataFrame], bundle: ShippedBundle, info: ModelInfo, *, k: int,
                  media_id: str | None, nested: bool, chunk_size: int, scored_at: pd.Timestamp,
                  columns: list[str]) -> Iterator[pd.DataFrame]:
    """One partition: its users, partner by partner in input order, scored ``chunk_size`` at a time."""
    rec = None
    for batch in batches:
        if batch.empty:
            continue
        rec = worker_model(bundle) if rec is None else rec
        media = batch["media_id"] if "media_id" in batch.columns else pd.Series(media_id, index=batch.index)
        for partner, users in batch["user_id"].groupby(media.fillna("\0"), sort=False):
            partner = None if partner == "\0" else partner
            ids = users.tolist()
            for start in range(0, len(ids), chunk_size):
                rows = score_chunk(rec, ids[start:start + chunk_size], k=k, media_id=partner, model=info,
                                   scored_at=scored_at)
                yield (nest(rows) if nested else rows)[columns]
