"""Catalogue updates under concurrency: are removals, stock changes and additions ever lost?

Two writer threads and two reader threads share one fitted Recommender (small synthetic world):

* writer A adds ``--batches`` batches of 3 new items (``add_items``);
* writer B removes ``--removals`` live items one by one and marks every second step another item out of
  stock (``remove_items``, ``set_in_stock``), paced so that both writers overlap;
* readers call ``recommend`` until both writers are done (known users, with and without a partner, and
  unknown users, who get the popular items); each read remembers which removals and stock
  changes had *returned* before it began, and counts as stale when its feed shows one of those items.

At the end it counts removed items alive again, out-of-stock items back in stock, added items missing,
and items the catalogue serves but the index lost. Linearizable updates give 0 for all of them.

    .venv/bin/python experiments/reliability/concurrency.py --out experiments/reliability/concurrency.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np


def build(seed: int, n_items: int):
    """A small fitted Recommender (two-tower, exact index, GBDT ranker) and its world."""
    import torch

    from recsys.datasets.synthetic import generate_world
    from recsys.fit.components import TrainSettings
    from recsys.recommender import Recommender

    torch.set_num_threads(1)
    w = generate_world(30_000, n_items=n_items, seed=seed, progress=False)
    settings = TrainSettings(dim=16, epochs=2, title_buckets=256, ranker_max_iter=15,
                             ranker_options={"check_leakage": False, "num_threads": 1}, seed=seed)
    rec = Recommender(max_per_category=None, train=settings, no_partner="catalogue").fit(  # readers ask the catalogue
        w.events, w.items, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools, progress=False)
    return rec, w


def run(rec, w, *, seed: int, removals: int, batches: int, readers: int, k: int, pace: float) -> dict:
    """One stress round; returns the counts (see the module docstring)."""
    rng = np.random.default_rng(seed)
    items = w.items
    servable = items.loc[items["in_stock"].astype(bool) & (items["eligibility"].fillna("") == ""), "item_id"]
    targets = rng.permutation(servable.to_numpy())
    to_remove, to_stock_out = targets[:removals].tolist(), targets[removals:removals + removals // 2].tolist()
    base = int(items["item_id"].max()) + 1_000
    new_ids = [base + i for i in range(3 * batches)]
    users = w.users["user_id"].to_numpy()
    done: list[tuple[str, int]] = []  # updates in the order they returned
    errors: list[BaseException] = []
    writers_left = [2]
    reads, stale, stale_items = [0], [0], set()
    lock = threading.Lock()
    start = threading.Barrier(2 + readers)

    def adder() -> None:
        try:
            start.wait()
            for b in range(batches):
                src = items.sample(3, random_state=seed + b)
                rec.add_items(src.assign(item_id=new_ids[3 * b:3 * b + 3]))
                with lock:
                    done.extend(("added", i) for i in new_ids[3 * b:3 * b + 3])
        except BaseException as e:  # reported in the result
            errors.append(e)
        finally:
            writers_left[0] -= 1

    def remover() -> None:
        try:
            start.wait()
            for n, item in enumerate(to_remove):
                rec.remove_items([item])
                with lock:
                    done.append(("removed", item))
                if n % 2 == 0 and n // 2 < len(to_stock_out):
                    rec.set_in_stock([to_stock_out[n // 2]], False)
                    with lock:
                        done.append(("out_of_stock", to_stock_out[n // 2]))
                time.sleep(pace)
        except BaseException as e:
            errors.append(e)
        finally:
            writers_left[0] -= 1

    def reader(r: int) -> None:
        rr = np.random.default_rng([seed, r])
        try:
            start.wait()
            while writers_left[0] > 0:
                with lock:
                    gone = {i for kind, i in done if kind != "added"}
                n = reads[0] + r
                user = users[rr.integers(len(users))] if n % 3 else -1 - n  # every third: an unknown user
                feed = rec.recommend(user, k=k, media_id="app-0" if n % 3 == 2 else None)
                bad = set(feed.item_ids) & gone
                with lock:
                    reads[0] += 1
                    stale[0] += bool(bad)
                    stale_items.update(bad)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=adder), threading.Thread(target=remover)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(readers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    state = rec._state
    cat = state.catalogue
    live = lambda ids: cat.alive[cat.positions(ids)] & (cat.positions(ids) >= 0)  # noqa: E731
    in_index = set(state.index.ids.tolist())
    served = cat.ids[cat.alive]
    return {
        "removed_items_alive_again": [int(live(to_remove).sum()), len(to_remove)],
        "out_of_stock_items_back_in_stock": [int(cat.in_stock[cat.positions(to_stock_out)].sum()), len(to_stock_out)],
        "added_items_missing": [int((~live(new_ids)).sum()), len(new_ids)],
        "stale_reads": [stale[0], reads[0]],
        "distinct_stale_items": len(stale_items),
        "live_items_missing_from_index": int(sum(i not in in_index for i in served.tolist())),
        "errors": [f"{type(e).__name__}: {e}" for e in errors],
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("experiments/reliability/concurrency.json"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--items", type=int, default=600, help="catalogue size of the synthetic world")
    p.add_argument("--removals", type=int, default=120, help="items removed (half as many marked out of stock)")
    p.add_argument("--batches", type=int, default=40, help="add_items calls (3 new items each)")
    p.add_argument("--readers", type=int, default=2)
    p.add_argument("--k", type=int, default=100, help="feed length of each read")
    p.add_argument("--pace", type=float, default=0.03, help="seconds writer B waits between steps")
    p.add_argument("--label", default="", help="free text stored with the result (e.g. the commit)")
    a = p.parse_args(argv)
    rec, w = build(a.seed, a.items)
    result = run(rec, w, seed=a.seed, removals=a.removals, batches=a.batches, readers=a.readers, k=a.k, pace=a.pace)
    out = {"label": a.label, "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "settings": {k: v for k, v in vars(a).items() if k not in ("out", "label")}, **result}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
