"""Products to carry and partners to recruit over HTTP (:mod:`recsys.partners.selection`).

* ``GET /v1/partners/{media_id}/carry?n=50``: the items a partner does not carry yet, ranked by expected
  commission per 1,000 impressions to its audience. A partner key reads only its own ``media_id`` (403
  otherwise); the admin key reads any.
* ``GET /v1/partners/recruit?item_id=|shop=|brand=&n=20&by=commission``: the partners whose audiences would bring
  a merchant the most. **Admin key only**: every row is another partner's audience size and expected sales, which
  no partner may read of another (the same rule as the insight endpoints); the network's operator (who holds the
  admin key) is the one who recruits partners for merchants.

Answers carry ``model_version``; results are remembered per (version, query) for a few queries, since each one
scores an audience sample with the ranker (tenths of a second to seconds).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Query, Request

from recsys.service.context import ServiceError
from recsys.service.routes import _ERRORS, Caller, _admin, _ctx, _partner_media, _served

__all__ = ["router"]

router = APIRouter()
_MEMO_SIZE = 64
_memo: OrderedDict = OrderedDict()
_memo_lock = threading.Lock()


def _remembered(key: tuple, compute: Any) -> Any:
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    value = compute()
    with _memo_lock:
        _memo[key] = value
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return value


@router.get("/v1/partners/recruit", tags=["partners"], responses=_ERRORS)
def partners_recruit(who: Caller, request: Request, item_id: str | None = None, shop: str | None = None,
                     brand: str | None = None, n: int = Query(20, ge=1, le=500),
                     by: str = "commission") -> dict:
    """Partners to recruit for a merchant's item, shop or brand (exactly one); admin key only."""
    _admin(who, "partners to recruit (it shows several partners' audiences and expected sales)")
    if sum(v is not None for v in (item_id, shop, brand)) != 1:
        raise ServiceError(422, "pass exactly one of item_id, shop or brand",
                           "e.g. /v1/partners/recruit?brand=kalu")
    from recsys.partners.selection import partners_to_recruit

    served = _served(_ctx(request))
    item = _item_id(served.rec, item_id) if item_id is not None else None
    rows = _remembered((served.version, "recruit", item_id, shop, brand, n, by),
                       lambda: partners_to_recruit(served.rec, item_id=item, shop=shop, brand=brand, n=n, by=by))
    return {"item_id": item, "shop": shop, "brand": brand, "by": by, "model_version": served.version,
            "partners": rows}


@router.get("/v1/partners/{media_id}/carry", tags=["partners"], responses=_ERRORS)
def partner_carry(media_id: str, who: Caller, request: Request, n: int = Query(50, ge=1, le=500)) -> dict:
    """Items the partner does not carry yet, best expected commission per 1,000 impressions first; a partner key
    reads only its own."""
    from recsys.partners.selection import products_to_carry

    media = _partner_media(who, media_id)
    served = _served(_ctx(request))
    rows = _remembered((served.version, "carry", media, n), lambda: products_to_carry(served.rec, media, n=n))
    return {"media_id": media, "model_version": served.version, "items": rows}


def _item_id(rec: Any, raw: str) -> Any:
    """A query string's item id as the catalogue's type (int ids arrive as text)."""
    from recsys.ids import coerce_id, id_kind

    value, _ = coerce_id(raw, id_kind(rec._ready().catalogue.index), "item_id", "")
    return value
