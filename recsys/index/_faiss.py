"""The one place FAISS is imported (lazily, so ``import recsys`` stays light).

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
