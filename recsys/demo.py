"""``recsys demo`` (``make demo``): raw events to a registered model and a "猜你喜欢" feed, in one command.

1. generate the synthetic affiliate world (the embedded default data; nothing to download);
2. ``recsys train`` on it: validate -> time split -> features -> two-tower -> FAISS index -> GBDT
   ranker -> full-ranking and ranker evaluation -> bundle -> MLflow run -> registered model
   ``guess-you-like`` with alias ``candidate``, and ``champion`` on the first run (a later run takes
   ``champion`` only when it beats it on recall_at_20);
3. load this run's model back *through MLflow* (``mlflow.pyfunc.load_model("models:/guess-you-like@champion")``)
   and check it returns the same feeds as the bundle;
4. print the feed with reasons for three users on two media partners, and the evaluation table;
5. say how to open the MLflow UI on the run.

The settings are :func:`demo_config` (``experiments/synthetic-demo.yaml`` holds the same values).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["run_demo", "demo_config", "DEMO_SETTINGS"]

DEMO_SETTINGS: dict = {
    "name": "synthetic-demo",
    "seed": 0,
    "data": {"source": "synthetic", "n_events": 300_000, "n_days": 14},
    "split": {"method": "time", "test_fraction": 0.2},
    "features": {"title_buckets": 4096, "history_len": 50},
    "retrieval": {"dim": 32, "task": "full_softmax", "temperature": 0.3, "epochs": 10, "batch_size": 512, "lr": 0.01,
                  "item_id_dropout": 0.1},
    "index": {"kind": "faiss", "factory": "HNSW32", "recall_target": 0.95, "tune_k": 100},
    "ranker": {"kind": "gbdt", "max_iter": 60, "num_threads": 1},
    "recommender": {"n_candidates": 300, "max_per_category": 2, "default_objective": "commission"},
    "evaluation": {"ks": [5, 10, 20, 50, 100], "baselines": ["popular", "random"]},
    "tracking": {"enabled": True, "experiment": "guess-you-like", "model_name": "guess-you-like",
                 "alias": "champion"},
    "output": {"dir": "runs"},
}
PARTNERS = ("guide-0", "app-0")  # a shopping-guide site ranking by commission, a content app ranking by clicks


def demo_config(*, n_events: int | None = None, seed: int | None = None, overrides: Iterable[str] = ()):
    """The demo's :class:`~recsys.fit.settings.TrainConfig` (``overrides``: ``key.path=value`` strings)."""
    from recsys.fit.settings import config_from_dict

    extra = [f"data.n_events={n_events}"] if n_events is not None else []
    extra += [f"seed={seed}"] if seed is not None else []
    return config_from_dict(DEMO_SETTINGS, source="recsys.demo.DEMO_SETTINGS", overrides=[*extra, *overrides])


def _pick_users(result, n: int = 3) -> list:
    """The most active users of the training log who were seen on both demo partners."""
    ev = result.tables.events
    ev = ev[ev["event_type"].astype(str) != "impression"]
    both = ev[ev["media_id"].isin(PARTNERS)].groupby("user_id")["media_id"].nunique()
    active = ev["user_id"].value_counts()
    pool = active[active.index.isin(both[both == len(PARTNERS)].index)]
    return (pool if len(pool) >= n else active).index[:n].tolist()


def _print_feeds(feeds: pd.DataFrame, requests: pd.DataFrame, items: pd.DataFrame, media: pd.DataFrame) -> None:
    info = items.set_index("item_id")
    kinds = media.set_index("media_id") if media is not None else None
    for pos, req in requests.iterrows():
        feed = feeds[feeds["request"] == pos]
        partner = req["media_id"]
        about = f" ({kinds.at[partner, 'kind']}, ranks by {kinds.at[partner, 'objective']})" if kinds is not None else ""
        print(f"\n   猜你喜欢 · user {req['user_id']} on {partner}{about}")
        for row in feed.itertuples(index=False):
            it = info.loc[row.item_id]
            print(f"   {row.rank:>2}. {str(it['title'])[:34]:<34} {it['category']:<12} ¥{it['price']:>8.2f} "
                  f"{it['commission_rate']:>5.1%}  pCTR {row.pctr:.3f}  {row.reason}")


def _evaluation_table(result) -> str:
    ev = result.evaluation
    from recsys.evaluation.names import metric_name  # headed by the names the MLflow run shows: recall_at_20

    keys = ("recall@10", "recall@20", "ndcg@20", "recall@50", "hit_rate@20")
    head = f"   {'retrieval (test, full ranking)':<32}" + "".join(f"{metric_name(k):>15}" for k in keys)
    lines = [head, "   " + "-" * (len(head) - 3)]
    for name, res in ev.get("retrieval", {}).items():
        lines.append(f"   {name:<32}" + "".join(f"{res.get(k, float('nan')):>15.4f}" for k in keys))
    if ev.get("ranker"):
        r = ev["ranker"]
        lines.append(f"\n   ranker (test impressions): CTR AUC {r['ctr_auc']:.4f} · CVR AUC {r['cvr_auc']:.4f} · "
                     f"CTCVR AUC {r['ctcvr_auc']:.4f} · CTR LogLoss {r['ctr_logloss']:.4f} · CTR ECE {r['ctr_ece']:.5f}")
    if ev.get("index"):
        x = ev["index"]
        lines.append(f"   index: {x.get('factory', 'exact')} recall_at_{x.get('k', '')} vs exact {x['recall']:.3f} at "
                     f"{x.get('params')} ({x.get('ms_per_query', float('nan')):.3f} ms per query)")
    return "\n".join(lines)


def _ui_hint(result) -> str:
    uri = result.tracking_uri
    exe = ".venv/bin/mlflow" if Path(".venv/bin/mlflow").exists() else "mlflow"
    return (f"== open the MLflow UI on this run:\n   {exe} ui --backend-store-uri {uri}\n"
            f"   then http://127.0.0.1:5000/{result.run_link}\n"
            f"   (model: {result.model.get('alias_uri') if result.model else '?'}, "
            f"version {result.model.get('version') if result.model else '?'})")


def run_demo(*, n_events: int = 300_000, seed: int = 0, overrides: Iterable[str] = (),
             tracking_uri: str | None = None, output_dir: str | Path | None = None) -> dict:
    """Run the demo end to end; returns the metrics, the run and model ids, the feeds and the timing."""
    import mlflow

    from recsys.pipeline.train import run_training
    from recsys.tracking.mlflow_model import quiet_downloads

    t0 = time.perf_counter()
    extra = list(overrides)
    if tracking_uri:
        extra.append(f"tracking.tracking_uri={tracking_uri}")
    if output_dir is not None:
        extra.append(f"output.dir={output_dir}")
    cfg = demo_config(n_events=n_events, seed=seed, overrides=extra)
    print(f"== recsys demo: synthetic affiliate world of ~{n_events:,} events (seed {seed}) -> registered model")
    result = run_training(cfg, stage="all", tracking=True)

    alias_uri = result.model["alias_uri"]
    print(f"== load the registered model back through MLflow: mlflow.pyfunc.load_model({alias_uri!r})")
    with quiet_downloads():
        model = mlflow.pyfunc.load_model(alias_uri)
    users = _pick_users(result)
    requests = pd.DataFrame({"user_id": np.repeat(np.asarray(users, dtype=np.int64), len(PARTNERS)),
                             "k": np.int64(6), "media_id": list(PARTNERS) * len(users)})
    feeds = model.predict(requests)
    from recsys.tracking.feeds import predict_feeds

    same = predict_feeds(result.recommender, requests).equals(feeds)
    print(f"   {len(feeds)} feed rows for {len(requests)} requests; identical to the bundle's feeds: {same}")
    print("== 猜你喜欢 (guess you like): three users on two media partners")
    _print_feeds(feeds, requests, result.tables.items, result.tables.media)
    print("\n== evaluation")
    print(_evaluation_table(result))
    seconds = time.perf_counter() - t0
    print(f"== done in {seconds:.0f} s")
    print(_ui_hint(result))
    return {"metrics": result.metrics, "results": result.evaluation.get("retrieval", {}),
            "ranker": result.evaluation.get("ranker", {}), "run_id": result.run_id, "model": result.model,
            "tracking_uri": result.tracking_uri, "feeds": feeds, "requests": requests, "same_as_bundle": same,
            "bundle_dir": str(result.bundle_dir), "seconds": seconds}
