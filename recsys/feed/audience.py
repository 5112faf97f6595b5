"""A partner's audience: the users a batch job scores for it, read from the serving log.

The rule (:func:`audience`): the known users with at least one *positive* event (the feature pipeline's
``positive_events``: click, cart, fav, purchase by default; impressions do not count) whose ``media_id`` is the
partner. A log that carries no partner ids at all (no ``media_id`` column, or none filled) cannot tell partners
apart, so there every partner's audience is every user with a positive event, the same rule reasons follow
(:func:`recsys.feed.partners.partner_items`). Without a partner: every known user (users table and log).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.feed.partners import closest_partner, known_partners

if TYPE_CHECKING:
    from recsys.feed.state import ServingState

__all__ = ["audience", "partners", "pool"]

_SHOWN = 20  # known partner ids listed in an error


def partners(state: ServingState) -> list[str]:
    """Every partner the state knows (media table, pools, objectives, serving log), sorted."""
    return sorted(known_partners(state))


def audience(state: ServingState, media_id: str | None) -> np.ndarray:
    """The sorted, unique user ids of ``media_id``'s audience (see the module docstring for the rule);
    ``None``: every known user. An unknown partner raises DataValidationError naming the known ones."""
    ids = state.users.ids
    if media_id is None:
        return _sorted_ids(ids.to_numpy())
    _known(state, media_id, "audience")
    events = state.tables["events"]
    keep = events["event_type"].astype(str).isin(list(state.pipeline.positive_events)).to_numpy(dtype=bool, copy=True)
    media = events["media_id"] if "media_id" in events.columns else None
    if media is not None and media.notna().any():
        keep &= (media.astype(object) == media_id).to_numpy(dtype=bool)
    users = pd.Index(pd.unique(events["user_id"].to_numpy()[keep]))
    return _sorted_ids(users[ids.get_indexer(users) >= 0].to_numpy())


def pool(state: ServingState, media_id: str) -> np.ndarray:
    """The live item ids partner ``media_id`` may show (its pool; the whole live catalogue when unrestricted), in
    catalogue order. Stock and segments are per request and not applied. An unknown partner raises
    DataValidationError (as :func:`audience`)."""
    from recsys.feed.partners import partner_pool

    _known(state, media_id, "pool")
    mask = state.catalogue.alive.copy()
    allowed = partner_pool(state, media_id)
    if allowed is not None:
        mask[: len(allowed)] &= allowed[: len(mask)]
        mask[len(allowed):] = False
    return state.catalogue.ids[mask]


def _known(state: ServingState, media_id: object, what: str) -> None:
    """DataValidationError naming the known partners (and the closest) unless ``media_id`` is one of them."""
    known = known_partners(state)
    if not isinstance(media_id, str) or media_id not in known:
        guess = closest_partner(str(media_id), known)
        hint = f"; did you mean {guess!r}?" if guess is not None else ""
        listed = ", ".join(repr(m) for m in sorted(known)[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")
        raise DataValidationError(f"unknown media_id {media_id!r}{hint}: it has no {what} (the known partners "
                                  f"are {listed or 'none'}). Pass a known partner id")


def _sorted_ids(values: np.ndarray) -> np.ndarray:
    """Unique ids in sorted order: numbers by value, strings by code point (mixed: numbers first)."""
    if values.dtype != object:
        return np.unique(values)
    uniq = list(dict.fromkeys(values.tolist()))
    return np.asarray(sorted(uniq, key=lambda v: (isinstance(v, str), v)), dtype=object)
