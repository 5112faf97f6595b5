"""A DataFrame attribute that live updates extend in parts, joined into one frame on its first read."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["PartedFrame"]


class PartedFrame:
    """Descriptor: ``obj.attr = frame`` stores one part; :meth:`extended` adds a part to a copy's attribute without
    reading it (appending a live batch stays cheap); the first read concatenates the parts once and keeps the
    result. The parts live in ``obj.__dict__[key]``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        parts = obj.__dict__[self.key]
        if len(parts) > 1:
            parts = obj.__dict__[self.key] = (pd.concat(parts, ignore_index=True),)
        return parts[0]

    def __set__(self, obj: Any, value: pd.DataFrame) -> None:
        obj.__dict__[self.key] = (value,)

    def extended(self, new: Any, old: Any, part: pd.DataFrame) -> None:
        """Give ``new`` the parts of ``old`` plus ``part`` (``old`` is left as it is)."""
        new.__dict__[self.key] = (*old.__dict__[self.key], part)
