"""Data contracts: the tables a user brings (events, items, users, social edges) and their validation.

Each ``validate_*`` function takes a DataFrame (or a path to parquet/CSV), checks it against the
contract below and returns a cleaned copy; a broken contract raises
:class:`recsys.errors.DataValidationError` naming the column, a sample of bad rows and the fix.
Ids (``user_id``, ``item_id``, ``friend_id``, ``media_id``) may be integers of any width or unicode
strings; they come back out unchanged, never recast.

events
    user_id, item_id (ids); timestamp (datetime64, ISO string or integer Unix seconds);
    event_type, one of :data:`EVENT_TYPES`; optional media_id (the media partner), optional value
    (a float such as the order amount, >= 0, finite), optional impression_id (an impression carries
    its own id, each click / cart / fav / purchase the id of the impression it followed; the ranker
    needs it to label impressions). Exact duplicates are dropped (first kept) with a warning; rows
    come back sorted by time (stable, so ties keep their input order).
items
    item_id, category, brand, shop, price (>= 0, finite), commission_rate (a fraction in [0, 1]), title;
    optional coupon (>= 0, default 0), eligibility (segment tag; "" = everyone), in_stock (default True).
users
    user_id plus any profile columns.
social
    user_id, friend_id: who is friends with whom (self-loops and duplicates dropped with a warning).
media
    media_id (one row per partner); optional objective (what its feed ranks by: clicks, purchases,
    gmv or commission, or a synonym such as 'ctr'); other columns pass through.
benefits
    partner coupons (media_id, item_id, amount; optional min_spend, valid_from, valid_to, kind): see
    :mod:`recsys.features.benefits`.
media_pools
    media_id, item_id: the items each partner may show (partners absent here may show every item);
    every item_id must be in the items table; duplicate pairs are dropped with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recsys.errors import ConfigError, DataValidationError
from recsys.features import validation as v

EVENT_TYPES: tuple[str, ...] = ("impression", "click", "cart", "fav", "purchase")


@dataclass(frozen=True)
class TableSchema:
    """Required and optional columns of one input table (documentation and introspection)."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    keys: tuple[str, ...]


EVENTS = TableSchema("events", ("user_id", "item_id", "timestamp", "event_type"),
                     ("media_id", "value", "impression_id"),
                     ("user_id", "item_id", "timestamp", "event_type"))
ITEMS = TableSchema("items", ("item_id", "category", "brand", "shop", "price", "commission_rate", "title"),
                    ("coupon", "eligibility", "in_stock"), ("item_id",))
USERS = TableSchema("users", ("user_id",), (), ("user_id",))
SOCIAL = TableSchema("social", ("user_id", "friend_id"), (), ("user_id", "friend_id"))
MEDIA = TableSchema("media", ("media_id",), ("objective",), ("media_id",))
MEDIA_POOLS = TableSchema("media_pools", ("media_id", "item_id"), (), ("media_id", "item_id"))


def validate_events(events: pd.DataFrame | str) -> pd.DataFrame:
    """Check an events table and return it cleaned: types normalised, duplicates dropped, sorted by time."""
    t = EVENTS.name
    df = v.require_frame(t, events)
    v.check_columns(t, df, EVENTS.required)
    df = df.copy()
    v.check_id(t, df, "user_id")
    v.check_id(t, df, "item_id")
    for col in ("media_id", "impression_id"):
        if col in df.columns and df[col].notna().any():
            _check_optional_id(t, df, col)
    df["timestamp"] = v.to_timestamp(t, df, "timestamp")
    v.check_not_null(t, df, "event_type")
    kinds = df["event_type"].astype(str).str.strip().str.lower()
    v.check_allowed(t, df, "event_type", kinds, EVENT_TYPES)
    df["event_type"] = pd.Categorical(kinds, categories=list(EVENT_TYPES))
    if "value" in df.columns:
        df["value"] = v.to_numeric(t, df, "value")
        v.check_range(t, df, "value", df["value"], low=0.0, allow_nan=True)
    return _dedupe_and_sort(df)


def _check_optional_id(table: str, df: pd.DataFrame, column: str) -> None:
    """An optional id column may be null on some rows; the rest must be valid ids."""
    present = df[column].notna()
    if present.all():
        v.check_id(table, df, column)
    else:
        v.check_id(table, df.loc[present], column)


def _dedupe_and_sort(df: pd.DataFrame) -> pd.DataFrame:
    subset = [c for c in ("user_id", "item_id", "timestamp", "event_type", "media_id", "impression_id")
              if c in df.columns]
    dup = df.duplicated(subset=subset, keep="first").to_numpy()
    if dup.any():
        v.warn_repair(f"events: dropped {int(dup.sum())} duplicate event(s) (same {subset}); the first of each "
                      "group is kept.")
        df = df.loc[~dup]
    ts = df["timestamp"].to_numpy()
    if len(ts) > 1 and (ts[1:] < ts[:-1]).any():
        v.warn_repair("events: rows were not in time order; sorted by timestamp (stable: ties keep input order).")
        df = df.sort_values("timestamp", kind="stable")
    return df.reset_index(drop=True)


def validate_items(items: pd.DataFrame | str) -> pd.DataFrame:
    """Check an items (catalogue) table and return it with optional columns filled with their defaults."""
    t = ITEMS.name
    df = v.require_frame(t, items)
    v.check_columns(t, df, ITEMS.required)
    df = df.copy()
    v.check_id(t, df, "item_id")
    _check_unique(t, df, "item_id")
    df["price"] = v.to_numeric(t, df, "price")
    v.check_range(t, df, "price", df["price"], low=0.0)
    df["commission_rate"] = v.to_numeric(t, df, "commission_rate")
    v.check_range(t, df, "commission_rate", df["commission_rate"], low=0.0, high=1.0,
                  hint=" Rates are fractions: 5% is 0.05 (divide percentages by 100).")
    for col in ("category", "brand", "shop"):
        df[col] = _text(df[col], "unknown")
    df["title"] = _text(df["title"], "")
    if "coupon" in df.columns:
        df["coupon"] = v.to_numeric(t, df, "coupon").fillna(0.0)
        v.check_range(t, df, "coupon", df["coupon"])
    else:
        df["coupon"] = 0.0
    df["eligibility"] = _text(df["eligibility"], "") if "eligibility" in df.columns else ""
    df["in_stock"] = _to_bool(t, df, "in_stock") if "in_stock" in df.columns else True
    return df.reset_index(drop=True)


def _text(s: pd.Series, missing: str) -> pd.Series:
    """A text column as str, missing values (None, NaN, pd.NA of a nullable Int64 / boolean column) ``missing``."""
    return s.astype(object).where(s.notna(), missing).astype(str)


def _to_bool(table: str, df: pd.DataFrame, column: str) -> pd.Series:
    s = df[column]
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return s.astype(bool)
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
               "1.0": True, "0.0": False}
    out = s.astype(str).str.strip().str.lower().map(mapping)
    bad = (out.isna() | s.isna()).to_numpy()
    if bad.any():
        v.fail(table, column, f"has dtype {s.dtype} with values that are not booleans", df, bad,
               "use True/False (or 1/0, 'yes'/'no').")
    return out.astype(bool)


def _check_unique(table: str, df: pd.DataFrame, column: str) -> None:
    dup = df.duplicated(subset=[column], keep=False).to_numpy()
    if dup.any():
        v.fail(table, column, "holds duplicate keys (one row per id expected)", df, dup,
               f"keep one row per id, e.g. df.drop_duplicates(subset=['{column}'], keep='last').")


def validate_users(users: pd.DataFrame | str) -> pd.DataFrame:
    """Check a users (profile) table: one row per user_id; profile columns pass through."""
    t = USERS.name
    df = v.require_frame(t, users)
    v.check_columns(t, df, USERS.required)
    v.check_id(t, df, "user_id")
    _check_unique(t, df, "user_id")
    return df.reset_index(drop=True)


def validate_social(social: pd.DataFrame | str) -> pd.DataFrame:
    """Check social edges (user_id, friend_id); self-loops and duplicate edges are dropped with a warning."""
    t = SOCIAL.name
    df = v.require_frame(t, social)
    v.check_columns(t, df, SOCIAL.required)
    v.check_id(t, df, "user_id")
    v.check_id(t, df, "friend_id")
    loops = (df["user_id"] == df["friend_id"]).to_numpy()
    dup = df.duplicated(subset=["user_id", "friend_id"], keep="first").to_numpy()
    drop = loops | dup
    if drop.any():
        v.warn_repair(f"social: dropped {int(loops.sum())} self-loop(s) and {int((dup & ~loops).sum())} "
                      "duplicate edge(s).")
        df = df.loc[~drop]
    return df.reset_index(drop=True)


def validate_media(media: pd.DataFrame | str) -> pd.DataFrame:
    """Check a media-partner table: one row per media_id; an objective column must name known objectives."""
    from recsys.features.objective_names import OBJECTIVES

    t = MEDIA.name
    df = v.require_frame(t, media)
    v.check_columns(t, df, MEDIA.required)
    v.check_id(t, df, "media_id")
    _check_unique(t, df, "media_id")
    if "objective" in df.columns:
        bad = (df["objective"].isna() | ~df["objective"].map(_known_objective)).to_numpy()
        if bad.any():
            unknown = sorted(map(str, pd.unique(df.loc[bad, "objective"].astype(str))))[:10]
            v.fail(t, "objective", f"holds unknown or missing objective(s) {unknown}", df, bad,
                   f"use one of {list(OBJECTIVES)} per partner (or drop the column: every partner then ranks "
                   "by the Recommender's default_objective).")
    return df.reset_index(drop=True)


def _known_objective(name: object) -> bool:
    from recsys.features.objective_names import normalise_objective

    try:
        normalise_objective(str(name))
    except ConfigError:
        return False
    return True


def validate_media_pools(media_pools: pd.DataFrame | str) -> pd.DataFrame:
    """Check partner pools (media_id, item_id): ids valid; duplicate pairs dropped with a warning."""
    t = MEDIA_POOLS.name
    df = v.require_frame(t, media_pools)
    v.check_columns(t, df, MEDIA_POOLS.required)
    v.check_id(t, df, "media_id")
    v.check_id(t, df, "item_id")
    dup = df.duplicated(subset=["media_id", "item_id"], keep="first").to_numpy()
    if dup.any():
        v.warn_repair(f"media_pools: dropped {int(dup.sum())} duplicate (media_id, item_id) pair(s).")
        df = df.loc[~dup]
    return df.reset_index(drop=True)


_VALIDATORS = (("events", validate_events), ("items", validate_items), ("users", validate_users),
               ("social", validate_social), ("media", validate_media), ("media_pools", validate_media_pools))


def validate_tables(*, events=None, items=None, users=None, social=None, media=None,
                    media_pools=None, benefits=None) -> dict[str, pd.DataFrame]:
    """Validate whichever tables are given, then check events and pools only name known items and users.

    The one entry point of the data contract: ``recsys train`` (:func:`recsys.fit.tables.load_tables`)
    and :meth:`recsys.Recommender.fit` both call it."""
    from recsys.features.benefits import validate_benefits

    given = {"events": events, "items": items, "users": users, "social": social, "media": media,
             "media_pools": media_pools, "benefits": benefits}
    out = {name: fn(given[name]) for name, fn in (*_VALIDATORS, ("benefits", validate_benefits))
           if given[name] is not None}
    if "events" in out and "items" in out:
        _check_known(out["events"], "item_id", out["items"]["item_id"], "items")
    if "events" in out and "users" in out:
        _check_known(out["events"], "user_id", out["users"]["user_id"], "users")
    if "media_pools" in out and "items" in out:
        _check_known(out["media_pools"], "item_id", out["items"]["item_id"], "items", source="media_pools")
    if "benefits" in out and "items" in out:
        _check_known(out["benefits"], "item_id", out["items"]["item_id"], "items", source="benefits")
    return out


def _check_known(events: pd.DataFrame, column: str, known: pd.Series, table: str, source: str = "events") -> None:
    unknown = (~events[column].isin(known)).to_numpy()
    if unknown.any():
        ids = pd.unique(events.loc[unknown, column])[:5].tolist()
        raise DataValidationError(
            f"{source}: column '{column}' names {len(pd.unique(events.loc[unknown, column]))} id(s) that are not "
            f"in the {table} table, e.g. {ids}.\nFix: add them to {table}, or drop those {source} rows first "
            "(check the id types match: 12 and '12' are different ids)."
        )
