"""Batch scoring on Spark: the local job's rows, computed inside ``mapInPandas`` and written by Spark.

>>> rows = score_spark(spark, spark.createDataFrame([(7,), (9,)], "user_id long"), "runs/demo/bundle",
...                    media_id="guide-0")                                                  # doctest: +SKIP
>>> score_spark_job("models:/guess-you-like@champion", "feeds/", media_id="guide-0")       # doctest: +SKIP

The driver loads the model once (its id kinds type the output schema, its name and version go in every row)
and ships the bundle directory with ``SparkContext.addFile`` (or, ``ship=False``, leaves it on a path every
executor can read). Each Python worker loads the verified bundle once (:func:`recsys.load` checks every
checksum there too), keeps it for the worker's later tasks, and scores its partition in chunks with
:func:`recsys.batch.rows.score_chunk`: the same code, bundle, ``k`` and ``scored_at`` as the local job
(:mod:`recsys.batch.job`), so the same rows. pyspark is imported only here, when called.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.batch.parts import write_json
from recsys.batch.rows import FEED_FIELDS, model_info, run_time
from recsys.batch.spark_worker import score_frames, ship_bundle
from recsys.errors import ConfigError, MissingDependencyError
from recsys.feed.request_checks import check_k

__all__ = ["score_spark", "score_spark_job", "local_session", "spark_schema"]

FORMAT = 1
_INSTALL = "pip install 'recsys[spark]' (pyspark, and a pandas it supports), and Java 17"


def _pyspark():
    try:
        import pyspark
        from pyspark.sql import types
    except ImportError as e:
        raise MissingDependencyError(f"batch scoring on Spark needs pyspark: {_INSTALL}") from e
    return pyspark, types


def local_session(master: str = "local[2]", *, app_name: str = "recsys-score", progress: bool | None = None):
    """A quiet SparkSession for one machine (UI off, 2 shuffle partitions, UTC, workers on this Python)."""
    _pyspark()
    from pyspark.sql import SparkSession

    from recsys.progress import show_progress

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # PySpark's workers run `python3` otherwise
    spark = (SparkSession.builder.master(master).appName(app_name)
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", str(show_progress(progress)).lower())
             .config("spark.sql.shuffle.partitions", "2").config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_schema(user_kind: str, item_kind: str, nested: bool):
    """The Spark schema of the rows (:data:`recsys.batch.rows.ROW_COLUMNS`), ids typed as the model's."""
    _, T = _pyspark()
    if "any" in (user_kind, item_kind):
        raise ConfigError("this model mixes integer and string ids; Spark needs one type per column. Score it with "
                          "the local job (recsys score --engine local)")

    def id_type(kind: str):
        return T.LongType() if kind == "int" else T.StringType()

    kinds = {"rank": T.IntegerType(), "item_id": id_type(item_kind), "score": T.DoubleType(),
             "pctr": T.DoubleType(), "pcvr": T.DoubleType(), "reason": T.StringType(), "fallback": T.StringType()}
    feed = [T.StructField(name, kinds[name], True) for name in FEED_FIELDS]
    head = [T.StructField("user_id", id_type(user_kind), False), T.StructField("media_id", T.StringType(), True)]
    tail = [T.StructField("model_name", T.StringType(), False), T.StructField("model_version", T.StringType(), False),
            T.StructField("scored_at", T.TimestampNTZType(), False)]
    middle = [T.StructField("feed", T.ArrayType(T.StructType(feed), False), False)] if nested else feed
    return T.StructType(head + middle + tail)


def _driver_model(spark, model: str | os.PathLike) -> tuple[Any, str, Path]:
    """The model loaded on the driver, its URI, and a local bundle directory holding it (a ``models:/`` URI is
    loaded and saved under Spark's driver-side file root, which Spark removes when the session stops)."""
    from recsys.loading import MLFLOW_SCHEMES, load

    uri = os.fspath(model)
    rec = load(uri)
    if not uri.startswith(MLFLOW_SCHEMES):
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        return rec, uri, path.resolve()
    from pyspark import SparkFiles

    digest = hashlib.sha256(json.dumps(rec.bundle_manifest_, sort_keys=True).encode()).hexdigest()[:16]
    dest = Path(SparkFiles.getRootDirectory()) / "_recsys_models" / f"mlflow-{digest}"
    if not (dest / "manifest.json").exists():
        rec.save(dest)
    return rec, uri, dest.resolve()


def score_spark(spark, users, model: str | os.PathLike, *, k: int = 20, media_id: str | None = None,
                nested: bool = False, chunk_size: int = 2048, scored_at: Any = None, ship: bool = True):
    """The feeds of a Spark DataFrame of users as a (lazy) Spark DataFrame of batch rows.

    ``users``: a ``user_id`` column and optionally ``media_id`` (a row's partner; else ``media_id``).
    ``model``: a bundle path or an MLflow model URI, loaded on the driver and shipped with ``addFile``
    (``ship=False``: every executor reads the bundle path itself). Rows are those of
    :func:`recsys.batch.rows.score_chunk` (``nested``: :func:`~recsys.batch.rows.nest`), ``scored_at`` in each
    (default: now, UTC). A bundle that fails its checksums on an executor fails the job with an ArtifactError.
    """
    k, chunk_size = check_k(k), check_k(chunk_size, "chunk_size", None)
    return _score(spark, users, *_driver_model(spark, model), k=k, media_id=media_id, nested=nested,
                  chunk_size=chunk_size, scored_at=scored_at, ship=ship)


def _score(spark, users, rec: Any, uri: str, bundle: Path, *, k: int, media_id: str | None, nested: bool,
           chunk_size: int, scored_at: Any, ship: bool):
    """:func:`score_spark` once the driver holds the model (``rec``, loaded from ``uri``; its bundle folder)."""
    from recsys.ids import id_kind

    if "user_id" not in users.columns:
        raise ConfigError(f"the users DataFrame needs a 'user_id' column; it has {users.columns}")
    state = rec._ready()
    schema = spark_schema(id_kind(state.users.ids), id_kind(state.catalogue.index), bool(nested))
    shipped, info, when = ship_bundle(spark, bundle, ship), model_info(rec, uri), run_time(scored_at)
    columns = [f.name for f in schema.fields]
    keep = ["user_id"] + (["media_id"] if "media_id" in users.columns else [])

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return score_frames(batches, shipped, info, k=k, media_id=media_id, nested=bool(nested),
                             chunk_size=chunk_size, scored_at=when, columns=columns)

    return users.select(*keep).mapInPandas(run, schema)


def _users_frame(spark, rec: Any, *, media_id: str | None, users: Any, chunk_size: int):
    """The job's users as a Spark DataFrame (user_id, media_id), planned as the local job plans them
    (:func:`recsys.batch.job.plan_job`: the given ids, else each partner's audience), and the plan."""
    import pyarrow as pa

    from recsys.batch.job import plan_job

    plan = plan_job(rec, media_id=media_id, users=users, chunk_size=chunk_size)
    ids = [u for m in plan.users for u in plan.users[m]]
    media = [m for m, us in plan.users.items() for _ in us]
    kind = pa.int64() if all(isinstance(u, int) for u in ids) else pa.string()
    table = pa.table({"user_id": pa.array(ids, kind), "media_id": pa.array(media, pa.string())})
    return spark.createDataFrame(table), plan


def _write(rows, mode: str, out: str) -> None:
    """Spark's Parquet writer; a recsys error raised on an executor is raised here as itself (its last line)."""
    import re

    from pyspark.errors import PySparkException

    from recsys import errors

    try:
        rows.write.mode(mode).parquet(out)
    except PySparkException as e:
        found = re.findall(r"recsys\.errors\.(\w+): (.+)", str(e))
        kind = getattr(errors, found[-1][0], None) if found else None
        if not (isinstance(kind, type) and issubclass(kind, errors.RecsysError)):
            raise
        raise kind(f"on a Spark executor: {found[-1][1]}") from e


def _check_out(out: str, restart: bool) -> str:
    """Spark's save mode for ``out``: refuse a non-empty local folder unless ``restart`` (Spark overwrites it)."""
    local = "://" not in out and Path(out).is_dir()
    if restart or (local and not any(Path(out).iterdir())):  # an empty folder is Spark's to fill
        return "overwrite"
    if local:
        raise ConfigError(f"{out} already holds files; write to a new directory, or pass restart=True (--restart) "
                          "to replace them (a Spark run is one job: Spark retries failed tasks, it does not resume)")
    return "errorifexists"


def _write_json(spark, out: str, name: str, data: dict) -> None:
    """``out/name`` as JSON: a local folder directly (atomically), a URI (hdfs://, s3a://, file://) through
    the Hadoop file system Spark writes with."""
    if "://" not in out:
        write_json(Path(out) / name, data)
        return
    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"{out.rstrip('/')}/{name}")
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def score_spark_job(model: str | os.PathLike, out: str | os.PathLike, *, media_id: str | None = None,
                    users: Sequence | str | os.PathLike | None = None, k: int = 20, nested: bool = False,
                    chunk_size: int = 2048, restart: bool = False, spark=None, master: str = "local[2]",
                    scored_at: Any = None, ship: bool = True) -> dict:
    """``recsys score --engine spark``: score the users with :func:`score_spark`, write the rows with Spark's
    Parquet writer into ``out`` (part files and Spark's ``_SUCCESS``), then ``out/_manifest.json``; return it.

    ``users``: ids, a parquet/CSV file with a ``user_id`` column, or None: each partner's audience
    (:meth:`~recsys.recommender.Recommender.audience`). ``spark``: a session (spark-submit's); None: one made
    on ``master`` and stopped at the end. ``restart``: replace what ``out`` holds (else a ConfigError).
    """
    started, t0 = pd.Timestamp.now(tz="UTC"), time.perf_counter()
    out = os.fspath(out)
    mode = _check_out(out, restart)
    own = spark is None
    spark = local_session(master) if own else spark
    try:
        k, chunk_size = check_k(k), check_k(chunk_size, "chunk_size", None)
        rec, uri, bundle = _driver_model(spark, model)
        frame, plan = _users_frame(spark, rec, media_id=media_id, users=users, chunk_size=chunk_size)
        when = run_time(scored_at)
        rows = _score(spark, frame, rec, uri, bundle, k=k, media_id=media_id, nested=nested, chunk_size=chunk_size,
                      scored_at=when, ship=ship)
        _write(rows, mode, out)
        written = spark.read.parquet(out)
        per = {r["media_id"]: int(r["count"]) for r in written.groupBy("media_id").count().collect()}
        partners = {m: {"users": len(ids), "rows": per.get(m, 0)} for m, ids in plan.users.items()}
        info = model_info(rec, uri)
        manifest = {
            "format": FORMAT, "engine": "spark",
            "inputs": {"model": uri, "media_id": media_id, "partners": list(plan.users), "users_source": plan.source,
                       "k": int(k), "nested": bool(nested), "chunk_size": chunk_size},
            "model": info.to_dict(), "partners": partners, "rows": int(sum(per.values())),
            "users": int(sum(len(v) for v in plan.users.values())), "parts": len(written.inputFiles()),
            "resumed_parts": [], "scored_at": str(when), "started_at": started.isoformat(),
            "finished_at": pd.Timestamp.now(tz="UTC").isoformat(), "seconds": round(time.perf_counter() - t0, 3),
            "spark": {"version": spark.version, "master": spark.sparkContext.master,
                      "partitions": frame.rdd.getNumPartitions()}}
        _write_json(spark, out, "_manifest.json", manifest)
        return manifest
    finally:
        if own:
            spark.stop()
