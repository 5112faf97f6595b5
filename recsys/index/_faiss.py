"""The one place FAISS is imported (lazily, so ``import recsys`` stays light), and the parts of a FAISS
index that the search knobs apply to.

Before FAISS's OpenMP runtime starts, ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (an explicit
setting wins): busy-waiting OpenMP threads made FAISS training 10-30x slower whenever the
machine had more runnable threads than cores (measured on a shared 2-core box: 9 s -> 0.3 s).
"""

from __future__ import annotations

import os
import sys

from recsys.errors import MissingDependencyError


def import_faiss():
    """The ``faiss`` module, or MissingDependencyError with the install command."""
    if "faiss" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import faiss
    except ImportError as e:
        raise MissingDependencyError(f"FAISS is required for item indexes: pip install faiss-cpu ({e})") from None
    return faiss


def parts(index) -> dict:
    """The parts of a FAISS index the knobs apply to: {"hnsw": ..., "ivf": ..., "refine": ...}."""
    faiss = import_faiss()
    out: dict = {"refine": None, "ivf": None, "hnsw": None}
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexRefine):
        out["refine"] = base
        base = faiss.downcast_index(base.base_index)
    out["ivf"] = faiss.try_extract_index_ivf(base)
    if isinstance(base, faiss.IndexHNSW):
        out["hnsw"] = base
    return out


def knob_names(index) -> list[str]:
    """The tunable knobs of an index, in tuning order."""
    p = parts(index)
    return [name for name, part in (("efSearch", p["hnsw"]), ("nprobe", p["ivf"]), ("k_factor", p["refine"]))
            if part is not None]


def faiss_index_parts_pq(index) -> list:
    """Sub-indexes that would run polysemous training (IndexPQ, IndexIVFPQ)."""
    faiss = import_faiss()
    out, base = [], faiss.downcast_index(index)
    if isinstance(base, faiss.IndexRefine):
        base = faiss.downcast_index(base.base_index)
    ivf = faiss.try_extract_index_ivf(base)
    for cand in (base, ivf):
        if cand is not None and hasattr(cand, "do_polysemous_training"):
            out.append(cand)
    return out
