"""Hyperparameters of a fitted-style object, read one way (scikit-learn's convention).

Constructors store their arguments as public attributes and ``fit`` adds learned state under names
that end in ``_`` (``items_``); private helpers start with ``_``. What is left is the configuration,
which reports, ``ranker.json`` and the feature pipeline's JSON save, and which ``cls(**params)`` rebuilds.
"""

from __future__ import annotations

from typing import Any

__all__ = ["hyperparameters"]


def hyperparameters(obj: object) -> dict[str, Any]:
    """The public, non-learned attributes of ``obj`` in assignment order; tuples become lists (JSON)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(obj).items()
            if not k.endswith("_") and not k.startswith("_")}
