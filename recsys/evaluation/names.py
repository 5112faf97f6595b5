"""Metric names as every report shows them: ``recall@20`` inside the library, ``recall_at_20`` in MLflow."""

from __future__ import annotations

__all__ = ["metric_name"]


def metric_name(name: str) -> str:
    """An MLflow-safe metric name: ``recall@20`` -> ``recall_at_20``."""
    return str(name).replace("@", "_at_").replace("+", "_plus_")
