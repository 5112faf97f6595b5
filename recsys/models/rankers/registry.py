"""The ranker kinds, in one place: kind -> class, imported on first use.

``ranker_class("esmm")`` imports torch only then; ``load_ranker(path)`` picks the class from the
``kind`` saved in ``ranker.json``. A new ranker subclasses :class:`~.base.CalibratedRanker`, sets
``kind`` and is added to ``_CLASSES`` below; configs, bundles and ``Recommender.fit`` then accept it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from pkgutil import resolve_name
from typing import Any

from recsys.errors import ArtifactError, ConfigError
from recsys.models.rankers.base import CalibratedRanker, _read_meta

_CLASSES = {
    "gbdt": "recsys.models.rankers.gbdt:GBDTRanker",
    "esmm": "recsys.models.rankers.esmm:ESMMRanker",
}
RANKER_KINDS: tuple[str, ...] = tuple(_CLASSES)


def ranker_class(kind: str) -> type[CalibratedRanker]:
    """The ranker class of ``kind`` (its module is imported now); ConfigError for an unknown kind."""
    if kind not in _CLASSES:
        raise ConfigError(f"unknown ranker kind {kind!r}; expected one of {list(RANKER_KINDS)} (a new ranker is "
                          "registered in recsys/models/rankers/registry.py).")
    return resolve_name(_CLASSES[kind])


def build_ranker(kind: str, settings: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> CalibratedRanker:
    """A new ranker of ``kind``: ``settings`` (shared training settings such as ``seed``, ``max_iter``,
    ``epochs``) go to it where its constructor takes them, ``options`` (a user's own) always, so a misspelt
    option is the constructor's TypeError rather than silently dropped."""
    cls = ranker_class(kind)
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in settings.items() if k in accepted}, **dict(options or {}))


def load_ranker(path: str | Path) -> CalibratedRanker:
    """Load any saved ranker, picking its class from the ``kind`` in ``ranker.json``."""
    kind = _read_meta(path)["kind"]
    if kind not in _CLASSES:
        raise ArtifactError(f"{path}: unknown ranker kind {kind!r}; this library reads {list(RANKER_KINDS)}. "
                            "Load it with the recsys version that saved it, or re-train.")
    return ranker_class(kind).load(path)
