"""How fast and how small full-ranking evaluation is: random 64-d embeddings, the real code path.

Two cases, side by side in one run:

- **gowalla**: ``evaluate_topk`` on the real LightGCN Gowalla split (29,858 users x 40,981 items)
  with random embeddings; goal under 10 s wall on the 2-core machine (median of ``repeats`` runs).
- **synthetic-100k**: 100,000 users x 100,000 items (20 train, 5 test items per user), run in a
  fresh subprocess so its peak resident memory (VmHWM, Python, numpy and torch included) is its own;
  goal under 2 GiB.

The 1-minute load average is recorded beside each figure: the machine is shared, and wall time
under load says more about the neighbours than about the code (CPU seconds are recorded too).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

GOAL_SECONDS = 10.0
GOAL_BYTES = 2 * 2**30


def _random_split(n_users: int, n_items: int, n_train: int, n_test: int, seed: int):
    rng = np.random.default_rng(seed)

    def matrix(per_user: int) -> sp.csr_matrix:
        rows = np.repeat(np.arange(n_users), per_user)
        m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, rng.integers(0, n_items, rows.size))),
                          shape=(n_users, n_items))
        m.data[:] = 1.0
        return m

    train, test = matrix(n_train), matrix(n_test)
    test = sp.csr_matrix(test - test.multiply(train))
    test.eliminate_zeros()
    return train, test


def _timed_evaluation(scorer, train, test) -> dict:
    from recsys.evaluation import evaluate_topk

    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    metrics = evaluate_topk(scorer, train, test, ks=(20,))
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "load_avg_1m_before": load, "recall@20": metrics["recall@20"]}


def peak_rss_bytes() -> int:
    """This process's peak resident memory: VmHWM on Linux (ru_maxrss would carry a forking parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_case(n_users: int, n_items: int, dim: int = 64, seed: int = 0) -> dict:
    """One evaluation at the given size in this process; peak RSS before and after (run it in a fresh one)."""
    from recsys.evaluation import EmbeddingScorer

    train, test = _random_split(n_users, n_items, 20, 5, seed)
    rng = np.random.default_rng(seed + 1)
    scorer = EmbeddingScorer(rng.standard_normal((n_users, dim), dtype=np.float32),
                             rng.standard_normal((n_items, dim), dtype=np.float32))
    setup_peak = peak_rss_bytes()
    out = _timed_evaluation(scorer, train, test)
    out.update(peak_rss_bytes=peak_rss_bytes(),
               setup_peak_rss_bytes=setup_peak, n_users=n_users, n_items=n_items, dim=dim)
    return out


def gowalla_case(data_dir: str | Path, dim: int = 64, repeats: int = 3, seed: int = 0) -> dict:
    """Median wall seconds of ``repeats`` full evaluations on a LightGCN directory with random embeddings."""
    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.evaluation import EmbeddingScorer

    ds = load_lightgcn(data_dir)
    train, test = ds.train_matrix(), ds.test_matrix()
    rng = np.random.default_rng(seed)
    scorer = EmbeddingScorer(rng.standard_normal((ds.n_users, dim), dtype=np.float32),
                             rng.standard_normal((ds.n_items, dim), dtype=np.float32))
    runs = [_timed_evaluation(scorer, train, test) for _ in range(repeats)]
    return {"dataset": ds.name, "n_users": ds.n_users, "n_items": ds.n_items, "dim": dim, "runs": runs,
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs)}


def index_cost_case(data_dir: str | Path, ef_search: tuple[int, ...] = (16, 64), seed: int = 0) -> dict:
    """Recall@20 lost by ranking through a FAISS HNSW index instead of exactly, on ALS embeddings.

    A FAISS index already has the ``search(queries, k) -> (scores, ids)`` that evaluate_topk calls.
    """
    from recsys.index._faiss import import_faiss

    faiss = import_faiss()

    from recsys.datasets.lightgcn import load_lightgcn
    from recsys.evaluation import EmbeddingScorer, evaluate_topk
    from recsys.models.baselines import ImplicitALS

    ds = load_lightgcn(data_dir)
    train, test = ds.train_matrix(), ds.test_matrix()
    als = ImplicitALS(factors=64, regularization=10.0, alpha=50.0, seed=seed).fit(train)
    scorer = EmbeddingScorer(als.user_factors_, als.item_factors_)
    index = faiss.IndexHNSWFlat(scorer.item_emb.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    index.add(scorer.item_emb)
    rows = {"factory": "HNSW32,Flat (inner product)", "build_seconds": time.perf_counter() - t0}
    for ef in ef_search:
        index.hnsw.efSearch = ef
        t0 = time.perf_counter()
        r = evaluate_topk(scorer, train, test, ks=(20,), metrics=("recall", "ndcg"), index=index)
        rows[f"efSearch={ef}"] = {**r, "seconds": time.perf_counter() - t0}
    return rows


def run_evaluation_benchmark(json_path: str | Path | None = None, *, data_dir: str | Path | None = None,
                             n_users: int = 100_000, n_items: int = 100_000, repeats: int = 3) -> dict:
    """Both cases; writes JSON to ``json_path`` and a markdown table beside it (``.md``)."""
    import torch

    from recsys.datasets.paths import require_shared

    data_dir = Path(data_dir) if data_dir else require_shared("retrieval/gowalla")
    gow = gowalla_case(data_dir, repeats=repeats)
    cost = index_cost_case(data_dir)
    code = (f"import json; from recsys.bench.evaluation import memory_case; "
            f"print(json.dumps(memory_case({int(n_users)}, {int(n_items)})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "CI": "true"})
    mem = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "gowalla": {**gow, "goal_seconds": GOAL_SECONDS, "meets_goal": gow["median_seconds"] < GOAL_SECONDS},
        "synthetic_100k": {**mem, "goal_bytes": GOAL_BYTES, "meets_goal": mem["peak_rss_bytes"] < GOAL_BYTES},
        "index_cost_gowalla_als": cost,
    }
    print(markdown_table(result))
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown_table(result) + "\n")
        print(f"wrote {path} and {path.with_suffix('.md')}")
    return result


def markdown_table(result: dict) -> str:
    """The figures as a markdown table."""
    g, m = result["gowalla"], result["synthetic_100k"]
    loads = ", ".join(f"{r['load_avg_1m_before']:.1f}" for r in g["runs"])
    return "\n".join([
        "| case | users x items | wall s (median) | CPU s | peak RSS | goal | met | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {g['dataset']}, {g['dim']}-d random | {g['n_users']:,} x {g['n_items']:,} | {g['median_seconds']:.2f} "
        f"| {g['median_cpu_seconds']:.2f} | - | < {GOAL_SECONDS:.0f} s | {g['meets_goal']} | {loads} |",
        f"| synthetic, {m['dim']}-d random | {m['n_users']:,} x {m['n_items']:,} | {m['seconds']:.2f} "
        f"| {m['cpu_seconds']:.2f} | {m['peak_rss_bytes'] / 2**30:.2f} GiB | < 2 GiB | {m['meets_goal']} "
        f"| {m['load_avg_1m_before']:.1f} |",
        "",
        f"Through a FAISS index ({result['index_cost_gowalla_als']['factory']}) on Gowalla ALS embeddings:",
        "",
        "| efSearch | exact Recall@20 | index Recall@20 | recall cost | ANN recall@20 (overlap with exact top 20) |",
        "|---|---|---|---|---|",
        *[f"| {key.split('=')[1]} | {r['exact_recall@20']:.4f} | {r['recall@20']:.4f} | {r['recall_cost@20']:.4f} "
          f"| {r['ann_recall@20']:.3f} |"
          for key, r in result["index_cost_gowalla_als"].items() if key.startswith("efSearch")],
    ])
