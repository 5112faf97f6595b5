"""``recsys.load``: one entry point for a saved model, whether a bundle directory or an MLflow model URI.

The bundle format (:mod:`recsys.storage.bundle`) knows neither the Recommender nor MLflow; this module sits
above both and dispatches: ``models:/``, ``runs:/`` and ``mlflow-artifacts:/`` URIs go through the tracking
package (which downloads the logged bundle), anything else is a bundle path (or a ``file://`` URI).
"""

from __future__ import annotations

import os
from pathlib import Path

from recsys.errors import ArtifactError

__all__ = ["MLFLOW_SCHEMES", "load", "load_bundle", "save_bundle"]

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def load(uri: str | os.PathLike, *, key: str | bytes | None = None):
    """``recsys.load``: a bundle directory (path or ``file://`` URI) or an MLflow model URI.

    ``key`` (else ``$RECSYS_BUNDLE_KEY``): refuse a bundle that is not signed with it."""
    if not isinstance(uri, (str, os.PathLike)):
        raise ArtifactError(f"recsys.load takes a bundle path or a model URI, got {type(uri).__name__}")
    s = os.fspath(uri)
    if s.startswith(MLFLOW_SCHEMES):
        from recsys.tracking.mlflow_model import load_recommender

        return load_recommender(s, key=key)
    if s.startswith("file://"):
        from urllib.parse import unquote, urlparse

        s = unquote(urlparse(s).path)
    return load_bundle(s, key=key)


def load_bundle(path: str | Path, *, key: str | bytes | None = None, max_bytes: int | None = None):
    """A bundle directory as a ready :class:`~recsys.recommender.Recommender` (every checksum verified first)."""
    from recsys.recommender import Recommender

    return Recommender.load(path, key=key, max_bytes=max_bytes)


def save_bundle(recommender, path: str | Path, *, overwrite: bool = False, key: str | bytes | None = None) -> Path:
    """``recommender.save(path, ...)``: write it as a bundle directory, atomically (see :mod:`recsys.storage.bundle`)."""
    return recommender.save(path, overwrite=overwrite, key=key)
