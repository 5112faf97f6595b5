"""The index kinds, in one place: kind -> class, imported on first use.

``load_index`` builds the class named by a saved manifest's ``kind`` through :func:`index_class`, so
persistence needs no import of the concrete indexes. A new backend subclasses
:class:`~recsys.index.core.IndexBase`, sets ``kind``, implements the engine hooks and
``_from_manifest``, and is added to ``_CLASSES`` below.
"""

from __future__ import annotations

from pkgutil import resolve_name

from recsys.errors import ConfigError

_CLASSES = {
    "exact": "recsys.index.exact:ExactIndex",
    "faiss": "recsys.index.faiss_index:FaissIndex",
}
INDEX_KINDS: tuple[str, ...] = tuple(_CLASSES)
# what a config may name: a saved kind, or "auto" (recsys.index.auto picks the kind that fits a memory budget)
INDEX_CHOICES: tuple[str, ...] = (*INDEX_KINDS, "auto")


def index_class(kind: str) -> type:
    """The index class of ``kind`` (its module is imported now); ConfigError for an unknown kind."""
    if kind not in _CLASSES:
        raise ConfigError(f"unknown index kind {kind!r}; expected one of {list(INDEX_KINDS)} (a new index backend "
                          "is registered in recsys/index/registry.py).")
    return resolve_name(_CLASSES[kind])
