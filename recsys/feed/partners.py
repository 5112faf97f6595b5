"""Partner separation: one partner's feed never widens to, or tells of, another partner's data.

* **Known partners** are those of the media table, the partner pools, the partner objectives and the
  serving log. A known partner without a pool is unrestricted (it sees the whole catalogue).
* **An unknown partner id** (a typo such as ``"kol-0 "`` or ``"KOL-0"``) never gets more than a known one:
  with ``unknown_partner="refuse"`` (the default) the request raises a DataValidationError naming the known
  partners and the closest match; with ``"shared"`` it is served only what *every* known partner may show,
  the intersection of their allowed sets, where a partner without a pool allows everything (so: the items
  in every pool; the whole catalogue when no partner has a pool; possibly nothing).
* **No partner** (``media_id=None``) follows ``no_partner``: ``"auto"`` (the default) refuses it when some
  partner's pool is restricted (not the whole catalogue, see :func:`restricted_partners`) and serves the
  catalogue when none is (then nothing can widen); ``"catalogue"`` (every item, for the owner's own pages and
  offline evaluation, chosen explicitly), ``"shared"`` (as an unknown partner) or ``"refuse"``.
* **Segments** that unlock invite-only items come from the users table for a known user (a different
  ``context['segment']`` is ignored, with a note); an unknown user's context segment counts only when the
  Recommender trusts the caller (``trust_context_segment=True``), otherwise it is ignored with a note.
* **Reasons** on partner P cite only the user's events on P (:func:`partner_items`); a log without
  partner ids (no ``media_id`` column, or none filled) and requests without a partner cite any event.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError

if TYPE_CHECKING:
    from recsys.feed.catalogue import Catalogue
    from recsys.feed.state import ServingState

__all__ = ["SHARED", "known_partners", "restricted_partners", "no_partner_mode", "closest_partner", "check_partner",
           "pool_key", "partner_pool", "request_segment", "partner_items", "citable_history"]

_SHOWN = 20  # known partner ids listed in an error
SHARED = ("shared",)  # the pool key of requests held to what every partner may show (never a partner id)


def known_partners(state: ServingState) -> frozenset[str]:
    """Partner ids this state knows: media table, pools, objectives and the serving log (cached per state)."""
    hit = state.filters_cache.get("known_partners")
    if hit is None:
        media = state.tables.get("media")
        table = media["media_id"].dropna().astype(str).tolist() if media is not None and "media_id" in media else []
        hit = frozenset(table) | set(state.pools) | set(state.objectives) | _log(state)[0]
        state.filters_cache["known_partners"] = hit
    return hit


def restricted_partners(state: ServingState) -> frozenset[str]:
    """Partners whose pool is not the whole catalogue (cached per state): those a request without a partner
    would widen past."""
    hit = state.filters_cache.get("restricted_partners")
    if hit is None:
        hit = frozenset(state.pools) - state.open_pools - whole_catalogue_pools(state.pools, state.catalogue)
        state.filters_cache["restricted_partners"] = hit
    return hit


def no_partner_mode(state: ServingState) -> str:
    """How ``media_id=None`` is served: ``no_partner``, with "auto" resolved to "refuse" when some partner's pool
    is restricted and to "catalogue" when none is."""
    mode = state.config.no_partner
    if mode == "auto":
        return "refuse" if restricted_partners(state) else "catalogue"
    return mode


def closest_partner(media_id: str, known: frozenset[str] | set[str]) -> str | None:
    """The known partner id ``media_id`` most likely means (same id up to case and spaces, else the most
    similar spelling), or None when none is close."""
    norm = media_id.strip().casefold()
    folded = {m.strip().casefold(): m for m in sorted(known, reverse=True)}  # the first id wins a tie
    if norm in folded:
        return folded[norm]
    close = difflib.get_close_matches(norm, sorted(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def check_partner(state: ServingState, media_id: str | None) -> str | None:
    """A note on how a request's partner is served (None when it is a known partner), or a
    DataValidationError when the configuration refuses it."""
    cfg = state.config
    known = known_partners(state)
    if media_id is None:
        mode = no_partner_mode(state)
        if mode == "refuse":
            why = (f"this Recommender serves partners ({_listed(known)}) and refuses requests without one "
                   "(no_partner='refuse')" if cfg.no_partner == "refuse" else
                   f"partners {_listed(restricted_partners(state))} have restricted pools and the whole catalogue "
                   "would widen what they may show (no_partner='auto')")
            raise DataValidationError(f"media_id is required: {why}. Pass the partner's media_id, or build "
                                      "it with no_partner='catalogue' for the network's own pages or offline "
                                      "evaluation (every item), or 'shared' (the items every partner may show)")
        return None if mode == "catalogue" else (
            f"no media_id: served only the {_shared_count(state)} items every partner may show (no_partner='shared')")
    if media_id in known:
        return None
    listed = _listed(known)
    guess = closest_partner(media_id, known)
    hint = f"; did you mean {guess!r}?" if guess is not None else ""
    if cfg.unknown_partner == "refuse":
        where = f"the known partners are {listed}" if known else "this Recommender knows no partners: leave media_id out"
        raise DataValidationError(f"unknown media_id {media_id!r}{hint} ({where}). Pass a known partner id, or build "
                                  "the Recommender with unknown_partner='shared' to serve unknown partners only the "
                                  "items every partner may show")
    return (f"unknown media_id {media_id!r}{hint}: served only the {_shared_count(state)} items every partner may "
            f"show (unknown_partner='shared'), default objective {cfg.default_objective!r}")


def _listed(known: frozenset[str]) -> str:
    return ", ".join(repr(m) for m in sorted(known)[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")


def _shared_pool(state: ServingState) -> np.ndarray | None:
    """Items every known partner may show: the intersection of the pools (None: no pool, nothing restricted)."""
    if not state.pools:
        return None
    hit = state.filters_cache.get("shared_pool")
    if hit is None:
        hit = np.logical_and.reduce(list(state.pools.values()))
        state.filters_cache["shared_pool"] = hit
    return hit


def _shared_count(state: ServingState) -> int:
    """Live items every partner may show, for the request's note (counted once per state, not per request)."""
    hit = state.filters_cache.get("shared_count")
    if hit is None:
        pool, live = _shared_pool(state), state.catalogue.alive
        hit = int(live.sum() if pool is None else (pool & live).sum())
        state.filters_cache["shared_count"] = hit
    return hit


def pool_key(state: ServingState, media_id: str | None) -> str | tuple | None:
    """The key of the pool a request on ``media_id`` is held to: the partner's id when it is known, None
    for no partner served the catalogue (:func:`no_partner_mode`), else :data:`SHARED` (so that caches keyed by it
    hold one entry for every unknown id)."""
    if media_id is None:
        return SHARED if no_partner_mode(state) == "shared" else None
    return media_id if media_id in known_partners(state) else SHARED


def partner_pool(state: ServingState, media_id: str | tuple | None) -> np.ndarray | None:
    """The pool mask a request on ``media_id`` (or a :func:`pool_key`) is held to (None: unrestricted). A known
    partner's own pool (none: unrestricted); an unknown partner, or no partner under ``no_partner='shared'``,
    the shared pool."""
    key = media_id if media_id == SHARED else pool_key(state, media_id)
    return _shared_pool(state) if key == SHARED else None if key is None else state.pools.get(key)


def request_segment(state: ServingState, row: int, context: dict | None, notes: list[str]) -> str:
    """The eligibility segment of a request: a known user's from the users table; an unknown user's from
    ``context['segment']`` only when ``trust_context_segment`` (else none). Ignored context goes in ``notes``."""
    given = (context or {}).get("segment")
    given = None if given is None or (isinstance(given, float) and np.isnan(given)) or given == "" else str(given)
    if row >= 0:
        seg = str(state.users.segments[row])
        if given is not None and given != seg:
            notes.append(f"context segment {given!r} ignored: a known user's segment comes from the users table "
                         f"({seg!r})" if seg else f"context segment {given!r} ignored: a known user's segment "
                         "comes from the users table (none)")
        return seg
    if given is None or state.config.trust_context_segment:
        return given or ""
    notes.append(f"context segment {given!r} ignored for an unknown user: build the Recommender with "
                 "trust_context_segment=True if the caller vouches for segments")
    return ""


def log_index(state: ServingState) -> dict | None:
    """Per (user row, partner) the items the user engaged with positively there (see :func:`_log`), or None when
    the serving log carries no partner ids."""
    return _log(state)[1]


def _log(state: ServingState) -> tuple[frozenset[str], dict | None]:
    """Partners of the serving log and, per (user row, partner), the items the user engaged with there
    (sorted keys and item ids); None when the log carries no partner ids. Cached while the log and the
    users stay the same objects (catalogue updates keep both)."""
    events, users = state.tables["events"], state.users
    hit = state.partner_log
    if hit is not None and hit[0] is events and hit[1] is users:
        return hit[2]
    media = events["media_id"] if "media_id" in events.columns else pd.Series(dtype=object)
    partners = frozenset(media.dropna().astype(str).unique().tolist())
    index = None
    if partners:
        positive = state.pipeline.positive_events
        keep = media.notna().to_numpy(dtype=bool, copy=True)
        if "event_type" in events.columns:
            keep &= events["event_type"].astype(str).isin(list(positive)).to_numpy()
        rows = users.rows(events["user_id"].to_numpy()[keep]) if keep.any() else np.zeros(0, np.int64)
        names = pd.Index(sorted(partners))
        codes = names.get_indexer(media[keep].astype(str).to_numpy())
        key = rows.astype(np.int64) * len(names) + codes
        ok = rows >= 0
        order = np.argsort(key[ok], kind="stable")
        index = {"codes": {m: i for i, m in enumerate(names)}, "keys": key[ok][order],
                 "items": events["item_id"].to_numpy()[keep][ok][order]}
    state.partner_log = (events, users, (partners, index))
    return partners, index


def partner_items(state: ServingState, row: int, media_id: str | None) -> np.ndarray | None:
    """Catalogue positions of the items user ``row`` engaged with on ``media_id`` (what a reason on that
    partner may cite); None when every event may be cited (no partner, or a log without partner ids)."""
    if media_id is None:
        return None
    index = _log(state)[1]
    if index is None:
        return None
    code = index["codes"].get(media_id)
    if row < 0 or code is None:
        return np.zeros(0, np.int64)
    key = row * len(index["codes"]) + code
    lo, hi = np.searchsorted(index["keys"], [key, key + 1])
    pos = state.catalogue.positions(index["items"][lo:hi])
    return np.unique(pos[pos >= 0])


def citable_history(state: ServingState, req) -> np.ndarray:
    """Catalogue positions of the request's user's history, oldest first, that a reason on its partner may cite
    (:func:`partner_items`): what "because you viewed" names and what the item-to-item channel starts from.
    Computed once per request (kept on ``req``)."""
    if req.citable is None:
        from recsys.feed.rules import in_sorted

        hist = np.zeros(0, np.int64)
        if state.vocab_to_pos is not None:
            hist = state.vocab_to_pos[state.users.history_items(req.row)]
            hist = hist[hist >= 0]
            allowed = partner_items(state, req.row, req.media_id)  # never cite another partner's events
            if allowed is not None:
                hist = hist[in_sorted(hist, allowed)]
        req.citable = hist
    return req.citable


def whole_catalogue_pools(pools: dict[str, np.ndarray], catalogue: Catalogue) -> frozenset:
    """Partners whose pool lists every live item of the catalogue (e.g. a content app with no restriction):
    their pool is "everything", so items added later without pool rows join it."""
    live = catalogue.alive
    return frozenset(m for m, mask in pools.items() if live.any() and bool(mask[live].all()))


def pool_positions(state: ServingState, media: str | None) -> np.ndarray:
    """Catalogue positions in the pool a request on ``media`` is held to (cached until the next update);
    only for a partner that has one (:func:`partner_pool`)."""
    key = ("pool_positions", media)
    hit = state.filters_cache.get(key)
    if hit is None:
        hit = state.filters_cache[key] = np.flatnonzero(partner_pool(state, media))
    return hit
