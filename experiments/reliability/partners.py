"""Issue 16 items 6 and 7 re-measured on the demo-size synthetic world (300k events, seed 0).

    .venv/bin/python experiments/reliability/partners.py [--n-events 300000] [--out experiments/reliability/partners.json]

Fits a small Recommender (max_per_category=2 as the demo) and counts:

* unknown partner: what a misspelt or missing partner id gets (refused; or, in "shared" mode, items outside
  kol-0's pool in a k=800 feed); no partner (``media_id=None``): refused by the default ``no_partner="auto"``,
  and the same count under ``"catalogue"`` and ``"shared"``;
* reasons: "because you viewed" reasons on a partner that name an item the user never engaged with on that
  partner (checked from the raw events), for the serving rule and, on the same model, for the old rule
  (every event of the history citeable); each figure also under the rules before issue 16 (:func:`old_rules`);
* segments: invite-only items a ``context={"segment": "vip"}`` unlocks for known regular users / unknown users;
* short feeds: ``recommend(1279, k=460, media_id="guide-0")`` against the real count of eligible items.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys.datasets.synthetic import generate_world
from recsys.errors import DataValidationError
from recsys.feed import engine, rules
from recsys.feed.rules import eligible
from recsys.fit.components import TrainSettings
from recsys.recommender import Recommender

PARTNERS = ("guide-0", "guide-1", "kol-0", "kol-1", "app-1")


def variant(rec: Recommender, **config) -> Recommender:
    """The fitted Recommender serving under other partner settings."""
    clone = copy.copy(rec)
    clone._state = rec._state.evolve(config=replace(rec._state.config, **config))
    return clone


@contextlib.contextmanager
def old_rules():
    """The rules before issue 16, on the same model: an unknown partner gets no pool, the context segment wins,
    any event may be cited, the scan never goes beyond the category cap."""
    patches = {(engine, "check_partner"): lambda state, media: None, (engine, "pool_key"): lambda state, media: media,
               (engine, "partner_pool"): lambda state, key: None if key is None else state.pools.get(key),
               (engine, "request_segment"): lambda state, row, ctx, notes: state.users.segment_of(row, ctx),
               (engine, "partner_items"): lambda *a: None,
               (rules, "_scan_rest"): lambda *a, **kw: np.zeros(0, np.int64)}
    saved = {key: getattr(*key) for key in patches}
    try:
        for (module, name), fn in patches.items():
            setattr(module, name, fn)
        yield
    finally:
        for (module, name), fn in saved.items():
            setattr(module, name, fn)


def unknown_partner(rec: Recommender, w) -> dict:
    pool = set(w.media_pools.loc[w.media_pools["media_id"] == "kol-0", "item_id"])
    out = {"kol-0 pool": len(pool)}
    with old_rules():
        feed = rec.recommend(7, k=800, media_id="kol-0 ")
        out["'kol-0 ' old rule: items / outside kol-0's pool"] = [len(feed), len(set(feed.item_ids) - pool)]
    for typo in ("kol-0 ", "KOL-0"):
        try:
            rec.recommend(7, k=800, media_id=typo)
            out[f"{typo!r} default"] = "served"
        except DataValidationError as e:
            out[f"{typo!r} default"] = f"refused: {str(e)[:80]}"
        feed = variant(rec, unknown_partner="shared").recommend(7, k=800, media_id=typo)
        out[f"{typo!r} shared: items / outside kol-0's pool"] = [len(feed), len(set(feed.item_ids) - pool)]
    try:  # no partner under the default no_partner="auto": kol-0's pool (and others) are restricted
        rec.recommend(7, k=800)
        out["None default"] = "served"
    except DataValidationError as e:
        out["None default"] = f"refused: {str(e)[:80]}"
    for mode in ("catalogue", "shared"):
        feed = variant(rec, no_partner=mode).recommend(7, k=800)
        out[f"None no_partner={mode}: items / outside kol-0's pool"] = [len(feed), len(set(feed.item_ids) - pool)]
    return out


def cross_partner_reasons(rec: Recommender, w, n_users: int) -> dict:
    ev = w.events[w.events["event_type"].astype(str).isin(rec._state.pipeline.positive_events)]
    users = ev["user_id"].value_counts().index[:n_users].tolist()
    titles = w.items.set_index("item_id")["title"]
    touched = ev.groupby(["user_id", "media_id"])["item_id"].agg(set).to_dict()
    counts = {}
    for rule, rules_in_force in (("serving", contextlib.nullcontext), ("old rule", old_rules)):
        with rules_in_force():
            viewed = cross = 0
            for media in PARTNERS:
                out = rec.recommend_batch(users, k=20, media_id=media)
                for uid, reason in out.loc[out["reason_code"] == "viewed", ["user_id", "reason"]].itertuples(index=False):
                    named = set(titles.index[titles == reason.removeprefix("because you viewed ")])
                    viewed += 1
                    cross += not named & touched.get((uid, media), set())
        counts[rule] = {"viewed reasons": viewed, "naming an item not touched on that partner": cross}
    return {"users": len(users), "partners": list(PARTNERS), "k": 20, **counts}


def segments(rec: Recommender, w) -> dict:
    vip = set(w.items.loc[w.items["eligibility"] == "vip", "item_id"])
    regular = w.users.loc[w.users["segment"] == "regular", "user_id"].head(50).tolist()
    k = len(rec._state.catalogue)
    out = {"invite-only items": len(vip)}
    for rule, rules_in_force in (("serving", contextlib.nullcontext), ("old rule", old_rules)):
        with rules_in_force():
            claimed = rec.recommend_batch(regular, k=k, media_id="app-0", context={"segment": "vip"})
        out[f"{len(regular)} known regular users with context vip, {rule}: invite-only items served"] = int(
            claimed["item_id"].isin(vip).sum())
    new = [f"new-{i}" for i in range(20)]
    for trust in (False, True):
        feeds = variant(rec, trust_context_segment=trust).recommend_batch(new, k=k, media_id="app-0",
                                                                           context={"segment": "vip"})
        out[f"unknown users with context vip, trust={trust}: invite-only items served"] = int(
            feeds["item_id"].isin(vip).sum())
    return out


def _n_eligible(rec: Recommender, user, media: str) -> int:
    state = rec._state
    req = engine.Request(user, media, 1)
    engine._resolve(state, [req])
    return int(eligible(state.catalogue, np.arange(len(state.catalogue)), engine._scope(state, req),
                        state.config.rules).sum())


def short_feed(rec: Recommender, w, n_users: int = 30) -> dict:
    """The issue's request, then a sweep: users x partners asking for 5 fewer items than are eligible."""
    with old_rules():
        old = rec.recommend(1279, k=460, media_id="guide-0")
    feed = rec.recommend(1279, k=460, media_id="guide-0")
    out = {"k": 460, "eligible": _n_eligible(rec, 1279, "guide-0"), "returned": len(feed), "notes": feed.notes,
           "old rule: returned": len(old)}
    users = w.users["user_id"].head(n_users).tolist()
    for rule, rules_in_force in (("serving", contextlib.nullcontext), ("old rule", old_rules)):
        short = n = 0
        for media in ("guide-0", "guide-1", "guide-2", "kol-3"):
            for u in users:
                k = _n_eligible(rec, u, media) - 5
                with rules_in_force():
                    short += len(rec.recommend(u, k=k, media_id=media)) < k
                n += 1
        out[f"sweep k = eligible - 5, {rule}: short feeds / requests"] = [short, n]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-events", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=300, help="users per partner in the reasons count")
    ap.add_argument("--out", default=str(Path(__file__).with_name("partners.json")))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    t0 = time.time()
    w = generate_world(args.n_events, seed=0, progress=False)
    settings = TrainSettings(dim=16, epochs=2, ranker_max_iter=30, ranker_options={"num_threads": 1})
    rec = Recommender(max_per_category=2, train=settings).fit(
        w.events, w.items, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools, progress=False)
    fit_s = time.time() - t0
    result = {"world": {"n_events": args.n_events, "items": len(w.items), "seed": 0}, "fit_seconds": round(fit_s, 1),
              "unknown_partner": unknown_partner(rec, w), "reasons": cross_partner_reasons(rec, w, args.users),
              "segments": segments(rec, w), "short_feed": short_feed(rec, w)}
    text = json.dumps(result, indent=1, default=str)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()
