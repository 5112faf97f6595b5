"""Baselines on the full-ranking LightGCN protocol: most popular, random and implicit's ALS, in one run.

``run_baselines(data_dir)`` fits each baseline on ``train.txt`` and reports Recall@20 / NDCG@20 on
``test.txt`` with the seconds each took (fit + evaluation), so every later model sits beside what a
user would otherwise pick. ``tune_als`` picks ALS hyperparameters on a validation split carved out
of the training set (never the test set).
"""

from __future__ import annotations

import json
from pathlib import Path

from recsys.fit.baselines import DEFAULT_ALS, evaluate_baselines  # noqa: F401  (re-exported)
from recsys.fit.validation import holdout_split
from recsys.storage.atomic import write_text_atomically

#: The grid ``tune_als`` searches by default.
ALS_GRID = [{"regularization": r, "alpha": a} for a in (1.0, 10.0, 50.0, 200.0) for r in (0.1, 10.0)]


def _write_json(result: dict, path: str | Path | None) -> None:
    if path is None:
        return
    path = write_text_atomically(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def run_baselines(data_dir: str | Path, json_path: str | Path | None = None, *,
                  als_params: dict | None = None) -> dict[str, dict]:
    """Popular, random and implicit-ALS Recall@20 / NDCG@20 and seconds on a LightGCN-format directory."""
    from recsys.datasets.lightgcn import load_lightgcn

    ds = load_lightgcn(data_dir)
    print(f"{ds.name}: {ds.n_users:,} users x {ds.n_items:,} items, "
          f"{len(ds.train):,} train / {len(ds.test):,} test interactions")
    result = evaluate_baselines(ds.train_matrix(), ds.test_matrix(), als_params=als_params)
    _write_json(result, json_path)
    return result


def tune_als(data_dir: str | Path, grid: list[dict] | None = None, *, fraction: float = 0.2, seed: int = 0,
             json_path: str | Path | None = None) -> list[dict]:
    """Validation Recall@20 / NDCG@20 of ALS for each grid point (train split only), best first."""
    from recsys.datasets.lightgcn import load_lightgcn

    ds = load_lightgcn(data_dir)
    fit, valid = holdout_split(ds.train_matrix(), fraction, seed)
    rows = []
    for point in grid or ALS_GRID:
        res = evaluate_baselines(fit, valid, als_params=point, names=("implicit-als",))["implicit-als"]
        rows.append({**{k: v for k, v in res.items() if k != "params"}, "params": res.get("params", point)})
    rows.sort(key=lambda r: -r.get("recall@20", -1.0))
    _write_json({"dataset": ds.name, "validation_fraction": fraction, "seed": seed, "results": rows}, json_path)
    return rows
