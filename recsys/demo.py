"""`recsys demo`: the main job end to end on the synthetic affiliate world (the embedded default).

Generates a seeded world, validates it against the data contracts, splits it by time without
leakage, and evaluates what the pipeline has on the full-ranking protocol beside the baselines.
Later stages (two-tower, FAISS, ranker, MLflow) join here as they land.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

ENGAGED = ("click", "cart", "fav", "purchase")


def interaction_matrix(events: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users x items matrix of engaged (clicked or deeper) pairs; ids must be dense row indices."""
    rows = events["user_id"].to_numpy(np.int64)
    cols = events["item_id"].to_numpy(np.int64)
    m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    m.data[:] = 1.0
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _table(rows: list[tuple[str, dict]], keys: tuple[str, ...]) -> str:
    head = f"{'model':<14}" + "".join(f"{k:>12}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, res in rows:
        lines.append(f"{name:<14}" + "".join(f"{res.get(k, float('nan')):>12.4f}" for k in keys))
    return "\n".join(lines)


def run_demo(*, n_events: int = 300_000, seed: int = 0) -> dict:
    """Run every stage that exists on a synthetic world of about ``n_events`` events; return the figures."""
    from recsys.datasets.splits import check_no_leakage, time_split
    from recsys.datasets.synthetic import generate_world
    from recsys.evaluation import evaluate_topk
    from recsys.features.schema import validate_tables
    from recsys.models.baselines import MostPopular, RandomRecommender

    t0 = time.perf_counter()
    print(f"== 1. synthetic affiliate world ({n_events:,} events, seed {seed})")
    world = generate_world(n_events, seed=seed)
    s = world.summary()
    print(f"   {s['users']:,} users, {s['items']:,} items, {s['media']} media partners, {s['days']} days; "
          f"CTR {s['ctr']:.2%}, purchases/click {s['purchase_per_click']:.2%}, "
          f"{s['cold_items']} cold-start and {s['invite_only_items']} invite-only items")

    print("== 2. validate against the data contracts")
    contract = ["user_id", "item_id", "timestamp", "event_type", "media_id", "value"]
    tables = validate_tables(events=world.events[contract], items=world.items, users=world.users,
                             social=world.social)
    print("   " + ", ".join(f"{name}: {len(df):,} rows OK" for name, df in tables.items()))

    print("== 3. split by time (last 20% of engaged events are test; no pair on both sides)")
    engaged = world.events[world.events["event_type"].isin(ENGAGED)]
    train_ev, test_ev = time_split(engaged, test_fraction=0.2, drop_seen_pairs=True)
    check_no_leakage(train_ev, test_ev)
    n_users, n_items = len(world.users), len(world.items)
    train, test = (interaction_matrix(e, n_users, n_items) for e in (train_ev, test_ev))
    print(f"   train {train.nnz:,} pairs, test {test.nnz:,} pairs for {int((np.diff(test.indptr) > 0).sum()):,} users")

    print("== 4. full-ranking evaluation (train items masked; LightGCN Recall/NDCG)")
    ks = (20, 50)
    rows = []
    for name, model in (("popular", MostPopular()), ("random", RandomRecommender(seed=seed))):
        start = time.perf_counter()
        res = evaluate_topk(model.fit(train), train, test, ks=ks)
        res["seconds"] = time.perf_counter() - start
        rows.append((name, res))
    print(_table(rows, ("recall@20", "ndcg@20", "recall@50", "ndcg@50")))
    print(f"== done in {time.perf_counter() - t0:.1f} s")
    return {"summary": s, "results": dict(rows)}
