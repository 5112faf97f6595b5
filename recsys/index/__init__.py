"""Item retrieval indexes: one interface (``ItemIndex``), an exact oracle and FAISS backends.

>>> from recsys.index import FaissIndex, SearchFilters
>>> idx = FaissIndex(factory="HNSW32", metric="cosine").build(item_vectors, item_ids)      # doctest: +SKIP
>>> scores, ids = idx.search(user_vectors, 100, SearchFilters(exclude=seen))      # doctest: +SKIP

FAISS is imported only when an index is built, searched or loaded.
"""

from recsys.index.auto import auto_index, candidate_factories
from recsys.index.base import ItemIndex, SearchFilters
from recsys.index.core import RebuildRecommendedWarning
from recsys.index.exact import ExactIndex
from recsys.index.faiss_index import FaissIndex
from recsys.index.filters import FilterConfig
from recsys.index.persistence import load_index, read_manifest
from recsys.index.registry import INDEX_KINDS, index_class
from recsys.index.tuning import tune_index

__all__ = ["INDEX_KINDS", "ExactIndex", "FaissIndex", "FilterConfig", "ItemIndex", "RebuildRecommendedWarning",
           "SearchFilters", "auto_index", "candidate_factories", "index_class", "load_index", "read_manifest",
           "tune_index"]
