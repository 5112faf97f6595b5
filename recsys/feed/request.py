"""One feed request as the engine carries it from validation to the returned rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Request"]


@dataclass
class Request:
    """One feed request (already validated)."""

    user_id: Any
    media_id: str | None
    k: int
    exclude: tuple = ()
    context: dict | None = None
    # filled by the engine
    row: int = -1
    segment: str = ""
    pool: Any = None  # the key of the pool it is held to (recsys.feed.partners.pool_key)
    path: str | None = None
    notes: list[str] = field(default_factory=list)
    citable: Any = None  # the history a reason may cite, once computed (recsys.feed.partners.citable_history)
    reached: Any = None  # what the item table reaches from it, once computed (recsys.feed.item_score.request_reach)
