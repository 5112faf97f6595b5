"""Side experiment behind ``ESMMRanker(epochs=1)``: ESMM settings on a 30% sample of the training impressions
of the 1M-event synthetic world (about 30 rows per user, like the 10M benchmark's 3M-row sample).

Run from the repository root: ``python experiments/ranker/esmm_epochs.py``; its output is esmm_epochs.txt
(measured when ESMM's default was 3 epochs: the rows name their epochs explicitly).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from recsys.datasets.splits import time_split
from recsys.datasets.synthetic import generate_world
from recsys.evaluation import auc
from recsys.features.ranking_features import RankingFeatureBuilder, impression_labels
from recsys.models.rankers.esmm import ESMMRanker

SETTINGS = [("epochs 3", {"epochs": 3}), ("no ids, epochs 3", {"epochs": 3, "exclude": ["user_id", "item_id"]}),
            ("min_count 5, epochs 3", {"epochs": 3, "min_count": 5}), ("epochs 1", {"epochs": 1}),
            ("weight decay 1e-6, epochs 3", {"epochs": 3, "weight_decay": 1e-6})]


def main() -> None:
    warnings.simplefilter("ignore")
    world = generate_world(1_000_000, seed=0, progress=False)
    train_ev, test_ev = time_split(world.events, test_fraction=0.2)
    rows_tr, rows_te = impression_labels(train_ev), impression_labels(test_ev)
    keep = np.sort(np.random.default_rng(0).choice(len(rows_tr), int(len(rows_tr) * 0.3), replace=False))
    rows_tr = rows_tr.iloc[keep].reset_index(drop=True)
    builder = RankingFeatureBuilder(windows=("1D", "7D", None)).fit(train_ev, world.items, world.social)
    X_tr = builder.transform(rows_tr)
    X_te = builder.update(test_ev).transform(rows_te)
    print("features done", X_tr.shape, flush=True)
    clicked = rows_te["click"].to_numpy() == 1
    for name, kw in SETTINGS:
        t = time.time()
        model = ESMMRanker(num_threads=1, **kw).fit(X_tr, rows_tr[["click", "purchase"]])
        p = model.predict_proba(X_te)
        print(f"{name}: CTR AUC {auc(rows_te['click'], p['pctr']):.4f} "
              f"CVR AUC {auc(rows_te['purchase'][clicked], p['pcvr'][clicked]):.4f} "
              f"CTCVR {auc(rows_te['purchase'], p['pctcvr']):.4f} loss by epoch {model.history_} "
              f"{time.time() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
