"""Batch scoring on Spark: the local job's rows, computed inside ``mapInPandas`` and written by Spark.

>>> rows = score_spark(spark, spark.createDataFrame([(7,), (9,)], "user_id long"), "runs/demo/bundle",
...                    media_id="guide-0")                                                  # doctest: +SKIP
>>> score_spark_job("models:/guess-you-like@champion", "feeds/", media_id="guide-0")       # doctest: +SKIP

The driver loads the model once (its id kinds type the output schema, its name and version go in every row)
and ships the bundle directory with ``SparkContext.addFile`` (or, ``ship=False``, leaves it on a path every
executor can read). Each Python worker loads the verified bundle once (:func:`recsys.load` checks every
checksum there too) and keeps it for the worker's later tasks. :func:`score_spark_job` overlaps its start
(:mod:`recsys.batch.spark_start`): the session starts, the bundle ships and a tiny warm-up job has every Python
worker load it while the driver loads the model.

The same rows as the local job (:mod:`recsys.batch.job`) by construction, not by luck: a batch's floating-point
results depend on which users are scored together (the user tower's matmul and the index search run per
batch; the last bits of a retrieval score can move a candidate past an equal-scored one, and the ranker gives
equal scores often), so Spark scores exactly the local job's chunks. The users are planned as the local job
plans them (each partner's users, unique and sorted, cut into chunks of ``chunk_size``); the DataFrame that
``mapInPandas`` gets holds one row per chunk (``media_id``, ``chunk``, ``user_ids`` in plan order), and each
row is one :func:`recsys.batch.rows.score_chunk` call: the same code, bundle, users, ``k`` and ``scored_at``
as the local job's part ``chunk``. How Spark partitions the rows cannot change a chunk. pyspark is imported
only here, when called.
"""

from __future__ import annotations

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
from recsys.batch.spark_worker import report_dir, score_chunks, ship_bundle
from recsys.errors import ConfigError, MissingDependencyError
from recsys.feed.request_checks import check_k
from recsys.storage.bundle import manifest_digest

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


def _driver_model(spark, model: str | os.PathLike, rec: Any = None) -> tuple[Any, str, Path]:
    """The model loaded on the driver (``rec`` when already loaded from ``model``), its URI, and a local bundle
    directory holding it (a ``models:/`` URI is loaded and saved under Spark's driver-side file root, which Spark
    removes when the session stops)."""
    from recsys.batch.spark_start import local_bundle
    from recsys.loading import load

    uri = os.fspath(model)
    rec = load(uri) if rec is None else rec
    path = local_bundle(uri)
    if path is not None:
        return rec, uri, path
    from pyspark import SparkFiles

    digest = manifest_digest(rec.bundle_manifest_)[:16]
    dest = Path(SparkFiles.getRootDirectory()) / "_recsys_models" / f"mlflow-{digest}"
    if not (dest / "manifest.json").exists():
        rec.save(dest)
    return rec, uri, dest.resolve()


def score_spark(spark, users, model: str | os.PathLike, *, k: int = 20, media_id: str | None = None,
                nested: bool = False, chunk_size: int = 2048, scored_at: Any = None, ship: bool = True,
                partitions: int | None = None):
    """The feeds of a Spark DataFrame of users as a (lazy) Spark DataFrame of batch rows.

    ``users``: a ``user_id`` column of the model's id type (integers or strings) and optionally ``media_id``
    (a row's partner; else ``media_id``). Planned as the local job plans a users list: per partner, each user
    once, sorted, cut into chunks of ``chunk_size``; so these rows equal the local job's over the same users.
    ``model``: a bundle path or an MLflow model URI, loaded on the driver and shipped with ``addFile``
    (``ship=False``: every executor reads the bundle path itself). Rows are those of
    :func:`recsys.batch.rows.score_chunk` (``nested``: :func:`~recsys.batch.rows.nest`), ``scored_at`` in each
    (default: now, UTC). ``partitions``: how many Spark tasks share the chunks (default: as Spark plans).
    A bundle that fails its checksums on an executor fails the job with an ArtifactError.
    """
    k, chunk_size, partitions = _checked(k, chunk_size, partitions)
    rec, uri, bundle = _driver_model(spark, model)
    chunks = _plan_in_spark(users, _user_kind(rec), media_id=media_id, chunk_size=chunk_size)
    return _score(spark, chunks, rec, uri, bundle, k=k, nested=nested, scored_at=scored_at, ship=ship,
                  partitions=partitions)


def _checked(k: Any, chunk_size: Any, partitions: Any) -> tuple[int, int, int | None]:
    """``k``, ``chunk_size`` and ``partitions`` (None: Spark's choice) checked with the request path's rule."""
    return (check_k(k), check_k(chunk_size, "chunk_size", None),
            None if partitions is None else check_k(partitions, "partitions", None))


def _user_kind(rec: Any) -> str:
    from recsys.ids import id_kind

    return id_kind(rec._ready().users.ids)


def _score(spark, chunks, rec: Any, uri: str, bundle: Path, *, k: int, nested: bool, scored_at: Any, ship: bool,
           partitions: int | None, shipped: Any = None):
    """The rows of a DataFrame of chunks (:func:`_chunk_frame`, :func:`_plan_in_spark`), once the driver holds
    the model (``rec``, loaded from ``uri``; its bundle folder)."""
    from recsys.ids import id_kind

    state = rec._ready()
    schema = spark_schema(id_kind(state.users.ids), id_kind(state.catalogue.index), bool(nested))
    if shipped is None:  # else shipped already (recsys.batch.spark_start), for this same bundle directory
        shipped = ship_bundle(spark, bundle, ship)
    info, when = model_info(rec, uri), run_time(scored_at)
    columns, report = [f.name for f in schema.fields], report_dir()

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return score_chunks(batches, shipped, info, k=k, nested=bool(nested), scored_at=when, columns=columns,
                            report=report)

    if partitions is not None:  # consecutive chunks stay together; a chunk is one row, never split
        chunks = chunks.repartitionByRange(partitions, "media_id", "chunk")
    return chunks.mapInPandas(run, schema)


def _chunk_frame(spark, plan: Any, user_kind: str):
    """The local job's plan (:func:`recsys.batch.job.plan_job`) as a DataFrame: one row per chunk, numbered as
    the local job's parts (``media_id``, ``chunk``, ``user_ids`` in plan order, ``rows``: how many)."""
    import pyarrow as pa

    id_type = pa.int64() if user_kind == "int" else pa.string()
    ids = [plan.users[m][start:stop] for m, start, stop in plan.chunks]
    table = pa.table({"media_id": pa.array([m for m, _, _ in plan.chunks], pa.string()),
                      "chunk": pa.array(range(len(ids)), pa.int64()),
                      "user_ids": pa.array(ids, pa.list_(id_type)),
                      "rows": pa.array([len(u) for u in ids], pa.int64())})
    return spark.createDataFrame(table)


def _plan_in_spark(users, user_kind: str, *, media_id: str | None, chunk_size: int):
    """A DataFrame of users planned in Spark as :func:`recsys.batch.job.plan_job` plans a list: per partner,
    unique ids in order, numbered, cut every ``chunk_size``; one row per chunk as :func:`_chunk_frame`'s."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if "user_id" not in users.columns:
        raise ConfigError(f"the users DataFrame needs a 'user_id' column; it has {users.columns}")
    given = users.schema["user_id"].dataType
    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    if not isinstance(given, integral if user_kind == "int" else T.StringType):
        want = "an integer" if user_kind == "int" else "a string"
        raise ConfigError(f"the users DataFrame's user_id is {given.simpleString()}; this model's user ids need "
                          f"{want} column: cast it, e.g. users.withColumn('user_id', users.user_id.cast("
                          f"'{'long' if user_kind == 'int' else 'string'}'))")
    media = F.col("media_id").cast("string") if "media_id" in users.columns else F.lit(media_id).cast("string")
    frame = users.select(F.col("user_id").cast(T.LongType() if user_kind == "int" else T.StringType()),
                         media.alias("media_id")).dropDuplicates()
    number = F.row_number().over(Window.partitionBy("media_id").orderBy("user_id")) - 1
    # sort_array: collect_list's order is not defined; nulls are left out of the list and counted in rows
    return (frame.withColumn("chunk", F.floor(number / chunk_size))
            .groupBy("media_id", "chunk")
            .agg(F.sort_array(F.collect_list("user_id")).alias("user_ids"), F.count(F.lit(1)).alias("rows")))


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
                    scored_at: Any = None, ship: bool = True, partitions: int | None = None) -> dict:
    """``recsys score --engine spark``: score the users with :func:`score_spark`, write the rows with Spark's
    Parquet writer into ``out`` (part files and Spark's ``_SUCCESS``), then ``out/_manifest.json``; return it.

    ``users``: ids, a parquet/CSV file with a ``user_id`` column, or None: each partner's audience
    (:meth:`~recsys.recommender.Recommender.audience`). The chunks are the local job's
    (:func:`recsys.batch.job.plan_job`), one ``mapInPandas`` row each; ``partitions``: how many Spark tasks
    share them (default: Spark's default parallelism). ``spark``: a session (spark-submit's); None: one made
    on ``master`` and stopped at the end. ``restart``: replace what ``out`` holds (else a ConfigError).
    """
    started, t0 = pd.Timestamp.now(tz="UTC"), time.perf_counter()
    out = os.fspath(out)
    mode = _check_out(out, restart)
    own = spark is None
    k, chunk_size, partitions = _checked(k, chunk_size, partitions)
    from recsys.batch.spark_start import JobStart

    start = JobStart(spark, lambda: local_session(master), model, ship=ship)
    rec = start.begin()  # the session starts and the workers load the bundle meanwhile
    spark = start.session()
    try:
        from recsys.batch.job import plan_job

        rec, uri, bundle = _driver_model(spark, model, rec)
        plan = plan_job(rec, media_id=media_id, users=users, chunk_size=chunk_size)
        when = run_time(scored_at)
        rows = _score(spark, _chunk_frame(spark, plan, _user_kind(rec)), rec, uri, bundle, k=k, nested=nested,
                      scored_at=when, ship=ship, partitions=partitions, shipped=start.shipped())
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
                      "partitions": rows.rdd.getNumPartitions(), "chunks": len(plan.chunks)}}
        _write_json(spark, out, "_manifest.json", manifest)
        return manifest
    finally:
        if own:
            spark.stop()
