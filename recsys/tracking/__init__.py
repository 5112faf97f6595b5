"""Experiment tracking with MLflow: runs, metrics, plots, datasets, the bundle and the registered model.

Importing this package does not import mlflow; :class:`~recsys.tracking.tracker.MlflowTracker` loads
it when a run starts. Tracking is switched off with ``tracking.enabled: false`` in a config or
``recsys train --no-tracking``: then :class:`~recsys.tracking.tracker.Tracker` (which does nothing)
takes its place and no store is created. The store is ``tracking.tracking_uri``, else
``$MLFLOW_TRACKING_URI``, else the embedded SQLite file ``./mlflow.db`` (:func:`resolve_tracking_uri`).

The model logged for serving is an ``mlflow.pyfunc`` model built from code
(:mod:`recsys.tracking.pyfunc_model`): its artifacts are the bundle directory (JSON, safetensors,
parquet, FAISS files; checksummed), a Python file and recsys as a wheel; loading it never unpickles anything of ours.
"""

from __future__ import annotations

from recsys.lazy import lazy_exports

__all__ = ["Tracker", "MlflowTracker", "TrackingCallback", "make_tracker", "resolve_tracking_uri",
           "load_recommender", "log_recommender", "predict_feeds"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Tracker": ".tracker", "MlflowTracker": ".tracker", "TrackingCallback": ".tracker", "make_tracker": ".tracker",
    "resolve_tracking_uri": ".tracker", "load_recommender": ".mlflow_model", "log_recommender": ".mlflow_model",
    "predict_feeds": ".feeds"})
