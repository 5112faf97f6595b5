"""Validation-only probe of other ways to fuse a pipeline's channels: per-user metrics on one seed's held-apart fusion
users (the config needs ``fusion_users``), the weights of each way chosen on those users, and a 2-fold check of
how much of that choice is noise. Test is never read:

    python experiments/retrieval/probe_fusion.py DATA_DIR PIPELINE_YAML OUT_JSON [SEED]

The ways, each a grid of weights for ``graph_filter 1 + w * two_tower + p * popular (+ ...)``:

- ``z``: the pipeline's fusion (``recsys.channels.fusion.standardise``: z-scores over each user's unseen items);
- ``z_top``, ``minmax_top``: z-scores, or min-max scaling, from each channel's top 200 scores of the user;
- ``rank``: reciprocal rank, ``1 / (60 + rank)``;
- ``z_als``: ``z`` plus an implicit-ALS channel (the travelling default's three settings, weights 0.25-1);
- ``z_by_degree``: ``z`` with its weights chosen separately for each quartile of the users' training-item counts.

For each way: the best grid point on all the fusion users (what ``fit_fusion_weights`` would pick) with its
Recall@20 / NDCG@20, and ``cv_recall@20``: the fusion users cut in two halves at random 30 times, the weights
chosen on one half and read on the other, both ways round, the mean. A way that wins in sample but not in ``cv``
wins by its larger grid, not by a better fusion. The two-tower is read from (or written to) the config's
``cache_dir``; the metrics are the LightGCN protocol's (training items masked), per user.
"""
import json
import sys
import time

import numpy as np

from recsys.bench.pipeline_settings import load_pipeline_settings
from recsys.bench.retrieval_pipeline import fit_training_free
from recsys.channels.fusion import standardise
from recsys.channels.two_tower_fit import fit_two_tower_embeddings
from recsys.datasets.lightgcn import load_lightgcn
from recsys.evaluation import EmbeddingScorer
from recsys.fit.validation import carve_validation, split_validation_users
from recsys.models.baselines import ImplicitALS
from recsys.tuning.defaults import ALS_CANDIDATES

K, TOP, HALVINGS = 20, 200, 30
TT = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0]
SCALED_TT = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]  # top-200 scalings put the channels nearer 1:1
POP = [0.0, 0.1]


def scale(x: np.ndarray, way: str) -> np.ndarray:
    """One channel's block (seen items at -inf) scaled per user the named way."""
    if way == "rank":
        return 1.0 / (60.0 + np.argsort(np.argsort(-x, axis=1), axis=1))
    top = -np.partition(-x, TOP, axis=1)[:, :TOP]
    if way == "z_top":
        return (x - top.mean(1, keepdims=True)) / np.maximum(top.std(1, keepdims=True), 1e-12)
    lo, hi = top.min(1, keepdims=True), top.max(1, keepdims=True)
    return (x - lo) / np.maximum(hi - lo, 1e-12)


def per_user(fused: np.ndarray, seen_rc: tuple, target) -> tuple[np.ndarray, np.ndarray]:
    """Recall@K and NDCG@K of each row of ``fused`` (seen items masked) against ``target``'s rows."""
    f = fused.copy()
    f[seen_rc] = -np.inf
    top = np.argpartition(-f, K, axis=1)[:, :K]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(f, top, 1), axis=1), 1)
    disc = 1.0 / np.log2(np.arange(2, K + 2))
    rec, ndcg = np.zeros(len(f)), np.zeros(len(f))
    for i in range(len(f)):
        items = target.indices[target.indptr[i]:target.indptr[i + 1]]
        hit = np.isin(top[i], items)
        rec[i] = hit.sum() / len(items)
        ndcg[i] = (hit * disc).sum() / disc[:min(len(items), K)].sum()
    return rec, ndcg


def grids() -> dict[str, list[tuple]]:
    """Each way's grid points: (two-tower weight, popular weight, ALS setting or None, ALS weight)."""
    z = [(w, p, None, 0.0) for w in TT for p in POP]
    als = [(w, p, a, v) for w in TT for p in POP for a in range(len(ALS_CANDIDATES)) for v in (0.25, 0.5, 1.0)]
    scaled = [(w, p, None, 0.0) for w in SCALED_TT for p in POP]
    return {"z": z, "z_top": scaled, "minmax_top": scaled, "rank": scaled, "z_als": z + als}


def halving_check(rec: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> float:
    """Mean recall when each group's weights are chosen on a random half and read on the other (both ways)."""
    out = []
    for _ in range(HALVINGS):
        half, total = rng.random(len(rec)) < 0.5, 0.0
        for pick, read in ((half, ~half), (~half, half)):
            for g in np.unique(groups):
                p, r = pick & (groups == g), read & (groups == g)
                total += rec[r, int(np.argmax(rec[p].mean(0)))].sum()
        out.append(total / len(rec))
    return float(np.mean(out))


def main() -> None:
    data_dir, config, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = load_pipeline_settings(config)
    cfg = settings.seeded(int(sys.argv[4]) if len(sys.argv) > 4 else settings.seeds[0])
    if not settings.fusion_users:
        sys.exit(f"{config}: probe_fusion needs `fusion_users` (the held-apart fusion users) in the config")
    train = load_lightgcn(data_dir).train_matrix()  # test.txt is loaded with it but never read
    emb = fit_two_tower_embeddings(cfg, train, log=print, cache_dir=settings.cache_dir,
                                   held_for_fusion=settings.fusion_users)
    fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
    _, valid = split_validation_users(valid, settings.fusion_users, cfg.seed)
    scorers, _ = fit_training_free(settings, fit)
    scorers["two_tower"] = EmbeddingScorer(emb.valid_users, emb.valid_items)
    for a, als in enumerate(ALS_CANDIDATES):
        scorers[f"als{a}"] = ImplicitALS(factors=64, iterations=15, seed=cfg.seed, **als).fit(fit)
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    ways = grids()
    rec = {w: np.zeros((len(users), len(g))) for w, g in ways.items()}
    ndcg = {w: np.zeros_like(r) for w, r in rec.items()}
    t0 = time.perf_counter()
    for s in range(0, len(users), 512):
        batch = users[s:s + 512]
        seen = fit[batch]
        rc = (np.repeat(np.arange(len(batch)), np.diff(seen.indptr)), seen.indices)
        raw = {n: sc.score(batch).astype(np.float64) for n, sc in scorers.items()}
        for x in raw.values():
            x[rc] = -np.inf
        for way, grid in ways.items():
            z = {n: (standardise(x, seen) if way.startswith("z") and way != "z_top" else scale(x, way))
                 for n, x in raw.items() if way == "z_als" or not n.startswith("als")}
            for j, (w, p, a, v) in enumerate(grid):
                fused = z["graph_filter"] + w * z["two_tower"] + (p * z["popular"] if p else 0.0) + \
                    (v * z[f"als{a}"] if v else 0.0)
                rec[way][s:s + len(batch), j], ndcg[way][s:s + len(batch), j] = per_user(fused, rc, valid[batch])
        print(f"{s + len(batch)} of {len(users)} users, {time.perf_counter() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(0)
    one = np.zeros(len(users), np.int64)
    degree = np.diff(fit.indptr)[users]
    quartile = np.searchsorted(np.quantile(degree, [0.25, 0.5, 0.75]), degree, side="right")
    rows = []
    for way, grid in [*ways.items(), ("z_by_degree", ways["z"])]:
        r, n = rec.get(way, rec["z"]), ndcg.get(way, ndcg["z"])
        groups = quartile if way == "z_by_degree" else one
        best = int(np.argmax(r.mean(0)))
        w, p, a, v = grid[best]
        rows.append({"way": way, "grid_points": len(grid), "best": {"two_tower": w, "popular": p,
                     "als": None if a is None else ALS_CANDIDATES[a], "als_weight": v},
                     "recall@20": round(float(r[:, best].mean()), 5), "ndcg@20": round(float(n[:, best].mean()), 5),
                     "cv_recall@20": round(halving_check(r, groups, rng), 5)})
        print(json.dumps(rows[-1]), flush=True)
    with open(out_path, "w") as fh:
        json.dump({"data_dir": data_dir, "config": config, "seed": cfg.seed, "fusion_users": len(users),
                   "halvings": HALVINGS, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
