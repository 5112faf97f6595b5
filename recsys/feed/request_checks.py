"""Checks of a feed request's arguments (k, partner, exclusions, context, item ids), before any work starts.

Each failure is a typed error that names the argument, what arrived and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.feed.state import ServingState
from recsys.ids import check_text, coerce_id, coerce_ids, coerce_media, id_kind

__all__ = ["MAX_K", "UNKNOWN_USER", "check_k", "check_media", "item_ids", "check_exclude", "check_context", "missing"]

MAX_K = 10_000  # the longest feed one request may ask for (recommend_ids allocates n_users x k)


def check_k(k: Any, what: str = "k", maximum: int | None = MAX_K) -> int:
    """``k`` (or ``chunk_size``) as an int in [1, maximum]; anything else is a DataValidationError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataValidationError(f"{what} must be a positive int, got {type(k).__name__} {k!r}")
    if k < 1:
        raise DataValidationError(f"{what} must be >= 1, got {k}; ask for at least one item")
    if maximum is not None and k > maximum:
        raise DataValidationError(f"{what} must be <= {maximum:,} (recsys.recommender.MAX_K), got {k:,}; a feed "
                                  f"never holds more items than that: page through a long list instead")
    return int(k)


UNKNOWN_USER = "served as an unknown user"


def check_media(media_id: Any, notes: list[str]) -> str | None:
    media, note = coerce_media(media_id)
    notes.extend([note] if note else [])
    return media


def item_ids(state: ServingState, ids: Any, notes: list[str] | None = None) -> tuple:
    """Item ids read as the catalogue's ids (:func:`recsys.ids.coerce_id`). With ``notes`` (``exclude``) ids
    that are not the catalogue's are dropped and named there; without (updates) they stay, unknown, in place."""
    kind = id_kind(state.catalogue.index)
    if notes is None:
        return tuple(coerce_id(v, kind, "item_id", "ignored")[0] for v in check_exclude(ids))
    out, more = coerce_ids(check_exclude(ids), kind, "exclude item_id")
    notes.extend(more)
    return out


def check_exclude(exclude: Any) -> tuple:
    if exclude is None:
        return ()
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
        raise DataValidationError(f"exclude must be a collection of item ids, got {type(exclude).__name__} "
                                  f"{exclude!r}; wrap a single id: exclude=[{exclude!r}]")
    if isinstance(exclude, Mapping):
        raise DataValidationError(f"exclude must be a collection of item ids, got a {type(exclude).__name__}; a "
                                  "dict user_id -> item ids is for recommend_batch / recommend_ids, per user")
    return tuple(exclude)


def missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA: a context field not given (an empty cell of a users frame)."""
    return (value is None or value is pd.NA or value is pd.NaT
            or isinstance(value, (float, np.floating)) and bool(np.isnan(value)))


def check_context(context: Any, user_kind: str = "any") -> dict | None:
    if context is None:
        return None
    if not isinstance(context, Mapping):
        raise DataValidationError(f"context must be a dict such as {{'segment': 'vip', 'timestamp': ...}}, got "
                                  f"{type(context).__name__}")
    out = {key: value for key, value in context.items() if not missing(value)}  # NaN / NA / None: not given
    for key, value in out.items():
        if not isinstance(key, str):
            raise DataValidationError(f"context keys must be str (column names such as 'segment'), got "
                                      f"{type(key).__name__} {key!r}")
        check_text(key, "context key")
        if isinstance(value, str):
            check_text(value, f"context[{key!r}]")
    if out.get("timestamp") is not None:
        try:
            out["timestamp"] = pd.Timestamp(out["timestamp"])
        except (ValueError, TypeError):
            raise DataValidationError(f"context['timestamp'] must be a time (datetime, pandas Timestamp or ISO "
                                      f"string such as '2026-01-14 12:00'), got {out['timestamp']!r}") from None
    friends = out.get("friends")
    if friends is not None:
        if isinstance(friends, (str, bytes)) or not isinstance(friends, Iterable):
            raise DataValidationError(f"context['friends'] must be a list of user ids, got {type(friends).__name__} "
                                      f"{friends!r}; wrap a single id: {{'friends': [{friends!r}]}}")
        # user ids read as the model's (recsys.ids); one that is not stays as given and matches no one
        out["friends"] = tuple(coerce_id(f, user_kind, "context['friends'] entry", "ignored")[0] for f in friends)
    return out
