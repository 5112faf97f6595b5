"""Which version a registered model's alias (or a number, or ``latest``) names in MLflow's current registry."""

from __future__ import annotations

from recsys.errors import ArtifactError

__all__ = ["alias_version"]


def alias_version(name: str, ref: str) -> str:
    """The version number ``models:/{name}@{ref}`` points at now; a number (or ``latest``) is itself. An alias the
    registry cannot resolve raises ArtifactError naming what to check."""
    if ref.isdigit() or ref == "latest":
        return ref
    import mlflow

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, ref).version)
    except mlflow.exceptions.MlflowException as e:
        raise ArtifactError(f"models:/{name}@{ref}: cannot read which version the alias points at ({e.message}); "
                            "check MLFLOW_TRACKING_URI and the alias (mlflow ui lists them)") from None
