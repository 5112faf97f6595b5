"""Who influences whose purchases: members whose purchase in a category is followed by their friends' purchases.

A *follow* is a purchase by friend F of member U (an edge of the social table, either direction) in the same
category as a purchase of U, made after it and at most ``window`` later, both on the partner. A member's
*followers* in a category are the distinct friends with at least one follow.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["influencers", "follows"]


def follows(buys: pd.DataFrame, items: pd.DataFrame, social: pd.DataFrame, window: pd.Timedelta) -> pd.DataFrame:
    """Every follow: columns ``user_id`` (the member), ``friend_id``, ``category``, ``t`` (the member's
    purchase), ``t_friend``; one row per (member purchase, friend purchase) pair. ``buys``: user_id, item_id,
    timestamp; ``items`` indexed by item_id with a category column."""
    cat = items["category"]
    b = buys.assign(category=cat.reindex(buys["item_id"].to_numpy()).to_numpy()).dropna(subset=["category"])
    b = b[["user_id", "category", "timestamp"]]
    edges = pd.concat([social[["user_id", "friend_id"]],
                       social[["friend_id", "user_id"]].set_axis(["user_id", "friend_id"], axis=1)])
    edges = edges[edges["user_id"] != edges["friend_id"]].drop_duplicates()
    lead = b.rename(columns={"timestamp": "t"}).merge(edges, on="user_id")
    after = b.rename(columns={"user_id": "friend_id", "timestamp": "t_friend"})
    pairs = lead.merge(after, on=["friend_id", "category"])
    keep = (pairs["t_friend"] > pairs["t"]) & (pairs["t_friend"] <= pairs["t"] + window)
    return pairs.loc[keep, ["user_id", "friend_id", "category", "t", "t_friend"]].reset_index(drop=True)


def influencers(buys: pd.DataFrame, items: pd.DataFrame, social: pd.DataFrame | None, *, window: pd.Timedelta,
                min_group: int, top_n: int = 10) -> dict | None:
    """Per category, the audience's influential members (privacy rule 3 of :mod:`recsys.partners.privacy`).

    Returns None without a social table or a category column, else ``window`` (a string), ``categories`` (rows
    of category, ``influencers`` = members with at least one follower, ``followers`` = distinct friends who
    followed, ``followed_purchases``, ``named`` = [{user_id, followers}] for members followed by at least
    ``min_group`` friends, most first), most followers first; a category is shown only when at least
    ``min_group`` distinct friends followed in it; ``suppressed`` counts the others."""
    if social is None or "category" not in items.columns or not {"user_id", "friend_id"} <= set(social.columns):
        return None
    pairs = follows(buys, items, social, window)
    rows, suppressed = [], 0
    for category, g in pairs.groupby("category", sort=True):
        followers = g["friend_id"].nunique()
        if followers < min_group:
            suppressed += 1
            continue
        per_member = g.groupby("user_id")["friend_id"].nunique().sort_values(ascending=False, kind="stable")
        named = per_member[per_member >= min_group].head(top_n)
        rows.append({"category": str(category), "influencers": int(len(per_member)), "followers": int(followers),
                     "followed_purchases": int(g[["friend_id", "t_friend"]].drop_duplicates().shape[0]),
                     "named": [{"user_id": _plain(u), "followers": int(n)} for u, n in named.items()]})
    rows.sort(key=lambda r: -r["followers"])
    return {"window": str(window), "categories": rows[:top_n], "suppressed": suppressed}


def _plain(v):
    return v.item() if hasattr(v, "item") else v
