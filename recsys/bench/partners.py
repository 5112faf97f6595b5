"""Products to carry and partners to recruit, measured against the synthetic world's generating truth.

``run_partners_benchmark`` generates a world, fits a Recommender on its whole log and asks
:func:`~recsys.partners.selection.products_to_carry` and :func:`~recsys.partners.selection.partners_to_recruit`
for proposals. Each proposal is then valued with the truth (:class:`~recsys.datasets.synthetic_truth.WorldTruth`):
the exact expected commission of one impression (P(click) x P(purchase | click) x price after coupon x rate, in
the partner's feed, first slot) to the partner's *true* audience (``world.media_audience``, not the log's).

* **carry**, per partner with a restricted pool: the mean true commission per 1,000 impressions of the top ``n``
  proposed items, against the ``n`` most-bought candidate items of the log (popular-items baseline), a random
  candidate (the candidates' mean) and the oracle (the true best ``n``). Candidates are the same for all: live,
  in stock, open to everyone, not in the pool.
* **recruit**, per target (random items, brands and shops): the true total expected commission (true audience
  size x mean per impression over the target's items) of the top ``k`` partners proposed, against the ``k``
  partners with the biggest audiences in the log (biggest-partner baseline) and the oracle, all chosen among the
  same partners (those not yet carrying every item and with an audience in the log). ``per_impression`` asks
  which audiences fit best, whatever their size: the true commission per 1,000 impressions of the ``k`` partners
  with the best estimated commission per 1,000 impressions (``fit_*`` fields), against the same baseline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_partners_benchmark", "true_commission"]

EVAL_USERS = 1000  # true-audience users each partner's truth is averaged over (seeded sample)


def true_commission(truth: Any, users: np.ndarray, items: np.ndarray, media: str) -> np.ndarray:
    """Mean over ``users`` of the true expected commission of one first-slot impression of each item on
    ``media`` (one value per item), in chunks of users."""
    out = np.zeros(len(items))
    step = max(1, 2_000_000 // max(len(items), 1))
    for s in range(0, len(users), step):
        u = users[s:s + step, None]
        out += truth.expected_value(u, items[None, :], "commission", media=media).sum(axis=0)
    return out / max(len(users), 1)


def _world_and_model(n_events: int, seed: int, progress: bool) -> tuple[Any, Any, dict]:
    import recsys
    from recsys.datasets.synthetic import generate_world
    from recsys.fit.components import TrainSettings

    t = time.process_time()
    world = generate_world(n_events, seed=seed, progress=progress)
    rec = recsys.Recommender(train=TrainSettings(seed=seed)).fit(
        world.events, world.items, users=world.users, social=world.social, media=world.media,
        media_pools=world.media_pools, progress=progress)
    info = {"events": len(world.events), "users": len(world.users), "items": len(world.items),
            "partners": len(world.media), "purchases": int((world.events["event_type"] == "purchase").sum()),
            "ranker": rec.train_summary_.get("ranker", {}).get("kind"), "setup_cpu_seconds": time.process_time() - t}
    return world, rec, info


def _eval_users(world: Any, media: str, seed: int) -> np.ndarray:
    aud = world.media_audience
    users = aud.loc[aud["media_id"] == media, "user_id"].to_numpy(np.int64)
    if len(users) > EVAL_USERS:
        users = np.sort(np.random.default_rng(seed).choice(users, EVAL_USERS, replace=False))
    return users


def _candidates(world: Any, rec: Any, media: str) -> np.ndarray:
    items = world.items
    ok = items["in_stock"].to_numpy(bool) & (items["eligibility"].to_numpy(dtype=object) == "")
    ok[np.asarray(rec.pool(media), dtype=np.int64)] = False
    return np.flatnonzero(ok).astype(np.int64)  # item_id = row in a synthetic world


def _carry(world: Any, rec: Any, n: int, seed: int) -> list[dict]:
    from recsys.partners.selection import products_to_carry

    bought = np.bincount(world.events.loc[world.events["event_type"] == "purchase", "item_id"].to_numpy(np.int64),
                         minlength=len(world.items))
    engaged = np.bincount(world.events.loc[world.events["event_type"] != "impression", "item_id"].to_numpy(np.int64),
                          minlength=len(world.items))
    rows = []
    for media in rec.partners():
        cand = _candidates(world, rec, media)
        if len(cand) < n or not len(rec.audience(media)):
            continue  # an unrestricted pool (nothing to add) or no audience in the log
        t = time.process_time()
        proposed = np.array([r["item_id"] for r in products_to_carry(rec, media, n=n)], dtype=np.int64)
        cpu = time.process_time() - t
        value = true_commission(world.truth, _eval_users(world, media, seed), cand, media)  # cand is sorted
        popular = cand[np.lexsort((cand, -engaged[cand], -bought[cand]))[:n]]
        oracle = cand[np.argsort(-value, kind="stable")[:n]]
        rows.append({"media_id": media, "candidates": len(cand),
                     "proposed": 1000 * float(value[np.searchsorted(cand, proposed)].mean()),
                     "popular": 1000 * float(value[np.searchsorted(cand, popular)].mean()),
                     "random": 1000 * float(value.mean()),
                     "oracle": 1000 * float(value[np.searchsorted(cand, oracle)].mean()), "cpu_seconds": cpu,
                     "overlap_with_oracle": len(np.intersect1d(proposed, oracle)) / n})
    return rows


def _targets(world: Any, n_items: int, n_groups: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = world.items
    open_items = items.loc[items["in_stock"] & (items["eligibility"] == "")]
    out = [{"item_id": int(i)} for i in rng.choice(open_items["item_id"].to_numpy(), n_items, replace=False)]
    for col in ("brand", "shop"):
        sizes = open_items[col].value_counts()
        names = np.sort(sizes.index[sizes >= 3].to_numpy(dtype=object))
        out += [{col: str(v)} for v in rng.choice(names, min(n_groups, len(names)), replace=False)]
    return out


def _recruit(world: Any, rec: Any, k: int, targets: list[dict], seed: int) -> list[dict]:
    from recsys.partners.selection import partners_to_recruit

    aud = world.media_audience.groupby("media_id").size()
    rows = []
    for target in targets:
        t = time.process_time()
        ranked = partners_to_recruit(rec, **target, n=10_000)
        cpu = time.process_time() - t
        if len(ranked) < k:
            continue
        items = _considered(rec, target)
        per = {r["media_id"]: float(true_commission(world.truth, _eval_users(world, r["media_id"], seed), items,
                                                    r["media_id"]).mean()) for r in ranked}
        total = {m: float(aud.get(m, 0)) * v for m, v in per.items()}
        biggest = [r["media_id"] for r in sorted(ranked, key=lambda r: (-r["audience_size"], r["media_id"]))[:k]]
        picks = {"proposed": [r["media_id"] for r in ranked[:k]], "biggest": biggest,
                 "oracle": sorted(total, key=lambda m: (-total[m], m))[:k]}
        fit = {"fit_proposed": [r["media_id"] for r in sorted(ranked, key=lambda r: (-r["commission_per_1000"],
                                                                                     r["media_id"]))[:k]],
               "fit_biggest": biggest, "fit_oracle": sorted(per, key=lambda m: (-per[m], m))[:k]}
        rows.append({"target": target, "partners": len(ranked), "items": len(items),
                     "proposed_partners": picks["proposed"], "biggest_partners": biggest,
                     **{name: float(sum(total[m] for m in ids)) for name, ids in picks.items()},
                     **{name: 1000 * float(np.mean([per[m] for m in ids])) for name, ids in fit.items()},
                     "cpu_seconds": cpu})
    return rows


def _considered(rec: Any, target: dict) -> np.ndarray:
    """The item ids partners_to_recruit valued for ``target`` (a shop's or brand's most engaged items)."""
    from recsys.partners.selection import _merchant_items

    state = rec._ready()
    pos = _merchant_items(state, target.get("item_id"), target.get("shop"), target.get("brand"), 50)[2]
    return np.asarray(state.catalogue.ids[pos], dtype=np.int64)


def _summary(rows: list[dict], ours: str, base: str, oracle: str = "oracle") -> dict:
    if not rows:
        return {"n": 0}
    get = lambda key: np.array([r[key] for r in rows], float)  # noqa: E731
    a, b, o = get(ours), get(base), get(oracle)
    tol = 1e-9 * np.maximum(np.abs(a), np.abs(b))  # the same picks summed in another order are a tie
    return {"n": len(rows), f"mean_{ours}": float(a.mean()), f"mean_{base}": float(b.mean()),
            f"mean_{oracle}": float(o.mean()), f"ratio_{ours}_to_{base}": float(a.sum() / max(b.sum(), 1e-12)),
            f"share_of_{oracle}_{ours}": float(a.sum() / max(o.sum(), 1e-12)),
            f"share_of_{oracle}_{base}": float(b.sum() / max(o.sum(), 1e-12)),
            "wins": int((a > b + tol).sum()), "losses": int((a < b - tol).sum()),
            "mean_cpu_seconds": float(get("cpu_seconds").mean())}


def run_partners_benchmark(n_events: int = 1_000_000, *, seed: int = 0, carry_n: int = 20, recruit_k: int = 3,
                           recruit_items: int = 20, recruit_groups: int = 5, progress: bool | None = None,
                           json_path: str | Path | None = None) -> dict:
    """Proposal quality against the truth and the baselines (see the module docstring); JSON-able figures."""
    world, rec, info = _world_and_model(n_events, seed, progress)
    carry = _carry(world, rec, carry_n, seed)
    recruit = _recruit(world, rec, recruit_k, _targets(world, recruit_items, recruit_groups, seed), seed)
    result = {"world": {"n_events": n_events, "seed": seed, **info},
              "settings": {"carry_n": carry_n, "recruit_k": recruit_k, "eval_users": EVAL_USERS,
                           "value": "true expected commission, first feed slot, partner's true audience"},
              "carry": {"summary": _summary(carry, "proposed", "popular"), "partners": carry},
              "recruit": {"summary": _summary(recruit, "proposed", "biggest"),
                          "per_impression": _summary(recruit, "fit_proposed", "fit_biggest", "fit_oracle"),
                          "targets": recruit}}
    if json_path is not None:
        import json

        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return result
