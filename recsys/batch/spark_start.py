"""The start of a Spark scoring job, overlapped: the session, the driver's model load and the workers' loads.

At 1M items each of these takes seconds: the JVM's start, the driver loading (and verifying) the model, and each
Python worker importing the library and loading the bundle. Done one after the other they cost a Spark job about
20 s before its first user is scored; here the driver loads the model on the calling thread while another
thread starts the session (when none is given), ships the bundle and runs :func:`warm_workers`: a tiny
``mapInPandas`` job after which every Python worker holds the verified bundle. PySpark reuses its SQL Python
workers between jobs, so the scoring job's tasks find it loaded (:func:`recsys.batch.spark_worker.worker_model`
keeps one model per worker). The warm-up is an optimisation only: if it fails, the scoring job loads the bundle
itself and raises the failure there, with its usual message.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.batch.spark_worker import ShippedBundle, report_dir, ship_bundle, worker_model

__all__ = ["JobStart", "warm_workers", "local_bundle"]

log = logging.getLogger("recsys.batch")


def local_bundle(model: str | os.PathLike) -> Path | None:
    """The bundle directory ``model`` names (resolved), or None for an MLflow URI (known only once loaded)."""
    from recsys.loading import MLFLOW_SCHEMES

    uri = os.fspath(model)
    if uri.startswith(MLFLOW_SCHEMES):
        return None
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).resolve()


def warm_workers(spark, bundle: ShippedBundle, report: str | None = None) -> int:
    """Load the bundle in the session's Python workers now: one ``mapInPandas`` job of ``defaultParallelism``
    one-row tasks, each calling :func:`~recsys.batch.spark_worker.worker_model`. Returns how many distinct
    workers answered."""
    n = max(1, int(spark.sparkContext.defaultParallelism))

    def load(batches):
        for _ in batches:  # one row per task: nothing to read
            pass
        worker_model(bundle, report)
        yield pd.DataFrame({"pid": [os.getpid()]})

    return len({row.pid for row in spark.range(0, n, 1, n).mapInPandas(load, "pid long").collect()})


class JobStart:
    """Start a Spark scoring job: :meth:`begin` on the calling thread returns the driver's model while the
    session starts (``spark``, or ``new_session()`` when None) and the workers warm up beside it;
    :meth:`session` and :meth:`shipped` wait for that."""

    def __init__(self, spark, new_session: Callable[[], Any], model: str | os.PathLike, *, ship: bool) -> None:
        self._given, self._new_session, self._model, self._ship = spark, new_session, model, bool(ship)
        self._spark: Any = spark
        self._shipped: ShippedBundle | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="recsys-spark-start", daemon=True)

    def _run(self) -> None:
        try:
            if self._spark is None:
                self._spark = self._new_session()
        except BaseException as e:  # raised on the calling thread by session()
            self._error = e
            return
        bundle = local_bundle(self._model)
        if bundle is None:
            return  # an MLflow model: its bundle directory exists once the driver has loaded it
        try:  # no bundle there, or a bad one: ship_bundle raises, and the driver's load says why
            self._shipped = ship_bundle(self._spark, bundle, self._ship)
            warm_workers(self._spark, self._shipped, report_dir())
        except Exception as e:  # the scoring job meets the same problem and raises it itself
            log.info("warming the Spark workers failed (%s); the scoring job loads the bundle itself", e)

    def begin(self) -> Any:
        """Start the session and the warm-up in a thread, load the model here; return the model. On a failed
        load, a session this start made is stopped before the error is raised."""
        from recsys.loading import load

        self._thread.start()
        try:
            return load(os.fspath(self._model))
        except BaseException:
            self._thread.join()
            if self._given is None and self._error is None and self._spark is not None:
                self._spark.stop()
            raise

    def session(self) -> Any:
        """The session (waits for the start and the warm-up; raises what starting the session raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._spark

    def shipped(self) -> ShippedBundle | None:
        """The bundle as shipped for the warm-up (None: not shipped yet; :func:`_score` ships it)."""
        self._thread.join()
        return self._shipped
