"""The service's endpoints (versioned ``/v1``), the probes and ``/metrics``.

Every answer that comes from a model carries ``model_version``: the version that produced it, read once per
request from the holder (a swap in the middle of a request never mixes two versions). A partner key reads
and writes only its own partner's data (403 otherwise); the catalogue and the models are the admin's.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from recsys.service.context import ServiceContext, ServiceError
from recsys.service.holder import UpdateLogFull
from recsys.service.keys import Principal
from recsys.service.schemas import (
    SERVER_SIDE_CONTEXT,
    AddItemsRequest,
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    FeedResponse,
    RecommendRequest,
    ReloadRequest,
    RemoveItemsRequest,
    SimilarRequest,
    StockRequest,
    UpdateResponse,
)
from recsys.service.sync import apply_update

__all__ = ["router"]

router = APIRouter()
_ERRORS = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
           503: {"model": ErrorResponse}}


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The request's principal from ``Authorization: Bearer KEY`` (401 without a known key). Async: the check takes
    microseconds, and a sync dependency would cost every request a hop to the thread pool."""
    principal = _ctx(request).authenticate(authorization)
    request.state.partner = principal.label  # the metrics label (never the key)
    return principal


Caller = Annotated[Principal, Depends(caller)]


def _admin(who: Principal, what: str) -> None:
    if not who.is_admin:
        raise ServiceError(403, f"{what} needs the admin key; partner {who.partner!r}'s key may not do it",
                           "ask the service's operator (who holds the admin key)")


def _partner_media(who: Principal, media_id: str | None) -> str | None:
    """The partner a request reads: a partner key's own (when omitted), never another's (403)."""
    if who.role != "partner":
        return media_id
    if media_id is None:
        return who.partner
    if media_id != who.partner:
        raise ServiceError(403, f"this key belongs to partner {who.partner!r}; it may not read the data of "
                                f"partner {media_id!r}", f"send media_id {who.partner!r} (or leave it out), or use "
                                                         f"the key of partner {media_id!r}")
    return media_id


def _served(ctx: ServiceContext):
    """The version to answer from, once it holds everything journaled so far (other workers' updates)."""
    if not ctx.holder.ready:
        raise ServiceError(503, "no model is loaded yet", "retry shortly", {"Retry-After": "1"})
    if ctx.sync is not None and ctx.sync.behind():
        ctx.holder.locked(ctx.sync.catch_up)
    return ctx.holder.current()


def _feed_content(ctx: ServiceContext, who: Principal, feed: Any, version: str, notes: list[str]) -> dict:
    out = feed.to_dict()
    out["model_version"] = version
    out["notes"] = notes + out["notes"]
    if out["fallback"]:
        ctx.metrics.fallbacks.labels(who.label, out["fallback"]).inc()
    return out


def _feed(ctx: ServiceContext, who: Principal, feed: Any, version: str, notes: list[str]) -> JSONResponse:
    return JSONResponse(_feed_content(ctx, who, feed, version, notes))


def recommend_content(ctx: ServiceContext, who: Principal, body: RecommendRequest) -> dict:
    """The JSON answer of ``POST /v1/recommend`` for a validated ``body`` from ``who`` (the FastAPI route below
    and the fast path in :mod:`recsys.service.fast` both answer with it)."""
    media = _partner_media(who, body.media_id)
    context, notes = dict(body.context or {}), []
    for key in SERVER_SIDE_CONTEXT:
        if context.pop(key, None) is not None:
            notes.append(f"context {key!r} ignored: the service takes eligibility from its own users table")
    served = _served(ctx)
    feed = served.rec.recommend(body.user_id, k=body.k, media_id=media, exclude=body.exclude,
                                context=context or None)
    return _feed_content(ctx, who, feed, served.version, notes)


@router.post("/v1/recommend", response_model=FeedResponse, responses=_ERRORS, tags=["feeds"])
def recommend(body: RecommendRequest, who: Caller, request: Request) -> Any:
    """A partner's feed for one user: ``k`` items, without ``exclude``, with the notes and fallback."""
    return JSONResponse(recommend_content(_ctx(request), who, body))


@router.post("/v1/similar", response_model=FeedResponse, responses=_ERRORS, tags=["feeds"])
def similar(body: SimilarRequest, who: Caller, request: Request) -> Any:
    """Items close to ``item_id`` within the partner's pool."""
    ctx = _ctx(request)
    served = _served(ctx)
    feed = served.rec.similar_items(body.item_id, k=body.k, media_id=_partner_media(who, body.media_id))
    return _feed(ctx, who, feed, served.version, [])


def _update(ctx: ServiceContext, kind: str, payload: dict) -> UpdateResponse:
    """A catalogue update: with a journal, journaled (durable, every worker applies it) and applied here; without
    one, applied here and kept in the holder's bounded in-memory log (replayed onto swapped-in versions)."""
    _served(ctx)
    try:
        if ctx.sync is not None:
            changed, served = ctx.holder.update(kind, lambda rec: ctx.sync.update(rec, kind, payload), replay=False)
        else:
            changed, served = ctx.holder.update(kind, lambda rec: apply_update(rec, kind, payload))
    except UpdateLogFull as e:
        raise ServiceError(503, str(e), "start the service with --journal PATH") from None
    return UpdateResponse(model_version=served.version, changed=int(changed or 0))


@router.post("/v1/catalogue/items", response_model=UpdateResponse, responses=_ERRORS, tags=["catalogue"])
def add_items(body: AddItemsRequest, who: Caller, request: Request) -> UpdateResponse:
    """Add or replace items (admin); ``changed``: how many. Kept across model swaps (replayed)."""
    _admin(who, "changing the catalogue")
    return _update(_ctx(request), "add_items", {"items": body.items, "media_pools": body.media_pools})


@router.post("/v1/catalogue/remove", response_model=UpdateResponse, responses=_ERRORS, tags=["catalogue"])
def remove_items(body: RemoveItemsRequest, who: Caller, request: Request) -> UpdateResponse:
    """Remove items from every feed (admin); unknown ids are ignored; ``changed``: how many were removed."""
    _admin(who, "changing the catalogue")
    return _update(_ctx(request), "remove_items", {"item_ids": list(body.item_ids)})


@router.post("/v1/catalogue/stock", response_model=UpdateResponse, responses=_ERRORS, tags=["catalogue"])
def set_stock(body: StockRequest, who: Caller, request: Request) -> UpdateResponse:
    """Mark items in or out of stock (admin); feeds follow at once."""
    _admin(who, "changing the catalogue")
    return _update(_ctx(request), "set_in_stock", {"item_ids": list(body.item_ids), "in_stock": body.in_stock})


@router.post("/v1/events", response_model=EventsResponse, responses=_ERRORS, tags=["events"])
def post_events(body: EventsRequest, who: Caller, request: Request) -> EventsResponse:
    """Clicks, carts, favs and purchases: journaled (durable) before the reply, then applied to the model."""
    ctx = _ctx(request)
    if ctx.journal is None:
        raise ServiceError(503, "this service keeps no event journal, so it cannot accept events",
                           "start it with --journal PATH (or set RECSYS_EVENT_JOURNAL)")
    rows = [dict(r) for r in body.events]
    if who.role == "partner":
        for n, row in enumerate(rows):
            if row.get("media_id") is None:
                row["media_id"] = who.partner  # a partner's events happened on that partner
            media = row["media_id"]
            if media != who.partner:
                raise ServiceError(403, f"events[{n}].media_id is {media!r}; partner {who.partner!r}'s key may "
                                        "post only its own events", f"send media_id {who.partner!r} or leave it out")
    # observe validates the whole batch (a bad row: DataValidationError naming it, 422, nothing applied), journals
    # the new rows durably, then applies them; under the holder's lock, so a swap replays them from the journal
    def apply(rec: Any) -> int:  # first what other workers journaled (an item one of them added), then this batch
        ctx.sync.catch_up(rec)
        return rec.observe(rows, journal=ctx.journal)

    accepted, served = ctx.holder.update("events", apply, replay=False)
    return EventsResponse(model_version=served.version, accepted=int(accepted))


PAGE_MAX = 10_000  # ids per page of an audience or a pool


def _page(ids: Any, media: str, version: str, offset: int, limit: int) -> dict:
    if offset < 0 or not 1 <= limit <= PAGE_MAX:
        raise ServiceError(422, f"offset must be >= 0 and limit in 1..{PAGE_MAX}; got offset={offset}, limit={limit}",
                           "page through with offset and a limit of at most 10000")
    return {"media_id": media, "model_version": version, "total": len(ids), "offset": offset,
            "ids": ids[offset:offset + limit].tolist()}


@router.get("/v1/partners/{media_id}/audience", tags=["partners"], responses=_ERRORS)
def partner_audience(media_id: str, who: Caller, request: Request, offset: int = 0, limit: int = 1000) -> dict:
    """The partner's users (known users with a positive event on it, sorted), a page at a time; a partner key
    reads only its own."""
    ctx = _ctx(request)
    media = _partner_media(who, media_id)
    served = _served(ctx)
    return _page(served.rec.audience(media), media, served.version, offset, limit)


@router.get("/v1/partners/{media_id}/pool", tags=["partners"], responses=_ERRORS)
def partner_pool(media_id: str, who: Caller, request: Request, offset: int = 0, limit: int = 1000) -> dict:
    """The live items the partner may show (its pool, before stock and segment rules), a page at a time; a partner
    key reads only its own."""
    ctx = _ctx(request)
    media = _partner_media(who, media_id)
    served = _served(ctx)
    return _page(served.rec.pool(media), media, served.version, offset, limit)


@router.get("/v1/model", tags=["models"])
def model_status(who: Caller, request: Request) -> dict:
    """What is serving: the version and when it loaded; the admin also sees the source, the last reload and the
    refused versions with why (a partner key sees the version and its own partner only)."""
    ctx = _ctx(request)
    status = ctx.holder.status()
    if ctx.holder.ready:
        status["partners"] = ctx.holder.current().rec.partners() if who.is_admin else [who.partner]
    if not who.is_admin:
        status = {k: status.get(k) for k in ("ready", "model_version", "model_name", "loaded_at", "partners")}
    return status


@router.post("/v1/admin/reload", tags=["models"], responses=_ERRORS)
async def reload(who: Caller, request: Request, body: ReloadRequest | None = None) -> Any:
    """Load the source's current version (or ``model``) in the background, verify, warm and swap it in; a
    version that fails is refused (409) and the old one keeps serving. ``wait=false``: 202 at once."""
    _admin(who, "reloading the model")
    body = body or ReloadRequest()
    fut = _ctx(request).holder.reload(body.model)
    if not body.wait:
        return JSONResponse({"result": "started"}, status_code=202)
    result = await asyncio.wrap_future(fut)
    return JSONResponse(result, status_code=409 if result["result"] == "refused" else 200)


@router.get("/healthz", tags=["probes"])
def healthz() -> dict:
    """Alive (answers while the process runs)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["probes"])
def readyz(request: Request) -> Response:
    """Ready: a model is loaded and warmed (503 before, and from the moment SIGTERM arrived)."""
    ctx = _ctx(request)
    holder = ctx.holder
    if ctx.shutting_down.is_set():
        return JSONResponse({"status": "shutting down"}, status_code=503)
    if not holder.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "model_version": holder.current().version})


@router.get("/metrics", tags=["probes"])
def metrics(request: Request) -> Response:
    """Prometheus metrics (see :mod:`recsys.service.metrics`)."""
    ctx = _ctx(request)
    if ctx.limits is not None:
        ctx.metrics.queue_depth.set(ctx.limits.depth())
        ctx.metrics.in_flight.set(ctx.limits.running())
    body, content_type = ctx.metrics.render()
    return Response(body, media_type=content_type)
