"""The one rule for whether a progress bar shows: for a person at a terminal, never in CI or in a log file.

Every bar in recsys (data simulation and loading, training, ESMM epochs, evaluation) asks
:func:`show_progress`, so ``CI=1`` quiets them all alike.
"""

from __future__ import annotations

import os
import sys

__all__ = ["show_progress"]

_TRUTHY = frozenset({"1", "true", "yes"})


def show_progress(requested: bool | None = None) -> bool:
    """Whether to draw a progress bar: ``requested`` when given (True or False wins), else automatic.

    Automatic means on only when stderr is a terminal and ``$CI`` is not truthy (``1``, ``true`` or
    ``yes``, any case), so bars stay out of CI logs, pipes and files.
    """
    if requested is not None:
        return bool(requested)
    return os.environ.get("CI", "").lower() not in _TRUTHY and sys.stderr.isatty()
