"""recsys: 猜你喜欢 (guess-you-like) product recommendation for affiliate media partners.

`import recsys` stays light: mlflow, fastapi and pyspark load only where used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
