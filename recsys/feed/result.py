"""The Feed a serving call returns, and how it is handed on (``to_dict`` / ``to_json``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Feed", "SCORE_KINDS"]

SCORE_KINDS = {
    "objective": "the ranker's value of the partner's objective per impression (clicks: pCTR; purchases: "
                 "pCTR*pCVR; gmv: that times price; commission: that times price and commission rate)",
    "two_tower": "the two-tower inner product of user and item (a model without a ranker)",
    "popularity": "engagement-weighted counts with the partner's audience (cold start without a ranker)",
    "similarity": "the inner product of two items' embeddings (similar_items)",
}


def _plain(value: Any) -> Any:
    """A JSON-safe Python value: numpy scalars unwrapped, NaN and NA as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _plain_column(values: Any) -> list:
    """One column as a list of JSON-safe Python values (as :func:`_plain` gives them one by one): numeric numpy
    columns in one ``tolist`` (non-finite floats as None), anything else value by value through pandas' ``tolist``
    (datetimes as Timestamps, as a frame's column gives them)."""
    arr = values.to_numpy() if isinstance(values, pd.Series) and values.dtype.kind in "iubf" else values
    if isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind in "iubf":
        out = arr.tolist()
        if arr.dtype.kind == "f":
            finite = np.isfinite(arr)
            if not finite.all():
                for n in np.flatnonzero(~finite).tolist():
                    out[n] = None
        return out
    if isinstance(arr, np.ndarray) and arr.dtype.kind == "O" or isinstance(arr, list):
        seq = arr if isinstance(arr, list) else arr.tolist()
    else:
        seq = pd.Series(arr).tolist() if not isinstance(arr, pd.Series) else arr.tolist()
    return [v if type(v) is str else _plain(v) for v in seq]  # most are text (titles, reasons): no checks


class Feed:
    """One feed: ``items`` (rank, item_id, score, pctr, pcvr, reason, reason_code, source) in feed order.

    ``fallback`` is None for the normal path, else ``"cold_user_features"`` (user tower from profile
    and partner) or ``"popular"`` (popular with the partner's audience and segment); the same None
    convention holds in ``recommend_batch``'s ``fallback`` column and the MLflow model's output.
    ``notes`` says why in words (unknown user id, an id not of this model's type, unknown partner, ...).

    ``score_kind`` says what ``score`` measures (:data:`SCORE_KINDS`). With a ranker every path scores
    with it, so scores of a cold-start feed and a normal one are on the same scale ("objective", with
    ``objective`` the partner's objective); without a ranker the normal path gives "two_tower" scores and
    the popular fallback "popularity" counts, which are not comparable. ``items`` may be given as a mapping
    of column arrays: the DataFrame is then built on first use (``item_ids`` and ``len`` do not need it).
    ``catalogue`` (the serving state's, at the time of the call) gives ``to_dict`` each item's title, price and
    commission rate; ``paid`` (catalogue positions -> the price a buyer pays on this partner at the request's time,
    after the item's coupon and the partner's benefits) adds ``price_paid`` (what GMV and commission count: an
    order's commission is ``price_paid * commission_rate``).
    """

    def __init__(self, user_id: Any, media_id: str | None, items: pd.DataFrame | Mapping[str, Any],
                 fallback: str | None = None, notes: list[str] | None = None, *, score_kind: str | None = None,
                 objective: str | None = None, catalogue: Any = None, paid: Any = None) -> None:
        self.user_id, self.media_id, self.fallback = user_id, media_id, fallback
        self.notes = notes if notes is not None else []
        self.score_kind, self.objective, self._catalogue = score_kind, objective, catalogue
        self._paid = paid
        self._frame = items if isinstance(items, pd.DataFrame) else None
        self._columns = None if isinstance(items, pd.DataFrame) else dict(items)

    @property
    def items(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.DataFrame(self._columns)
        return self._frame

    @items.setter
    def items(self, value: pd.DataFrame) -> None:
        self._frame, self._columns = value, None

    @property
    def used_fallback(self) -> bool:
        return self.fallback is not None or bool(self.notes)

    @property
    def item_ids(self) -> list:
        if self._frame is None:
            return np.asarray(self._columns["item_id"]).tolist()
        return self._frame["item_id"].tolist()

    def __len__(self) -> int:
        if self._frame is None:
            return len(self._columns["item_id"])
        return len(self._frame)

    def __repr__(self) -> str:
        return (f"Feed(user_id={self.user_id!r}, media_id={self.media_id!r}, items=<{len(self)} rows>, "
                f"fallback={self.fallback!r}, notes={self.notes!r})")

    def to_frame(self) -> pd.DataFrame:
        return self.items.copy()

    def to_dict(self) -> dict[str, Any]:
        """The feed as plain JSON-safe Python: user_id, media_id, fallback, notes, score_kind, objective and
        ``items``, one dict per item (rank, item_id, title, price, price_paid, commission_rate, score, pctr, pcvr,
        reason, reason_code, source); numpy values become Python ones and NaN becomes None."""
        # straight from the columns (no DataFrame built for a feed given as arrays): the serving path calls this
        # once per HTTP answer
        if self._frame is None:
            rows = {c: _plain_column(v) for c, v in self._columns.items()}
        else:
            rows = {c: _plain_column(self._frame[c]) for c in self._frame.columns}
        ids = self.item_ids
        if self._catalogue is not None and len(ids):
            pos = self._catalogue.positions(ids)
            unknown = np.flatnonzero(pos < 0).tolist()
            title, price = _plain_column(self._catalogue.title[pos]), _plain_column(self._catalogue.price[pos])
            rate = _plain_column(self._catalogue.commission_rate[pos])
            paid = _plain_column(self._paid(pos)) if self._paid is not None else None
            for n in unknown:
                title[n] = price[n] = rate[n] = None
                if paid is not None:
                    paid[n] = None
            rows["title"], rows["price"], rows["commission_rate"] = title, price, rate
            if paid is not None:
                rows["price_paid"] = paid
        head = ("rank", "item_id", "title", "price", "price_paid", "commission_rate")
        order = [c for c in head if c in rows]
        order += [c for c in rows if c not in head]
        items = [dict(zip(order, values, strict=True)) for values in zip(*(rows[c] for c in order), strict=True)] \
            if order else [{} for _ in ids]
        return {"user_id": _plain(self.user_id), "media_id": _plain(self.media_id), "fallback": self.fallback,
                "notes": list(self.notes), "score_kind": self.score_kind, "objective": self.objective,
                "items": items}

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string (strict JSON: no NaN; ``kwargs`` go to :func:`json.dumps`)."""
        kwargs.setdefault("ensure_ascii", False)
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)
