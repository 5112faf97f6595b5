"""Validation-only probe of a pipeline's graph-filter settings: each candidate filter replaces the config's, the
fusion weights are chosen again on the config's validation users (the held-apart fusion users when the config has
``fusion_users``), and the fused validation Recall@20 / NDCG@20 is printed per seed. Test is never read:

    python experiments/retrieval/probe_graph_filter.py DATA_DIR PIPELINE_YAML OUT_JSON SPECS_JSON [SEED ...]

SPECS_JSON is a JSON list of graph-filter mappings (``{"kind": "bspm", "sharpen": 1.0, ...}``); SEEDs default to the
config's. The two-towers are read from (or written to) the config's ``cache_dir``. Writes OUT_JSON: one row per
(seed, filter) and the mean over seeds per filter, best first.
"""
import collections
import dataclasses
import json
import sys
import time

from recsys.bench.pipeline_settings import load_pipeline_settings
from recsys.bench.retrieval_pipeline import fit_training_free
from recsys.channels.fusion import fit_fusion_weights
from recsys.channels.two_tower_fit import fit_two_tower_embeddings
from recsys.datasets.lightgcn import load_lightgcn
from recsys.evaluation import EmbeddingScorer
from recsys.fit.validation import carve_validation, split_validation_users

data_dir, config, out_path, specs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
settings = load_pipeline_settings(config)
seeds = [int(a) for a in sys.argv[5:]] or list(settings.seeds)
train = load_lightgcn(data_dir).train_matrix()  # test.txt is loaded with it but never read
rows = []
for seed in seeds:
    cfg = settings.seeded(seed)
    emb = fit_two_tower_embeddings(cfg, train, log=print, cache_dir=settings.cache_dir,
                                   held_for_fusion=settings.fusion_users) if settings.uses_two_tower else None
    fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
    if settings.fusion_users:
        _, valid = split_validation_users(valid, settings.fusion_users, cfg.seed)
    for spec in specs:
        t = time.perf_counter()
        scorers, _ = fit_training_free(dataclasses.replace(settings, graph_filter=spec), fit)
        if emb is not None:
            scorers["two_tower"] = EmbeddingScorer(emb.valid_users, emb.valid_items)
        fusion = fit_fusion_weights(scorers, fit, valid, settings.fusion_grid, n_workers=settings.workers)
        rows.append(dict(seed=seed, graph_filter=spec, weights=fusion.weights, validation=fusion.validation,
                         seconds=round(time.perf_counter() - t, 1)))
        print(json.dumps(rows[-1]), flush=True)
by_spec = collections.defaultdict(list)
for r in rows:
    by_spec[json.dumps(r["graph_filter"], sort_keys=True)].append(r["validation"])
means = sorted(({"graph_filter": json.loads(k), "seeds": len(v),
                 "recall@20": round(sum(x["recall@20"] for x in v) / len(v), 6),
                 "ndcg@20": round(sum(x["ndcg@20"] for x in v) / len(v), 6)} for k, v in by_spec.items()),
               key=lambda m: (-m["recall@20"], -m["ndcg@20"]))
with open(out_path, "w") as fh:
    json.dump({"data_dir": data_dir, "config": config, "seeds": seeds, "mean_by_filter": means, "rows": rows}, fh,
              indent=1)
print(json.dumps(means[0]))
