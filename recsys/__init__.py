"""recsys: 猜你喜欢 (guess-you-like) product recommendation for affiliate media partners.

`import recsys` stays light: torch, faiss, mlflow, fastapi and pyspark load only where used.
``recsys.load(path_or_uri)`` and ``recsys.Recommender`` are resolved on first use.
"""

from recsys.lazy import lazy_exports
from recsys.version import __version__

__all__ = ["__version__", "load", "Recommender"]

__getattr__, __dir__ = lazy_exports(__name__, {"load": "recsys.loading", "Recommender": "recsys.recommender"})
del lazy_exports
