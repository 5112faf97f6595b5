"""Writing a partner report (its JSON and plots) to a folder, and logging it to the MLflow run the model came from.

The run of a model: a ``runs:/<run_id>/...`` URI names it; a registered ``models:/<name>@<alias>`` or
``models:/<name>/<version>`` resolves to the run that logged that version (:func:`model_run_id`). A bundle
path knows no run; pass the run id yourself.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from recsys.errors import ArtifactError, ConfigError

__all__ = ["write_report", "model_run_id", "log_partner_report"]

KINDS = ("insight", "funnel")


def write_report(kind: str, report: dict, out_dir: str | Path) -> list[Path]:
    """``out_dir/<kind>.json`` and the report's PNGs (:mod:`recsys.partners.plots`); returns every path written.
    ``kind``: "insight" (an :func:`~recsys.partners.audience_insight` report) or "funnel"."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    from recsys.partners.plots import funnel_plots, insight_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{kind}.json"
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    plots = insight_plots(report, out_dir) if kind == "insight" else funnel_plots(report, out_dir)
    return [path, *plots]


def model_run_id(uri: str) -> str | None:
    """The MLflow run that logged the model at ``uri`` (``runs:/`` or ``models:/`` in MLflow's current store);
    None for a bundle path. An unresolvable registered model raises ArtifactError."""
    uri = str(uri)
    if uri.startswith("runs:/"):
        run = uri[len("runs:/"):].split("/", 1)[0]
        return run or None
    if not uri.startswith("models:/"):
        return None
    import mlflow

    ref = uri[len("models:/"):].strip("/")
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = ref.rpartition("/")
            version = (max(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
                       if number == "latest" else client.get_model_version(name, number))
    except (mlflow.exceptions.MlflowException, IndexError, ValueError) as e:
        raise ArtifactError(f"cannot find the run of {uri!r} in the MLflow store {mlflow.get_tracking_uri()} "
                            f"({getattr(e, 'message', e)}); check the name and alias (mlflow ui lists them)") from None
    return version.run_id


def log_partner_report(run_id: str, *, insight: dict | None = None, funnel: dict | None = None,
                       artifact_path: str | None = None) -> str:
    """Log the reports' JSON and plots as artifacts of MLflow run ``run_id`` (the training run the model came
    from; MLflow's current store), under ``artifact_path`` (default ``partner/<media_id>``). Returns the
    artifact path used. The run may be finished: artifacts are added to it without reopening it."""
    reports = {k: v for k, v in (("insight", insight), ("funnel", funnel)) if v is not None}
    if not reports:
        raise ConfigError("log_partner_report needs insight=... and/or funnel=... (reports to log)")
    if not run_id or not isinstance(run_id, str):
        raise ConfigError(f"run_id must be an MLflow run id, got {run_id!r}; find it with model_run_id(uri)")
    import mlflow

    media = next(iter(reports.values()))["media_id"]
    where = artifact_path or f"partner/{media}"
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory(prefix="recsys-partner-") as tmp:
        for kind, report in reports.items():
            write_report(kind, report, tmp)
        try:
            client.log_artifacts(run_id, tmp, where)
        except mlflow.exceptions.MlflowException as e:
            raise ArtifactError(f"cannot log the partner report to run {run_id!r} in {mlflow.get_tracking_uri()}: "
                                f"{e.message}") from None
    return where
