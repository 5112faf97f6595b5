"""Lifecycle funnels: per brand on one partner, users in awareness, interest, purchase and loyalty per time window,
and the flows between stages from one window to the next (a campaign's effect is a flow).

The stage of user U for brand B in window W is the highest that U's events on the partner, on items of B, in W
reach:

* ``loyalty``: two or more purchases of B in W, or a purchase of B in W after an earlier purchase of B on the
  partner (in an earlier window, or before the first window: a returning buyer);
* ``purchase``: exactly one purchase of B in W and none before it (a first purchase);
* ``interest``: an engagement event (click, cart, fav) on B in W, no purchase;
* ``awareness``: only impressions (or other events) of B in W;
* ``none`` (flows only): no event of B in W.

Windows are ``windows`` consecutive spans of length ``window`` ending at ``end`` (default: just after the
partner's last event), each ``[start, end)``. The flow matrix from window k-1 to k counts, for every user with
an event of B in any of the windows, (stage in k-1, stage in k), ``none`` included. Counts are the partner's own
users on its own traffic, shown as they are (see :mod:`recsys.partners.privacy`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.partners.privacy import check_positive
from recsys.partners.tables import POSITIVE_EVENTS, partner_events, window_length

__all__ = ["lifecycle_funnel", "funnel_counts", "funnel_flows", "STAGES", "FLOW_STAGES"]

STAGES = ("awareness", "interest", "purchase", "loyalty")
FLOW_STAGES = ("none", *STAGES)


def lifecycle_funnel(events: pd.DataFrame, items: pd.DataFrame, *, media_id: str, brands: list | None = None,
                     window: Any = "7D", windows: int = 4, end: Any = None, top_brands: int = 5,
                     positive_events: tuple[str, ...] = POSITIVE_EVENTS, purchase_event: str = "purchase") -> dict:
    """The lifecycle funnel of ``brands`` (None: the ``top_brands`` brands with the most engaged users on the
    partner in the span) on partner ``media_id``, as JSON-able data (stage rules in the module docstring).

    Keys: ``media_id``, ``window`` (a string), ``windows`` ([{index, start, end}], ISO times), ``stages``,
    ``flow_stages`` (``none`` first), ``brands``, ``brand_choice``; ``counts``: rows of brand, window,
    awareness, interest, purchase, loyalty, active (users with any event), one per brand and window;
    ``flows``: rows of brand, from_window, to_window and ``matrix`` (``flow_stages`` x ``flow_stages`` user
    counts, rows = stage in from_window). :func:`funnel_counts` and :func:`funnel_flows` turn them into frames.
    """
    w = window_length(window)
    check_positive("windows", windows)
    check_positive("top_brands", top_brands)
    if "brand" not in items.columns or "item_id" not in items.columns:
        raise DataValidationError(f"the items table needs item_id and brand columns for a funnel; it has "
                                  f"{list(items.columns)}")
    mine = partner_events(events, media_id)
    kinds = mine["event_type"].astype(str).to_numpy()
    brand_of = items.drop_duplicates("item_id", keep="last").set_index("item_id")["brand"]
    ev = pd.DataFrame({"user_id": mine["user_id"].to_numpy(), "t": pd.to_datetime(mine["timestamp"]).to_numpy(),
                       "brand": brand_of.reindex(mine["item_id"].to_numpy()).to_numpy(),
                       "buy": kinds == purchase_event, "pos": np.isin(kinds, list(positive_events))})
    ev = ev.dropna(subset=["brand"])
    last = pd.to_datetime(mine["timestamp"]).max()
    stop = pd.Timestamp(end) if end is not None else pd.Timestamp(last) + pd.Timedelta(1, "ns")
    starts = [stop - (windows - k) * w for k in range(windows)]
    span = ev[(ev["t"] >= starts[0]) & (ev["t"] < stop)]
    chosen, choice = _brands(span, brands, brand_of, top_brands)
    stage = _stages(ev, span, chosen, starts[0], w)
    return {"media_id": media_id, "window": str(w),
            "windows": [{"index": k, "start": s.isoformat(), "end": (s + w).isoformat()} for k, s in enumerate(starts)],
            "stages": list(STAGES), "flow_stages": list(FLOW_STAGES), "brands": chosen, "brand_choice": choice,
            "counts": _count_rows(stage, chosen, windows), "flows": _flow_rows(stage, chosen, windows)}


def _brands(span: pd.DataFrame, brands: list | None, brand_of: pd.Series, top: int) -> tuple[list, str]:
    if brands is not None:
        brands = [b.item() if isinstance(b, np.generic) else b for b in brands]
        known = set(brand_of.dropna().tolist())
        unknown = [b for b in brands if b not in known]
        if unknown:
            sample = ", ".join(repr(b) for b in sorted(map(str, known))[:10])
            raise DataValidationError(f"unknown brands {unknown}: no item of the items table has them (brands "
                                      f"include {sample}). Pass brands of the items table")
        return list(dict.fromkeys(brands)), "given"
    engaged = span[span["pos"]].groupby("brand")["user_id"].nunique()
    ranked = sorted(engaged.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return [b.item() if isinstance(b, np.generic) else b for b, _ in ranked[:top]], \
        f"the {top} brands with the most engaged users on the partner in the windows"


def _stages(ev: pd.DataFrame, span: pd.DataFrame, brands: list, start: pd.Timestamp, w: pd.Timedelta) -> pd.DataFrame:
    """One row per (brand, user, window) with an event: its stage code (1 awareness .. 4 loyalty)."""
    span = span[span["brand"].isin(brands)]
    k = ((span["t"] - start) // w).astype("int64")
    g = span.assign(k=k).groupby(["brand", "user_id", "k"], sort=True)
    per = pd.DataFrame({"buys": g["buy"].sum(), "pos": g["pos"].any()}).reset_index()
    first = ev[ev["buy"] & ev["brand"].isin(brands)].groupby(["brand", "user_id"])["t"].min().rename("first_buy")
    per = per.merge(first, left_on=["brand", "user_id"], right_index=True, how="left")
    window_start = start + per["k"] * w
    returning = per["first_buy"].notna() & (per["first_buy"] < window_start)
    per["stage"] = np.select([(per["buys"] >= 2) | ((per["buys"] >= 1) & returning), per["buys"] == 1, per["pos"]],
                             [4, 3, 2], default=1)
    return per[["brand", "user_id", "k", "stage"]]


def _count_rows(stage: pd.DataFrame, brands: list, windows: int) -> list[dict]:
    rows = []
    for b in brands:
        sb = stage[stage["brand"] == b]
        for k in range(windows):
            codes = sb.loc[sb["k"] == k, "stage"].to_numpy()
            row = {"brand": b, "window": k}
            row.update({name: int((codes == code).sum()) for code, name in enumerate(STAGES, start=1)})
            row["active"] = int(len(codes))
            rows.append(row)
    return rows


def _flow_rows(stage: pd.DataFrame, brands: list, windows: int) -> list[dict]:
    rows = []
    for b in brands:
        wide = stage[stage["brand"] == b].pivot(index="user_id", columns="k", values="stage")
        wide = wide.reindex(columns=range(windows)).fillna(0).astype("int64")
        for k in range(1, windows):
            m = np.zeros((len(FLOW_STAGES), len(FLOW_STAGES)), dtype=np.int64)
            np.add.at(m, (wide[k - 1].to_numpy(), wide[k].to_numpy()), 1)
            rows.append({"brand": b, "from_window": k - 1, "to_window": k, "matrix": m.tolist()})
    return rows


def funnel_counts(funnel: dict) -> pd.DataFrame:
    """The funnel's ``counts`` as a frame: brand, window, window_start, the four stages, active."""
    starts = {w["index"]: w["start"] for w in funnel["windows"]}
    df = pd.DataFrame(funnel["counts"], columns=["brand", "window", *STAGES, "active"])
    df.insert(2, "window_start", df["window"].map(starts))
    return df


def funnel_flows(funnel: dict) -> pd.DataFrame:
    """The funnel's ``flows`` in long form: brand, from_window, to_window, from_stage, to_stage, users (non-zero
    cells only)."""
    stages = funnel["flow_stages"]
    rows = [{"brand": f["brand"], "from_window": f["from_window"], "to_window": f["to_window"], "from_stage": stages[i],
             "to_stage": stages[j], "users": n}
            for f in funnel["flows"] for i, line in enumerate(f["matrix"]) for j, n in enumerate(line) if n]
    return pd.DataFrame(rows, columns=["brand", "from_window", "to_window", "from_stage", "to_stage", "users"])
