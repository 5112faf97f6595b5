"""Audience insight: who a partner's audience is, what it engages with and buys, against the whole network.

>>> report = audience_insight(recsys.load("bundles/guess-you-like"), "kol-0")        # doctest: +SKIP
>>> report["top"]["category"][0]                                                    # doctest: +SKIP

The audience of partner P is the users with at least one engagement event (click, cart, fav, purchase; not an
impression) on P, the rule of :meth:`recsys.recommender.Recommender.audience`. Every number follows the privacy
rule of :mod:`recsys.partners.privacy` (groups of at least ``min_group`` users; only P's own events describe
its audience; the network appears as network-wide shares and rates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.partners.influence import influencers
from recsys.partners.privacy import (
    DEFAULT_MIN_GROUP,
    OTHER,
    check_min_group,
    check_positive,
    merge_small,
    rate,
)
from recsys.partners.tables import PartnerTables, partner_events, partner_tables, window_length

__all__ = ["audience_insight", "price_levels", "PROFILE_MAX_VALUES", "PRICE_LEVELS"]

PROFILE_MAX_VALUES = 30  # a users column with more distinct values is not a profile breakdown (ids, dates)
PRICE_LEVELS = 5  # price quintiles within the item's category
ATTRIBUTES = ("category", "brand", "shop")


def audience_insight(rec_or_tables: Any, media_id: str, *, min_group: int = DEFAULT_MIN_GROUP, top_n: int = 10,
                     influence_window: Any = "7D") -> dict:
    """A JSON-able report of partner ``media_id``'s audience (``rec_or_tables``: a Recommender, a mapping of
    ``events``/``items``/``users``/``social`` frames, or :class:`~recsys.partners.tables.PartnerTables`).

    Keys: ``media_id``, ``min_group``, ``privacy`` (the rule in a sentence), ``notes`` (what was left out and
    why); ``size`` (``reached_users`` with any event on P, ``audience_users`` engaged on P, ``buyers``,
    ``network_audience_users``); and, unless the audience is smaller than ``min_group`` (then they are None):
    ``activity`` (events per type, engagement events and active days per user, returning share, first/last
    event); ``profile`` (per users-table column: rows of value, users, share, network_share, lift; ``merged``);
    ``spending_power`` (``purchased`` and ``engaged``: users by their median price level bought / engaged with,
    1 = cheapest fifth of its category, as rows like the profile's; ``mean_price_bought`` and the network's);
    ``top`` (``category``, ``brand``, ``shop``: rows of value, users, events, purchases, share, network_share,
    lift, largest first; ``suppressed`` counts); ``rates`` (``ctr`` clicks per impression and ``cvr``
    purchases per click, each ``partner`` and ``network`` with a 95% Wilson interval); ``merchants`` (per shop
    clicked by at least ``min_group`` audience users: clicks, purchases, cvr with interval, network_cvr, lift,
    converts_well = the interval lies above the network's rate; ``converts_well`` lists those shops by lift);
    ``influencers`` (see :func:`recsys.partners.influence.influencers`).
    """
    t = partner_tables(rec_or_tables)
    check_min_group(min_group)
    check_positive("top_n", top_n)
    window = window_length(influence_window)
    ev = _with_types(t.events)
    mine = partner_events(ev, media_id)
    pos_all = ev[ev["event_type"].isin(t.positive_events)]
    pos = mine[mine["event_type"].isin(t.positive_events)]
    audience = pd.Index(pd.unique(pos["user_id"]))
    size = {"reached_users": int(mine["user_id"].nunique()), "audience_users": len(audience),
            "buyers": int(mine.loc[mine["event_type"] == t.purchase_event, "user_id"].nunique()),
            "network_audience_users": int(pos_all["user_id"].nunique())}
    out: dict[str, Any] = {"media_id": media_id, "min_group": min_group, "privacy": _PRIVACY.format(n=min_group),
                           "notes": [], "size": size}
    sections = ("activity", "profile", "spending_power", "top", "rates", "merchants", "influencers")
    if len(audience) < min_group:
        out.update(dict.fromkeys(sections))
        out["notes"].append(f"the audience ({len(audience)} users) is smaller than min_group={min_group}: only its "
                            "sizes are shown")
        return out
    items = t.items.drop_duplicates("item_id", keep="last").set_index("item_id")
    out["activity"] = _activity(mine, pos)
    out["profile"] = _profile(t.users, audience, pd.Index(pd.unique(pos_all["user_id"])), min_group, out["notes"])
    out["spending_power"] = _spending(t, items, mine, ev, min_group, out["notes"])
    out["top"] = {a: _top(pos, pos_all, items, a, t.purchase_event, min_group, top_n)
                  for a in ATTRIBUTES if a in items.columns}
    out["rates"] = _rates(t, mine, ev)
    out["merchants"] = _merchants(t, mine, ev, items, min_group, top_n) if "shop" in items.columns else None
    buys = mine.loc[mine["event_type"] == t.purchase_event, ["user_id", "item_id", "timestamp"]]
    out["influencers"] = influencers(buys, items, t.social, window=window, min_group=min_group, top_n=top_n)
    return out


_PRIVACY = ("aggregates of the partner's own events only; every group described holds at least {n} users "
            "(smaller ones suppressed, small rows of a breakdown merged into '(other)'); members named only as "
            "influencers followed by at least {n} friends")


def _with_types(events: pd.DataFrame) -> pd.DataFrame:
    """The log with ``event_type`` as str and ``timestamp`` as datetime (a copy only when they are not)."""
    ev = events
    if ev["event_type"].dtype != object:
        ev = ev.assign(event_type=ev["event_type"].astype(str))
    if not pd.api.types.is_datetime64_any_dtype(ev["timestamp"]):
        ev = ev.assign(timestamp=pd.to_datetime(ev["timestamp"]))
    return ev


def _activity(mine: pd.DataFrame, pos: pd.DataFrame) -> dict:
    per_user = pos.groupby("user_id").size()
    days = pos.assign(day=pos["timestamp"].dt.floor("D")).groupby("user_id")["day"].nunique()
    return {"events": {str(k): int(v) for k, v in mine["event_type"].value_counts().sort_index().items()},
            "engagement_events_per_user": {"mean": float(per_user.mean()), "median": float(per_user.median())},
            "active_days_per_user": {"mean": float(days.mean()), "median": float(days.median())},
            "returning_share": float((days >= 2).mean()),
            "first_event": str(mine["timestamp"].min()), "last_event": str(mine["timestamp"].max())}


def _breakdown(mine_users: pd.Series, network_users: pd.Series, min_group: int) -> dict | None:
    """Rows (value, users, share, network_share, lift) of a partition of users by one value each, rule 2 applied;
    None when everything would be suppressed."""
    counts, net = mine_users.value_counts(), network_users.value_counts()
    kept = merge_small(counts, min_group)
    if kept is None:
        return None
    shown, merged = kept
    total, net_total = int(counts.sum()), max(int(net.sum()), 1)
    rows = []
    for label, values in [(v, [v]) for v in shown] + ([(OTHER, merged)] if merged else []):
        users = int(counts.reindex(values).fillna(0).sum())
        share, net_share = users / total, float(net.reindex(values).fillna(0).sum()) / net_total
        rows.append({"value": _jsonable(label), "users": users, "share": share, "network_share": net_share,
                     "lift": share / net_share if net_share > 0 else None})
    return {"rows": rows, "merged": len(merged), "users": total}


def _profile(users: pd.DataFrame | None, audience: pd.Index, network: pd.Index, min_group: int,
             notes: list[str]) -> dict:
    """Per profile column of the users table, the audience's make-up against the network's engaged users."""
    if users is None or "user_id" not in users.columns:
        notes.append("no users table: no profile make-up")
        return {}
    table = users.drop_duplicates("user_id", keep="last").set_index("user_id")
    out = {}
    for col in table.columns:
        values = table[col]
        if pd.api.types.is_datetime64_any_dtype(values) or values.nunique() > PROFILE_MAX_VALUES:
            notes.append(f"users column {col!r} left out of the profile (dates or more than {PROFILE_MAX_VALUES} "
                         "distinct values)")
            continue
        section = _breakdown(values.reindex(audience).dropna(), values.reindex(network).dropna(), min_group)
        if section is None:
            notes.append(f"profile column {col!r} suppressed: fewer than {min_group} audience users have a value")
        out[str(col)] = section
    return out


def price_levels(items: pd.DataFrame) -> pd.Series:
    """Each item's price level, 1 (cheapest fifth) to 5, among the items of its category (the whole catalogue
    without a category column); indexed by item_id."""
    price = items["price"].astype(float)
    group = items["category"] if "category" in items.columns else pd.Series(0, index=items.index)
    pct = price.groupby(group).rank(pct=True, method="average")
    return np.ceil(pct * PRICE_LEVELS).clip(1, PRICE_LEVELS).astype("int64")


def _spending(t: PartnerTables, items: pd.DataFrame, mine: pd.DataFrame, ev: pd.DataFrame, min_group: int,
              notes: list[str]) -> dict | None:
    if "price" not in items.columns:
        notes.append("the items table has no price column: no spending power")
        return None
    level = price_levels(items)
    out = {}
    for name, kinds in (("purchased", (t.purchase_event,)), ("engaged", t.positive_events)):
        def user_level(frame: pd.DataFrame, kinds=kinds) -> pd.Series:
            rows = frame[frame["event_type"].isin(kinds)]
            lv = level.reindex(rows["item_id"].to_numpy()).to_numpy()
            per_user = pd.Series(lv, index=rows["user_id"].to_numpy()).dropna().groupby(level=0).median()
            return per_user.round().astype("int64")
        out[name] = _breakdown(user_level(mine), user_level(ev), min_group)
    price = items["price"].astype(float)
    bought = mine.loc[mine["event_type"] == t.purchase_event]
    all_bought = ev.loc[ev["event_type"] == t.purchase_event, "item_id"]
    enough = bought["user_id"].nunique() >= min_group
    out["mean_price_bought"] = float(price.reindex(bought["item_id"]).mean()) if enough else None
    out["network_mean_price_bought"] = float(price.reindex(all_bought).mean()) if len(all_bought) else None
    if out["purchased"] is None:
        notes.append(f"spending power by purchases suppressed: fewer than {min_group} buyers")
    return out


def _top(pos: pd.DataFrame, pos_all: pd.DataFrame, items: pd.DataFrame, attr: str, purchase: str,
         min_group: int, top_n: int) -> dict:
    """The values of ``attr`` the audience engages with most, with lift against the network's engagement."""
    values = items[attr]
    mine = pos.assign(v=values.reindex(pos["item_id"].to_numpy()).to_numpy()).dropna(subset=["v"])
    net = values.reindex(pos_all["item_id"].to_numpy()).value_counts()
    g = mine.groupby("v")
    table = pd.DataFrame({"users": g["user_id"].nunique(), "events": g.size(),
                          "purchases": g["event_type"].agg(lambda s: int((s == purchase).sum()))})
    table["share"] = table["events"] / max(len(mine), 1)
    table["network_share"] = net.reindex(table.index).fillna(0).to_numpy() / max(int(net.sum()), 1)
    table["lift"] = table["share"] / table["network_share"].where(table["network_share"] > 0)
    shown = table[table["users"] >= min_group].sort_values(["events", "users"], ascending=False, kind="stable")
    return {"rows": _records(shown.head(top_n), "value"), "suppressed": int((table["users"] < min_group).sum())}


def _rates(t: PartnerTables, mine: pd.DataFrame, ev: pd.DataFrame) -> dict:
    def counts(frame: pd.DataFrame) -> tuple[int, int, int]:
        kinds = frame["event_type"].value_counts()
        return tuple(int(kinds.get(k, 0)) for k in (t.impression_event, "click", t.purchase_event))
    (mi, mc, mp), (ni, nc, np_) = counts(mine), counts(ev)
    return {"ctr": {"partner": rate(mc, mi), "network": rate(nc, ni)},
            "cvr": {"partner": rate(mp, mc), "network": rate(np_, nc)}}


def _merchants(t: PartnerTables, mine: pd.DataFrame, ev: pd.DataFrame, items: pd.DataFrame, min_group: int,
               top_n: int) -> dict:
    """Per shop clicked by at least ``min_group`` audience users: its conversion on P against the network's."""
    shop = items["shop"]

    def per_shop(frame: pd.DataFrame) -> pd.DataFrame:
        rows = frame[frame["event_type"].isin(("click", t.purchase_event))]
        rows = rows.assign(shop=shop.reindex(rows["item_id"].to_numpy()).to_numpy()).dropna(subset=["shop"])
        clicks = rows[rows["event_type"] == "click"].groupby("shop")
        return pd.DataFrame({"clickers": clicks["user_id"].nunique(), "clicks": clicks.size(),
                             "purchases": rows[rows["event_type"] == t.purchase_event].groupby("shop").size()}
                            ).fillna(0)
    mine_t, net_t = per_shop(mine), per_shop(ev)
    mine_t = mine_t[mine_t["clickers"] >= min_group].sort_values("clicks", ascending=False, kind="stable")
    rows = []
    for name, r in mine_t.iterrows():
        cvr = rate(int(r["purchases"]), int(r["clicks"]))
        net = net_t.loc[name]
        net_cvr = float(net["purchases"] / net["clicks"]) if net["clicks"] > 0 else None
        rows.append({"shop": _jsonable(name), "clickers": int(r["clickers"]), "clicks": int(r["clicks"]),
                     "purchases": int(r["purchases"]), "cvr": cvr, "network_cvr": net_cvr,
                     "lift": cvr["rate"] / net_cvr if net_cvr else None,
                     "converts_well": bool(net_cvr is not None and cvr["ci_low"] is not None
                                           and cvr["ci_low"] > net_cvr)})
    well = sorted((r for r in rows if r["converts_well"]), key=lambda r: -(r["lift"] or float("inf")))
    return {"rows": rows[:top_n], "converts_well": [r["shop"] for r in well][:top_n],
            "suppressed": int((per_shop(mine)["clickers"] < min_group).sum())}


def _records(frame: pd.DataFrame, key: str) -> list[dict]:
    """Rows of ``frame`` as dicts with its index under ``key``, NaN as None, numpy scalars as Python ones."""
    return [{k: _jsonable(v) for k, v in rec.items()}
            for rec in frame.rename_axis(key).reset_index().to_dict("records")]


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v
