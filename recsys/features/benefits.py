"""Benefits: coupons and other consumer privileges a partner's audience gets, and the price after them.

benefits table
    media_id (the partner whose channel carries the benefit; empty or null = every partner), item_id,
    amount (money off, > 0, finite); optional min_spend (the list price an order must reach, >= 0,
    default 0), valid_from / valid_to (timestamps, the window ``[valid_from, valid_to)``, naive times are UTC;
    missing = open on that side), kind (free text such as ``coupon`` or ``red_packet``, default ``coupon``).

Rules, the same for training rows and live requests:

* a benefit counts for an order of item *i* on partner *p* at time *t* when it names *i*, names *p* (or
  every partner), ``valid_from <= t < valid_to`` and the list price reaches ``min_spend``; an expired or
  not-yet-valid benefit never counts;
* benefits do not stack: the buyer uses the largest one that counts, and the items table's own
  ``coupon`` column is one more candidate (a network-wide coupon, always valid);
* the price after the benefit is ``max(price - amount, 0)``; GMV and commission objectives use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.features import validation as v

REQUIRED = ("media_id", "item_id", "amount")
_OPEN_START = np.iinfo(np.int64).min
_OPEN_END = np.iinfo(np.int64).max


def validate_benefits(benefits: pd.DataFrame | str) -> pd.DataFrame:
    """Check a benefits table and return it cleaned (defaults filled, windows as UTC timestamps)."""
    t = "benefits"
    df = v.require_frame(t, benefits)
    v.check_columns(t, df, REQUIRED)
    df = df.copy()
    v.check_id(t, df, "item_id")
    df["media_id"] = df["media_id"].where(df["media_id"].notna(), "").astype(str).str.strip()
    df["amount"] = v.to_numeric(t, df, "amount")
    v.check_range(t, df, "amount", df["amount"], low=0.0)
    if (df["amount"] <= 0).any():
        bad = df.index[(df["amount"] <= 0).to_numpy()][:5].tolist()
        raise DataValidationError(f"benefits: column 'amount' must be > 0 (money off); rows {bad} are not.\n"
                                  "Fix: drop benefits worth nothing, or give their amount.")
    if "min_spend" in df.columns:
        df["min_spend"] = v.to_numeric(t, df, "min_spend").fillna(0.0)
        v.check_range(t, df, "min_spend", df["min_spend"], low=0.0)
    else:
        df["min_spend"] = 0.0
    for col in ("valid_from", "valid_to"):
        if col in df.columns and df[col].notna().any():
            present = df[col].notna()
            stamps = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
            stamps[present] = v.to_timestamp(t, df.loc[present], col).astype("datetime64[ns]")
            df[col] = stamps
        else:
            df[col] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    both = df["valid_from"].notna() & df["valid_to"].notna()
    empty = both & (df["valid_to"] <= df["valid_from"])
    if empty.any():
        bad = df.index[empty.to_numpy()][:5].tolist()
        raise DataValidationError(f"benefits: rows {bad} end before they start (valid_to <= valid_from).\n"
                                  "Fix: swap the two, or drop those rows.")
    df["kind"] = df["kind"].fillna("coupon").astype(str) if "kind" in df.columns else "coupon"
    return df.reset_index(drop=True)


def _ns(stamps: pd.Series, fill: int) -> np.ndarray:
    out = np.full(len(stamps), fill, dtype=np.int64)
    present = stamps.notna().to_numpy()
    if present.any():
        out[present] = stamps[present].to_numpy("datetime64[ns]").view(np.int64)
    return out


def to_ns(at: object) -> int:
    """A timestamp (datetime, ISO string, numpy or pandas) as UTC nanoseconds since the epoch."""
    ts = pd.Timestamp(at)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


@dataclass(frozen=True)
class BenefitTable:
    """Benefits compiled for vectorised lookup: rows sorted by item position, CSR offsets per item."""

    offsets: np.ndarray  # int64 [n_items + 1]
    media: np.ndarray  # object [n_benefits]: partner id, "" = every partner
    amount: np.ndarray  # float64
    min_spend: np.ndarray  # float64
    start: np.ndarray  # int64 ns, inclusive
    end: np.ndarray  # int64 ns, exclusive

    @classmethod
    def empty(cls, n_items: int) -> BenefitTable:
        """No benefits for any of ``n_items`` items."""
        z = np.zeros(0)
        return cls(np.zeros(n_items + 1, dtype=np.int64), np.zeros(0, dtype=object), z, z,
                   np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @classmethod
    def build(cls, benefits: pd.DataFrame, item_ids: pd.Index, *, strict: bool = True) -> BenefitTable:
        """Compile a validated benefits table against the catalogue's item order (``item_ids``); ``strict=False``
        drops the benefits of items not there (removed from a live catalogue) instead of refusing them."""
        pos = item_ids.get_indexer(benefits["item_id"])
        if not strict and (pos < 0).any():
            benefits, pos = benefits.loc[pos >= 0], pos[pos >= 0]
        if (pos < 0).any():
            unknown = pd.unique(benefits["item_id"][pos < 0])[:5].tolist()
            raise DataValidationError(f"benefits: item ids {unknown} are not in the items table.\n"
                                      "Fix: add those items, or drop their benefits.")
        order = np.argsort(pos, kind="stable")
        pos = pos[order]
        b = benefits.iloc[order]
        offsets = np.searchsorted(pos, np.arange(len(item_ids) + 1), side="left").astype(np.int64)
        return cls(offsets, b["media_id"].to_numpy(dtype=object), b["amount"].to_numpy(np.float64),
                   b["min_spend"].to_numpy(np.float64), _ns(b["valid_from"], _OPEN_START),
                   _ns(b["valid_to"], _OPEN_END))

    def __len__(self) -> int:
        return len(self.amount)

    def best(self, item_pos: np.ndarray, price: np.ndarray, media: np.ndarray | str | None,
             at_ns: np.ndarray | int) -> np.ndarray:
        """The largest benefit that counts for each row (0 where none does).

        ``item_pos`` and ``price`` are per row; ``media`` and ``at_ns`` are per row or one value for all rows
        (``None`` media = no partner: only benefits for every partner count)."""
        item_pos = np.asarray(item_pos, dtype=np.int64)
        out = np.zeros(len(item_pos))
        if len(self.amount) == 0 or len(item_pos) == 0:
            return out
        lo, hi = self.offsets[item_pos], self.offsets[item_pos + 1]
        count = hi - lo
        rows = np.flatnonzero(count > 0)
        if len(rows) == 0:
            return out
        price = np.asarray(price, dtype=np.float64)
        at = np.broadcast_to(np.asarray(at_ns, dtype=np.int64), item_pos.shape)
        media_rows = np.broadcast_to(np.asarray("" if media is None else media, dtype=object), item_pos.shape)
        for j in range(int(count[rows].max())):  # a few benefits per item at most: loop over the rank, not rows
            rows = rows[count[rows] > j]
            b = lo[rows] + j
            ok = ((self.media[b] == "") | (self.media[b] == media_rows[rows])) & (self.start[b] <= at[rows]) \
                & (at[rows] < self.end[b]) & (price[rows] >= self.min_spend[b])
            hit = rows[ok]
            out[hit] = np.maximum(out[hit], self.amount[b[ok]])
        return out


def price_after_benefit(price: np.ndarray, coupon: np.ndarray, benefit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(amount used, price after it): the larger of the item's own coupon and the partner benefit, never below 0."""
    used = np.maximum(np.asarray(coupon, dtype=np.float64), np.asarray(benefit, dtype=np.float64))
    return used, np.maximum(np.asarray(price, dtype=np.float64) - used, 0.0)


def with_benefits(cols: dict, table: BenefitTable | None, item_pos: np.ndarray, media: np.ndarray | str | None,
                  at_ns: np.ndarray | int) -> dict:
    """The ranker's ``coupon``, ``coupon_share`` and ``log_price_paid`` columns with each row's partner benefit counted (``cols`` holds
    ``price`` and the item's own ``coupon``; rows whose item is unknown, position -1, keep the item's coupon)."""
    if table is None or not len(table):
        return cols
    pos = np.asarray(item_pos, dtype=np.int64)
    known = pos >= 0
    price = np.asarray(cols["price"], dtype=np.float64)
    amount = np.zeros(len(pos))
    media_rows = np.broadcast_to(np.asarray("" if media is None else media, dtype=object), pos.shape)
    at = np.broadcast_to(np.asarray(at_ns, dtype=np.int64), pos.shape)
    amount[known] = table.best(pos[known], price[known], media_rows[known], at[known])
    coupon = np.maximum(np.asarray(cols["coupon"], dtype=np.float64), amount)
    cols["coupon"] = coupon
    cols["coupon_share"] = np.where(price > 0, coupon / np.maximum(price, 1e-9), 0.0)
    cols["log_price_paid"] = np.log1p(np.maximum(price - coupon, 0.0))
    return cols
