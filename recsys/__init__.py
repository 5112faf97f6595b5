"""recsys: 猜你喜欢 (guess-you-like) product recommendation for affiliate media partners.

`import recsys` stays light: torch, faiss, mlflow, fastapi and pyspark load only where used.
``recsys.load(path_or_uri)`` and ``recsys.Recommender`` are resolved on first use.
"""

from recsys.version import __version__

__all__ = ["__version__", "load", "Recommender"]


def __getattr__(name: str):
    if name == "load":
        from recsys.storage.bundle import load

        return load
    if name == "Recommender":
        from recsys.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'recsys' has no attribute {name!r}")
