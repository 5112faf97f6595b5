"""Products to carry (选品) for a partner and partners to recruit (招商) for a merchant's item, shop or brand.

Both ask the serving ranker what would happen if a partner's audience were shown an item: for a sample of the
audience (the users :meth:`~recsys.Recommender.audience` returns, drawn with a fixed seed) every candidate item
is scored as a feed request on that partner would score it (:mod:`recsys.partners.pair_scores`), and one
impression is worth pCTR x pCVR purchases, times the price after the coupon or the partner's benefit in GMV,
times the commission rate in commission. Figures "per 1,000 impressions" spread the impressions evenly over the audience (the mean over the
sample, x 1000). Ranking by the model's pCTR x pCVR x price x rate is the issue's rule; the better part is that
each pair is scored with the partner's own features and the user's real history, not a category average.
Invite-only and out-of-stock items are never proposed. Reasons cite only the partner's own events and the
network's aggregates (:mod:`recsys.partners.engagement`).
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from recsys.errors import DataValidationError
from recsys.partners.engagement import MIN_GROUP, audiences, category_lift, item_engagement, item_purchases
from recsys.partners.pair_scores import pair_probabilities, two_tower_scores

__all__ = ["products_to_carry", "partners_to_recruit", "RECRUIT_BY"]

RECRUIT_BY = ("commission", "purchases")


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataValidationError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _sample(users: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(users) <= size:
        return users
    return users[np.sort(np.random.default_rng(seed).choice(len(users), size, replace=False))]


def _paid_price(state: Any, pos: np.ndarray, media: np.ndarray) -> np.ndarray:
    """What a buyer pays on each row's partner (``media``, one per row) for each item of ``pos`` at the serving time:
    the list price less the item's coupon or the partner's benefit then (:meth:`ServingState.paid_price`; the
    commission is on the paid price). Shape (len(media), len(pos))."""
    names, inverse = np.unique(np.asarray(media).astype(str), return_inverse=True)
    table = np.stack([state.paid_price(pos, np.full(len(pos), m, dtype=object), state.as_of_ns) for m in names])
    return table[inverse]


def _audience(rec: Any, media_id: str) -> np.ndarray:
    users = rec.audience(media_id)  # raises DataValidationError for an unknown partner
    if not len(users):
        raise DataValidationError(f"partner {media_id!r} has no audience in the serving log (no user has a click, "
                                  "cart, fav or purchase on it), so nothing can be estimated for it; log its events "
                                  "and refit or observe() them first")
    return users


def products_to_carry(rec: Any, media_id: str, n: int = 50, *, sample: int = 128, shortlist: int = 2000,
                      seed: int = 0) -> list[dict]:
    """The ``n`` items not yet in ``media_id``'s pool with the highest expected commission per 1,000 impressions
    to its audience, best first.

    ``sample`` audience users are scored (seeded); when more than ``shortlist`` items qualify, the ones with the
    highest mean two-tower score for the sample are scored (what retrieval would bring). Each dict has:
    ``rank``, ``item_id``, ``title``, ``category``, ``brand``, ``shop`` (None where the items table lacks them),
    ``price``, ``paid_price`` (after coupon), ``commission_rate``, ``pctr`` and ``pcvr`` (audience means),
    ``purchases_per_1000``, ``gmv_per_1000``, ``commission_per_1000``, ``category_lift`` (the audience's share of
    engagement in the item's category over the network's), ``network_purchases`` and ``reason`` (a sentence).
    An unknown partner, or one without an audience in the log, raises DataValidationError; a Recommender without
    a ranker raises ConfigError.
    """
    n, sample, shortlist = _count(n, "n"), _count(sample, "sample"), _count(shortlist, "shortlist")
    state = rec._ready()
    in_pool = state.catalogue.index.get_indexer(rec.pool(media_id))
    users = _sample(_audience(rec, media_id), sample, seed)
    cat = state.catalogue
    ok = cat.alive & cat.in_stock & ~cat.restricted
    ok[in_pool[in_pool >= 0]] = False
    pos = np.flatnonzero(ok)
    media = np.full(len(users), media_id, dtype=object)
    if len(pos) > shortlist:
        mean_score = two_tower_scores(state, users, media, pos).mean(axis=0)
        pos = np.sort(pos[np.argsort(-mean_score, kind="stable")[:shortlist]])
    pctr, pcvr = pair_probabilities(state, users, media, pos)
    buy = (pctr * pcvr).mean(axis=0)
    paid = _paid_price(state, pos, np.array([media_id], dtype=object))[0]
    gmv = (pctr * pcvr * paid).mean(axis=0)
    commission = gmv * cat.commission_rate[pos]
    order = np.lexsort((pos, -commission))[:n]
    lift, own = category_lift(state, media_id)
    bought = item_purchases(state)
    frame = cat.frame
    out = []
    for r, j in enumerate(order, 1):
        p = int(pos[j])
        c = str(cat.category[p])
        row = {"rank": r, "item_id": _py(cat.ids[p]), "title": str(cat.title[p]), "category": c}
        for col in ("brand", "shop"):
            row[col] = str(frame[col].iloc[p]) if col in frame.columns else None
        row.update(price=float(cat.price[p]), paid_price=float(paid[j]), commission_rate=float(cat.commission_rate[p]),
                   pctr=float(pctr[:, j].mean()), pcvr=float(pcvr[:, j].mean()),
                   purchases_per_1000=1000 * float(buy[j]), gmv_per_1000=1000 * float(gmv[j]),
                   commission_per_1000=1000 * float(commission[j]), category_lift=float(lift.get(c, 1.0)),
                   network_purchases=int(bought[p]))
        row["reason"] = _carry_reason(row, int(own.get(c, 0)))
        out.append(row)
    return out


def _carry_reason(row: dict, own_events: int) -> str:
    c, lift = row["category"], row["category_lift"]
    if own_events >= MIN_GROUP and lift >= 1.2:
        who = f"users like yours engage with {c} {lift:.1f}x as much as the network"
    elif own_events >= MIN_GROUP and lift <= 0.8:
        who = f"your audience engages with {c} less than the network ({lift:.1f}x), but scores this item high"
    else:
        who = f"the model expects your audience to buy this {c} item"
    sold = f"; bought {row['network_purchases']} times across the network" if row["network_purchases"] else ""
    return (f"{who}: {row['commission_per_1000']:.2f} commission per 1,000 impressions "
            f"(pCTR {row['pctr']:.1%}, pCVR {row['pcvr']:.1%}, rate {row['commission_rate']:.0%}){sold}")


def _merchant_items(state: Any, item_id: Any, shop: Any, brand: Any, max_items: int) -> tuple[str, Any, np.ndarray]:
    given = [(k, v) for k, v in (("item_id", item_id), ("shop", shop), ("brand", brand)) if v is not None]
    if len(given) != 1:
        raise DataValidationError(f"pass exactly one of item_id, shop or brand; got {[k for k, _ in given] or 'none'}")
    key, value = given[0]
    cat = state.catalogue
    if key == "item_id":
        from recsys.ids import coerce_id, id_kind

        value, _ = coerce_id(value, id_kind(cat.index), "item_id", "")
        pos = cat.positions([value])
        if pos[0] < 0 or not cat.alive[pos[0]]:
            raise DataValidationError(f"unknown item_id {value!r}: it is not in the live catalogue. Pass the id of "
                                      "a live item")
        return key, value, pos.astype(np.int64)
    if key not in cat.frame.columns:
        raise DataValidationError(f"the items table has no {key!r} column, so items cannot be found by {key}; "
                                  "pass item_id instead")
    names = cat.frame[key].astype(str).to_numpy()
    pos = np.flatnonzero((names == str(value)) & cat.alive)
    if not len(pos):
        close = difflib.get_close_matches(str(value), sorted(set(names[cat.alive].tolist())), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataValidationError(f"unknown {key} {value!r}{hint}: no live item has it. Pass a {key} of the items "
                                  "table")
    if len(pos) > max_items:  # the merchant's most engaged items speak for it
        pos = np.sort(pos[np.argsort(-item_engagement(state)[pos], kind="stable")[:max_items]])
    return key, value, pos


def partners_to_recruit(rec: Any, item_id: Any = None, shop: str | None = None, brand: str | None = None,
                        n: int = 20, *, sample: int = 64, max_items: int = 50, by: str = "commission",
                        include_current: bool = False, seed: int = 0) -> list[dict]:
    """The ``n`` partners whose audiences would bring a merchant's item, shop or brand (exactly one) the most
    expected commission (``by="commission"``) or purchases (``by="purchases"``), best first.

    A partner's expected figures assume one impression of the merchant's items (up to ``max_items``, its most
    engaged) per audience member: ``audience_size`` x the mean per impression over a ``sample`` of the audience
    and the items. Partners whose pools already hold every one of the items are left out unless
    ``include_current``; partners without an audience in the log are left out. Each dict has: ``rank``,
    ``media_id``, ``audience_size``, ``items_considered``, ``items_in_pool``, ``purchases_per_1000``,
    ``gmv_per_1000``, ``commission_per_1000``, ``expected_purchases``, ``expected_gmv``, ``expected_commission``,
    ``category``, ``category_lift`` (the partner's audience in the items' main category against the network) and
    ``reason``. Unknown ids raise DataValidationError.
    """
    n, sample, max_items = _count(n, "n"), _count(sample, "sample"), _count(max_items, "max_items")
    if by not in RECRUIT_BY:
        raise DataValidationError(f"by must be one of {RECRUIT_BY}, got {by!r}")
    state = rec._ready()
    _, _, pos = _merchant_items(state, item_id, shop, brand, max_items)
    from recsys.feed.partners import partner_pool

    groups, sizes, carried = [], {}, {}
    by_partner = audiences(state)
    for m in rec.partners():
        mask = partner_pool(state, m)
        carried[m] = len(pos) if mask is None else int(mask[pos[pos < len(mask)]].sum())
        if carried[m] == len(pos) and not include_current:
            continue
        users = by_partner[m]
        if len(users):
            sizes[m] = len(users)
            groups.append((m, _sample(users, sample, seed)))
    if not groups:
        return []
    users = np.concatenate([np.asarray(u, dtype=object) for _, u in groups])
    media = np.concatenate([np.full(len(u), m, dtype=object) for m, u in groups])
    pctr, pcvr = pair_probabilities(state, users, media, pos)
    buy = pctr * pcvr
    gmv = buy * _paid_price(state, pos, media)
    commission = gmv * state.catalogue.commission_rate[pos]
    values, cats = np.unique(state.catalogue.category[pos].astype(str), return_counts=True)
    main = str(values[np.argmax(cats)])
    rows, start = [], 0
    for m, u in groups:
        part = slice(start, start + len(u))
        start += len(u)
        per = {k: float(v[part].mean()) for k, v in (("buy", buy), ("gmv", gmv), ("commission", commission))}
        lift, own = category_lift(state, m)
        rows.append({"media_id": m, "audience_size": sizes[m], "items_considered": len(pos),
                     "items_in_pool": carried[m], "purchases_per_1000": 1000 * per["buy"],
                     "gmv_per_1000": 1000 * per["gmv"], "commission_per_1000": 1000 * per["commission"],
                     "expected_purchases": sizes[m] * per["buy"], "expected_gmv": sizes[m] * per["gmv"],
                     "expected_commission": sizes[m] * per["commission"], "category": main,
                     "category_lift": float(lift.get(main, 1.0)), "_own": int(own.get(main, 0))})
    key = "expected_commission" if by == "commission" else "expected_purchases"
    rows.sort(key=lambda r: (-r[key], r["media_id"]))
    for r, row in enumerate(rows[:n], 1):
        row["rank"] = r
        row["reason"] = _recruit_reason(row, row.pop("_own"))
    return [{"rank": row.pop("rank"), **row} for row in rows[:n]]


def _recruit_reason(row: dict, own_events: int) -> str:
    lift = (f"; its audience engages with {row['category']} {row['category_lift']:.1f}x as much as the network"
            if own_events >= MIN_GROUP else "")
    return (f"{row['audience_size']} audience members, {row['purchases_per_1000']:.2f} purchases and "
            f"{row['commission_per_1000']:.2f} commission per 1,000 impressions: about "
            f"{row['expected_commission']:.2f} commission if each member sees the items once{lift}")
