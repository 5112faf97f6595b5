"""The objectives a media partner can rank by, and their accepted spellings.

The names live here, below the rankers, because the media table's schema checks them when data is loaded;
:mod:`recsys.models.rankers.objectives` turns them into scores.
"""

from __future__ import annotations

from recsys.errors import ConfigError

__all__ = ["OBJECTIVES", "normalise_objective"]

OBJECTIVES = ("clicks", "purchases", "gmv", "commission")
_SYNONYMS = {"click": "clicks", "ctr": "clicks", "traffic": "clicks", "purchase": "purchases", "orders": "purchases",
             "conversions": "purchases", "ctcvr": "purchases", "sales": "gmv", "revenue": "gmv",
             "expected_commission": "commission", "earnings": "commission", "value": "commission"}


def normalise_objective(name: str) -> str:
    """The canonical objective for a name or common synonym ('ctr' -> 'clicks', 'earnings' -> 'commission')."""
    key = str(name).strip().lower()
    key = _SYNONYMS.get(key, key)
    if key not in OBJECTIVES:
        raise ConfigError(f"objective {name!r} is unknown; choose from {list(OBJECTIVES)}.")
    return key
