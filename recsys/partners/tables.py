"""The tables a partner report reads, from a Recommender (its serving log and catalogue) or from plain frames.

A report uses only the ``events`` rows whose ``media_id`` is the partner (its own traffic); the rest of the log
is read only as network-wide aggregates to compare against (lift).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError

__all__ = ["PartnerTables", "partner_tables", "partner_events", "window_length", "POSITIVE_EVENTS"]

POSITIVE_EVENTS = ("click", "cart", "fav", "purchase")  # the feature pipeline's default engagement events
_SHOWN = 20  # partner ids listed in an error


@dataclass(frozen=True)
class PartnerTables:
    """``events`` (user_id, item_id, timestamp, event_type, media_id), ``items`` (item_id and attributes such as
    category, brand, shop, price), optional ``users`` (user_id and profile columns) and ``social`` (user_id,
    friend_id), and which event types count as engagement, impression and purchase."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    social: pd.DataFrame | None = None
    positive_events: tuple[str, ...] = POSITIVE_EVENTS
    impression_event: str = "impression"
    purchase_event: str = "purchase"


def partner_tables(source: Any) -> PartnerTables:
    """:class:`PartnerTables` from a fitted :class:`~recsys.recommender.Recommender` (its serving log, users,
    social edges and whole catalogue, removed items included), a mapping with ``events`` and ``items`` (and
    optionally ``users``, ``social``) or a PartnerTables (returned as is)."""
    if isinstance(source, PartnerTables):
        return source
    if isinstance(source, Mapping):
        missing = [k for k in ("events", "items") if k not in source]
        if missing:
            raise DataValidationError(f"the tables given lack {missing}: pass a mapping with 'events' and 'items' "
                                      f"(and optionally 'users', 'social'); got keys {sorted(source)}")
        extra = {k: source[k] for k in ("users", "social") if source.get(k) is not None}
        return PartnerTables(events=source["events"], items=source["items"], **extra)
    ready = getattr(source, "_ready", None)
    if ready is None:
        raise DataValidationError(f"expected a Recommender, a mapping of tables or PartnerTables, got "
                                  f"{type(source).__name__}; load a model with recsys.load(uri) or pass "
                                  "{'events': ..., 'items': ...}")
    state = ready()
    pipe = state.pipeline
    return PartnerTables(events=state.tables["events"], items=state.catalogue.to_frame(alive_only=False),
                         users=state.tables.get("users"), social=state.tables.get("social"),
                         positive_events=tuple(pipe.positive_events),
                         impression_event=pipe.impression_event or "impression")


def partner_events(events: pd.DataFrame, media_id: str) -> pd.DataFrame:
    """The rows of ``events`` on partner ``media_id``; a DataValidationError names the known partners (and the
    closest spelling) when the log has no row on it, or says how to fix a log without a ``media_id`` column."""
    need = [c for c in ("user_id", "item_id", "timestamp", "event_type", "media_id") if c not in events.columns]
    if need:
        raise DataValidationError(f"the events table lacks columns {need} (it has {list(events.columns)}); a "
                                  "partner report needs user_id, item_id, timestamp, event_type and media_id")
    if not isinstance(media_id, str) or not media_id:
        raise DataValidationError(f"media_id must be a non-empty string, got {media_id!r}")
    mask = (events["media_id"].astype(object) == media_id).to_numpy(dtype=bool)
    if not mask.any():
        from recsys.feed.partners import closest_partner

        known = set(events["media_id"].dropna().astype(str).unique().tolist())
        guess = closest_partner(media_id, known)
        hint = f"; did you mean {guess!r}?" if guess else ""
        listed = ", ".join(repr(m) for m in sorted(known)[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")
        raise DataValidationError(f"partner {media_id!r} has no events in the log{hint} (partners with events: "
                                  f"{listed or 'none'}). Pass one of them")
    return events.loc[mask]


def window_length(window: Any) -> pd.Timedelta:
    """A positive window length from a Timedelta, a string such as ``"7D"`` / ``"12h"`` or a number of days."""
    try:
        if isinstance(window, (int, float, np.integer, np.floating)) and not isinstance(window, bool):
            td = pd.Timedelta(days=float(window))
        else:
            td = pd.Timedelta(window)
    except (ValueError, TypeError):
        td = None
    if td is None or pd.isna(td) or td <= pd.Timedelta(0):
        raise ConfigError(f"window must be a positive duration such as '7D', '12h' or a number of days, got {window!r}")
    return td
