"""Does the item-to-item channel bring what the embedding channel misses? Candidate recall on a LightGCN split.

A feed can only show what retrieval brought, so a second recall channel is worth its cost when the union of
candidates holds more of the user's future items than the first channel alone given the same number of slots.
For every test user of a LightGCN-format directory this measures, side by side:

- the embedding channel's top ``n + extra`` items (implicit-ALS factors, or the two-tower with
  ``embedding="two_tower"``), training items excluded;
- its top ``n`` plus the item-to-item channel's best ``extra`` items not already among them: what
  ``Recommender(n_candidates=n, item_to_item=extra)`` merges (:func:`recsys.feed.engine._merge_channels`), with
  the same table (:class:`recsys.feed.item_table.ItemTable`, 50 neighbours) and the same seeds (the user's last
  :data:`~recsys.feed.item_table.SEED_ITEMS` training items in the file's order);

and each set's recall of the user's test items (mean over users with test items), plus each channel alone at 20.
``run_channel_recall_benchmark`` writes JSON and a markdown table only where it is told.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.storage.atomic import write_text_atomically

__all__ = ["run_channel_recall_benchmark"]

ALS_PARAMS = {"factors": 64, "regularization": 10.0, "alpha": 50.0, "iterations": 15, "seed": 0}


def _embedding_top(rows: np.ndarray, user_f: np.ndarray, item_f: np.ndarray, train: sp.csr_matrix, k: int,
                   batch: int = 2048) -> np.ndarray:
    """The ``k`` best items of each user of ``rows`` by inner product, training items excluded (best first)."""
    out = np.empty((len(rows), k), np.int64)
    for s in range(0, len(rows), batch):
        r = rows[s:s + batch]
        scores = user_f[r] @ item_f.T
        seen = train[r]
        scores[np.repeat(np.arange(len(r)), np.diff(seen.indptr)), seen.indices] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(scores, part, axis=1)
        out[s:s + len(r)] = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)
    return out


def _seeds(train_pairs, n_users: int, cap: int) -> list[np.ndarray]:
    """Each user's last ``cap`` training items in the file's order."""
    users, items = train_pairs
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[max(bounds[u], bounds[u + 1] - cap):bounds[u + 1]] for u in range(n_users)]


def _table_top(table, seeds: np.ndarray, banned: np.ndarray, k: int) -> np.ndarray:
    """The item-to-item channel's ``k`` best items for ``seeds``, none of ``banned`` (sorted), as the engine
    ranks them: summed weight, then lower position."""
    from recsys.feed.item_table import best

    items, sums, _ = table.reach(np.unique(seeds))
    ok = ~np.isin(items, banned, assume_unique=False)
    items, sums = items[ok], sums[ok]
    return items[best(items, sums, k)]


def _recall(found: list[np.ndarray], test: sp.csr_matrix, rows: np.ndarray) -> float:
    hits = [np.isin(test.indices[test.indptr[u]:test.indptr[u + 1]], f).sum() / (test.indptr[u + 1] - test.indptr[u])
            for u, f in zip(rows, found, strict=True)]
    return float(np.mean(hits))


def _embeddings(kind: str, train: sp.csr_matrix, seed: int, config: str | Path | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    t = time.perf_counter()
    if kind == "als":
        from recsys.models.baselines import ImplicitALS

        m = ImplicitALS(**{**ALS_PARAMS, "seed": seed}).fit(train)
        return m.user_factors_, m.item_factors_, {"kind": "implicit-als", "params": {**ALS_PARAMS, "seed": seed},
                                                  "fit_seconds": round(time.perf_counter() - t, 1)}
    if kind == "two_tower":
        from dataclasses import replace

        from recsys.channels.two_tower_fit import fit_two_tower_embeddings
        from recsys.fit.two_tower_settings import load_two_tower_settings

        emb = fit_two_tower_embeddings(replace(load_two_tower_settings(config), seed=seed), train, log=lambda m: None)
        return emb.test_users, emb.test_items, {"kind": "two-tower", "config": None if config is None else str(config),
                                                "seed": seed, "fit_seconds": round(time.perf_counter() - t, 1)}
    from recsys.errors import ConfigError

    raise ConfigError(f"embedding must be 'als' or 'two_tower'; got {kind!r}.")


def run_channel_recall_benchmark(data_dir: str | Path, json_path: str | Path | None = None, *,
                                 n_candidates: int = 300, extras: tuple[int, ...] = (50, 100),
                                 embedding: str = "als", config: str | Path | None = None, seed: int = 0,
                                 log=print) -> dict[str, Any]:
    """Candidate recall of the embedding channel alone and merged with the item-to-item channel (module doc);
    ``config``: the two-tower's settings (a YAML as ``recsys benchmark retrieval --config`` takes) for
    ``embedding="two_tower"``."""
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.feed.item_table import NEIGHBOURS, SEED_ITEMS, ItemTable

    t0 = time.perf_counter()
    ds = load_lightgcn(data_dir)
    train, test = ds.train_matrix(), ds.test_matrix()
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    user_f, item_f, emb_meta = _embeddings(embedding, train, seed, config)
    log(f"{ds.name}: {embedding} fitted in {emb_meta['fit_seconds']} s")
    t = time.perf_counter()
    table = ItemTable.build(train, NEIGHBOURS)
    table_seconds = time.perf_counter() - t
    k_max = n_candidates + max(extras)
    top = _embedding_top(rows, user_f, item_f, train, k_max)
    seeds = _seeds((ds.train["user_id"].to_numpy(), ds.train["item_id"].to_numpy()), ds.n_users, SEED_ITEMS)
    seen = [train.indices[train.indptr[u]:train.indptr[u + 1]] for u in rows]
    out: dict[str, Any] = {
        "data_dir": str(data_dir), "n_users": ds.n_users, "n_items": ds.n_items, "test_users": int(len(rows)),
        "embedding": emb_meta, "item_table": {"neighbours": NEIGHBOURS, "seed_items": SEED_ITEMS,
                                              "entries": int(len(table.indices)),
                                              "build_seconds": round(table_seconds, 2)},
        "n_candidates": n_candidates,
        "alone_at_20": {"embedding": _recall(list(top[:, :20]), test, rows),
                        "item_to_item": _recall([_table_top(table, seeds[u], np.sort(s), 20)
                                                 for u, s in zip(rows, seen, strict=True)], test, rows)},
        "candidate_recall": []}
    for extra in extras:
        merged = [np.concatenate([top[j, :n_candidates],
                                  _table_top(table, seeds[u], np.sort(np.concatenate([seen[j], top[j, :n_candidates]])),
                                             extra)])
                  for j, u in enumerate(rows)]
        sizes = np.array([len(m) for m in merged])
        row = {"extra": extra, "embedding_alone": _recall(list(top[:, :n_candidates + extra]), test, rows),
               "embedding_plus_item_to_item": _recall(merged, test, rows),
               "embedding_first_n_only": _recall(list(top[:, :n_candidates]), test, rows),
               "mean_candidates_merged": float(sizes.mean())}
        row["ratio"] = row["embedding_plus_item_to_item"] / row["embedding_alone"]
        out["candidate_recall"].append(row)
        log(f"  n={n_candidates} + {extra}: embedding alone {row['embedding_alone']:.4f}, with item-to-item "
            f"{row['embedding_plus_item_to_item']:.4f} ({row['ratio']:.3f}x)")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["machine"] = {"cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)}
    if json_path is not None:
        path = Path(json_path)
        write_text_atomically(path, json.dumps(out, indent=2) + "\n")
        write_text_atomically(path.with_suffix(".md"), _markdown(out))
    return out


def _markdown(r: dict) -> str:
    lines = [f"# Candidate recall: {r['embedding']['kind']} alone and with the item-to-item channel",
             "", f"`{r['data_dir']}`: {r['n_users']:,} users x {r['n_items']:,} items, {r['test_users']:,} test users. "
             f"Item table: {r['item_table']['neighbours']} neighbours an item, seeds the last "
             f"{r['item_table']['seed_items']} training items, built in {r['item_table']['build_seconds']} s.", "",
             f"Each channel alone, Recall@20: embedding {r['alone_at_20']['embedding']:.4f}, item-to-item "
             f"{r['alone_at_20']['item_to_item']:.4f}.", "",
             "| candidates | embedding alone | embedding top n + item-to-item | ratio |", "|---|---|---|---|"]
    for c in r["candidate_recall"]:
        lines.append(f"| {r['n_candidates']} + {c['extra']} | {c['embedding_alone']:.4f} | "
                     f"{c['embedding_plus_item_to_item']:.4f} | {c['ratio']:.3f} |")
    return "\n".join(lines) + "\n"
