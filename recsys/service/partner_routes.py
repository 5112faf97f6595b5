"""A partner's audience insight and lifecycle funnel over HTTP (:mod:`recsys.partners`).

* ``GET /v1/partners/{media_id}/insight?min_group=10&top_n=10&influence_window=7D``:
  :func:`recsys.partners.audience_insight` of the served model's log.
* ``GET /v1/partners/{media_id}/funnel?brand=A&brand=B&window=7D&windows=4&top_brands=5&end=...``:
  :func:`recsys.partners.lifecycle_funnel`.

A partner key reads only its own ``media_id`` (403 otherwise) and may not lower ``min_group`` below
:data:`~recsys.partners.DEFAULT_MIN_GROUP` (the privacy floor; 403); the admin key reads any partner with any
``min_group``. Answers are the functions' JSON plus ``model_version``; a few recent answers are remembered per
serving state (a catalogue update or posted events make a new state, so never a stale answer).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Query, Request

from recsys.service.context import ServiceError
from recsys.service.routes import _ERRORS, Caller, _ctx, _partner_media, _served

__all__ = ["router"]

router = APIRouter()
_MEMO_SIZE = 32
_memo: OrderedDict = OrderedDict()
_memo_lock = threading.Lock()


def _remembered(state: Any, key: tuple, compute: Any) -> dict:
    """``compute()`` once per (serving state, key) among the last few; the state object is kept with the answer,
    so an id reused by a later state never matches."""
    full = (id(state), *key)
    with _memo_lock:
        hit = _memo.get(full)
        if hit is not None and hit[0] is state:
            _memo.move_to_end(full)
            return hit[1]
    value = compute()
    with _memo_lock:
        _memo[full] = (state, value)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return value


@router.get("/v1/partners/{media_id}/insight", tags=["partners"], responses=_ERRORS)
def partner_insight(media_id: str, who: Caller, request: Request, min_group: int | None = Query(None, ge=1),
                    top_n: int = Query(10, ge=1, le=100), influence_window: str = "7D") -> dict:
    """The partner's audience insight (sizes, profile, spending power, top categories/brands/shops with lift,
    rates with intervals, merchants, influencers); a partner key reads only its own."""
    from recsys.partners import DEFAULT_MIN_GROUP, audience_insight

    media = _partner_media(who, media_id)
    if min_group is None:
        min_group = DEFAULT_MIN_GROUP
    elif min_group < DEFAULT_MIN_GROUP and not who.is_admin:
        raise ServiceError(403, f"min_group={min_group} is below the privacy floor of {DEFAULT_MIN_GROUP} users "
                                "a partner key may ask for", f"leave min_group out or pass {DEFAULT_MIN_GROUP} "
                                                             "or more")
    served = _served(_ctx(request))
    state = served.rec._ready()
    out = _remembered(state, ("insight", media, min_group, top_n, influence_window),
                      lambda: audience_insight(served.rec, media, min_group=min_group, top_n=top_n,
                                               influence_window=influence_window))
    return {**out, "model_version": served.version}


@router.get("/v1/partners/{media_id}/funnel", tags=["partners"], responses=_ERRORS)
def partner_funnel(media_id: str, who: Caller, request: Request, brand: list[str] | None = Query(None),
                   window: str = "7D", windows: int = Query(4, ge=1, le=104), top_brands: int = Query(5, ge=1, le=50),
                   end: str | None = None) -> dict:
    """Brands' lifecycle funnel on the partner (users per stage and window, flows between windows); a partner
    key reads only its own."""
    from recsys.partners import lifecycle_funnel, partner_tables

    media = _partner_media(who, media_id)
    served = _served(_ctx(request))
    state = served.rec._ready()

    def compute() -> dict:
        t = partner_tables(served.rec)
        brands = _brands(t.items, brand) if brand else None
        return lifecycle_funnel(t.events, t.items, media_id=media, brands=brands, window=window, windows=windows,
                                end=end, top_brands=top_brands, positive_events=t.positive_events,
                                purchase_event=t.purchase_event)

    out = _remembered(state, ("funnel", media, tuple(brand or ()), window, windows, top_brands, end), compute)
    return {**out, "model_version": served.version}


def _brands(items: Any, given: list[str]) -> list:
    """Brands from a query string as the items table spells them (a numeric brand column arrives as text)."""
    col = items["brand"]
    if col.dtype == object:
        return given
    by_text = {str(b): b for b in col.dropna().unique().tolist()}
    return [by_text.get(b, b) for b in given]
