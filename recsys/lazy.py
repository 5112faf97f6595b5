"""Lazy package exports: a name is imported from its module on first use, so importing a package stays light.

Every package that defers heavy imports (``recsys``, ``recsys.evaluation``, ``recsys.tracking``,
``recsys.models.rankers``) uses the one helper here::

    __getattr__, __dir__ = lazy_exports(__name__, {"Recommender": "recsys.recommender"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` that load each name from its module.

    ``exports`` maps a public name to the module that defines it (absolute, or relative to ``package``
    such as ``".topk"``). A loaded name is cached in the package's globals, so later lookups cost
    nothing; an unknown name raises the usual ``AttributeError``.
    """
    where = dict(exports)
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
