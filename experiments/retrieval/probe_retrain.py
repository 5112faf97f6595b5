"""Validation-only probe of ``retrain_full``: does retraining on all the data for the chosen number of
epochs beat the selection run's weights? Nested, so test is never touched:

    python experiments/retrieval/probe_retrain.py DATA_DIR CONFIG_YAML [THREADS] [SEED]

SEED (optional) replaces the config's seed: the splits, the initialisation and the data order.

The benchmark's validation split (fit / valid) plays the role of (train / test): an inner validation
split carved from fit (seed + 1) chooses the epoch and prior weight, then (A) the selection run's model
and (B) a model retrained on all of fit for that many epochs are scored on valid, with fit as the
history / audience and the inner-chosen prior (as the benchmark scores test with train).
"""
import json
import sys
from dataclasses import replace

import torch

from recsys.bench import retrieval as R
from recsys.datasets.lightgcn import load_lightgcn
from recsys.evaluation import EmbeddingScorer, evaluate_topk
from recsys.fit.settings import load_two_tower_settings
from recsys.fit.trainer import RetrievalData, encode_all
from recsys.fit.validation import apply_chosen_prior, carve_validation

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
cfg = replace(load_two_tower_settings(sys.argv[2]), baselines=False)
if len(sys.argv) > 4:
    cfg = replace(cfg, seed=int(sys.argv[4]))
train = load_lightgcn(sys.argv[1]).train_matrix()
fit, valid = carve_validation(train, cfg.validation_fraction, cfg.validation_users, cfg.seed)
inner_fit, inner_valid = carve_validation(fit, cfg.validation_fraction, cfg.validation_users, cfg.seed + 1)


def score(model):
    model.set_item_audience(fit)
    model, beta = apply_chosen_prior(model, summary, fit)
    users, items = encode_all(model, RetrievalData(fit))
    r = evaluate_topk(EmbeddingScorer(users, items), fit, valid, (20,), metrics=("recall", "ndcg"),
                      check_leakage=False)
    return {k: round(v, 4) for k, v in r.items()} | {"prior": beta}


model, summary = R._train(cfg, inner_fit, cfg.epochs, inner_valid, print)
print(json.dumps({"selection_run": score(model), "best_epoch": summary["best_epoch"]}), flush=True)
model, _ = R._train(cfg, fit, summary["best_epoch"], None, print)
print(json.dumps({"retrained": score(model)}), flush=True)
