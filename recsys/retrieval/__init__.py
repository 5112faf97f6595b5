"""Item retrieval indexes: one interface (``ItemIndex``), an exact oracle and FAISS backends.

>>> from recsys.retrieval import FaissIndex, SearchFilters
>>> idx = FaissIndex("HNSW32", metric="cosine").build(item_vectors, item_ids)      # doctest: +SKIP
>>> scores, ids = idx.search(user_vectors, 100, SearchFilters(exclude=seen))      # doctest: +SKIP

FAISS is imported only when an index is built, searched or loaded.
"""

from recsys.retrieval.base import ItemIndex, SearchFilters
from recsys.retrieval.core import RebuildRecommendedWarning
from recsys.retrieval.exact import ExactIndex
from recsys.retrieval.faiss_index import FaissIndex
from recsys.retrieval.filters import FilterConfig
from recsys.retrieval.persistence import load_index, read_manifest
from recsys.retrieval.tuning import auto_index, candidate_factories, tune_index

__all__ = ["ExactIndex", "FaissIndex", "FilterConfig", "ItemIndex", "RebuildRecommendedWarning", "SearchFilters",
           "auto_index", "candidate_factories", "load_index", "read_manifest", "tune_index"]
