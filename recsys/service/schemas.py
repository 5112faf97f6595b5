"""Request and response bodies of the HTTP service (pydantic), as the OpenAPI page at ``/docs`` shows them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RecommendRequest", "FeedItem", "FeedResponse", "SimilarRequest", "AddItemsRequest", "RemoveItemsRequest",
           "StockRequest", "UpdateResponse", "EventsRequest", "EventsResponse", "ReloadRequest", "ErrorResponse",
           "SERVER_SIDE_CONTEXT"]

Id = int | str

# context keys that decide eligibility: the service takes them from its own data, never from the caller
SERVER_SIDE_CONTEXT = ("segment", "eligibility")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Body):
    user_id: Id = Field(description="The user (ids are read the way the model's ids are typed).")
    media_id: str | None = Field(None, description="The partner whose feed this is; a partner key may omit it "
                                                   "(its own partner is used) and may name only its own.")
    k: int = Field(20, ge=1, le=10_000, description="Items in the feed.")
    exclude: list[Id] = Field(default_factory=list, description="Item ids not to show (e.g. already on the page).")
    context: dict[str, Any] | None = Field(None, description="Request extras: profile fields of a new user, "
                                                             "'timestamp', 'friends'. 'segment' is ignored: "
                                                             "eligibility comes from the server's users table.")


class FeedItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    rank: int
    item_id: Id
    title: str | None = None
    price: float | None = None
    price_paid: float | None = Field(None, description="What a buyer pays on this partner now: the price less the "
                                                       "item's coupon or the partner's benefit (GMV counts it).")
    commission_rate: float | None = Field(None, description="Share of price_paid the partner earns on an order.")
    score: float | None = None
    pctr: float | None = None
    pcvr: float | None = None
    reason: str | None = None


class FeedResponse(BaseModel):
    user_id: Id | None
    media_id: str | None
    model_version: str
    fallback: str | None
    notes: list[str]
    score_kind: str | None = None
    objective: str | None = None
    items: list[FeedItem]


class SimilarRequest(_Body):
    item_id: Id
    media_id: str | None = None
    k: int = Field(20, ge=1, le=10_000)


class AddItemsRequest(_Body):
    items: list[dict[str, Any]] = Field(min_length=1, description="Rows of the items contract (item_id, category, "
                                                                  "brand, shop, price, commission_rate, title, ...).")
    media_pools: list[dict[str, Any]] | None = Field(None, description="Rows (media_id, item_id): pools the items join.")


class RemoveItemsRequest(_Body):
    item_ids: list[Id] = Field(min_length=1)


class StockRequest(_Body):
    item_ids: list[Id] = Field(min_length=1)
    in_stock: bool | list[bool]


class UpdateResponse(BaseModel):
    model_version: str
    changed: int


class EventsRequest(_Body):
    events: list[dict[str, Any]] = Field(min_length=1, description="Rows of the events contract (user_id, item_id, "
                                                                   "timestamp, event_type, media_id, ...).")


class EventsResponse(BaseModel):
    model_version: str
    accepted: int = Field(description="Events new to the model's log (a repeated event is acknowledged, not counted).")


class ReloadRequest(_Body):
    model: str | None = Field(None, description="Switch to this bundle path or models:/ URI (default: reload the "
                                                "current source, e.g. the alias's current version).")
    wait: bool = Field(True, description="Answer when the reload has finished (else 202 at once).")


class ErrorResponse(BaseModel):
    error: str
    fix: str | None = None
