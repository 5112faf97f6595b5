"""Validation-only screen of graph filters alone (no fusion, no two-tower): each filter is fitted on one seed's fit
split of a pipeline config and scored on that seed's validation users (the held-apart fusion users when the config
has ``fusion_users``), Recall@20 / NDCG@20 printed per filter. Test is never read:

    python experiments/retrieval/screen_graph_filter.py DATA_DIR PIPELINE_YAML SPECS_JSON [SEED]

SPECS_JSON: a JSON list of graph-filter mappings as a pipeline config's ``graph_filter`` (``{"kind": "chebycf",
"flatness": 3, ...}``, :func:`recsys.bench.pipeline_settings.make_filter`). SEED defaults to the config's first. Used to pick the
candidates that ``probe_graph_filter.py`` then scores fused (experiments/retrieval/README.md).
"""
import json
import sys
import time

from recsys.bench.pipeline_settings import load_pipeline_settings, make_filter
from recsys.datasets.lightgcn import load_lightgcn
from recsys.evaluation import evaluate_topk
from recsys.fit.validation import carve_validation, split_validation_users

data_dir, config, specs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
settings = load_pipeline_settings(config)
cfg = settings.seeded(int(sys.argv[4]) if len(sys.argv) > 4 else settings.seeds[0])
train = load_lightgcn(data_dir).train_matrix()  # test.txt is loaded with it but never read
fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
if settings.fusion_users:
    _, valid = split_validation_users(valid, settings.fusion_users, cfg.seed)
for spec in specs:
    t = time.perf_counter()
    filt = make_filter(spec).fit(fit)
    got = evaluate_topk(filt, fit, valid, (20,), metrics=("recall", "ndcg"), check_leakage=False)
    print(json.dumps({"graph_filter": spec, **{k: round(v, 5) for k, v in got.items()},
                      "seconds": round(time.perf_counter() - t, 1)}), flush=True)
