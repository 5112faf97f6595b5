"""``recsys benchmark index --items N``: each index type at one catalogue size, side by side.

Per index type: build time, memory, tuned knobs, recall@10 and recall@100 against exact search,
single-query latency p50/p99 on one thread, batch throughput on all cores, and filtered search
with a 1% and a 10% allow-list (recall@100 against exact filtered search, and whether every
query got K items). Items and queries are ALS factors of Gowalla plus a clustered generator
fitted to them (see ``index_data``). Writes ``experiments/index/index_<N>.json`` and regenerates
the table (README.md) and the growth plot (growth.png) from every size measured so far.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from recsys.bench.index_data import ClusteredGenerator, als_factors, catalogue, fidelity
from recsys.index.tuning import recall_at_k
from recsys.storage.atomic import write_text_atomically

DEFAULT_OUT = Path("experiments/index")
K = 100
FILTER_FRACTIONS = (0.01, 0.10)
_CACHE: dict = {}


def default_factories(n: int, d: int, memory_budget_mb: float) -> list[tuple[str, str | None]]:
    """(factory, reason to skip or None): exact Flat, then every approximate type ``auto_index`` weighs."""
    from recsys.index.auto import HNSW_MAX_ITEMS, candidate_factories

    rows: list[tuple[str, str | None]] = [("Flat", None)]
    for c in candidate_factories(max(n, 100_000), d, memory_budget_mb):
        f = c["factory"]
        if f == "Flat" or (f.endswith("x4fs") and "Refine" not in f):
            continue  # exact is measured above; plain 4-bit PQ tops out far below the targets
        skip = None
        if not c["fits"]:
            skip = f"estimated {c['estimated_mb']:,.0f} MB > {memory_budget_mb:,.0f} MB budget"
        rows.append((f, skip))
    if n > HNSW_MAX_ITEMS:
        rows.insert(1, ("HNSW48", f"over {HNSW_MAX_ITEMS:,} items: estimated "
                                  f"{n * (4 * d + 427) / 2**20:,.0f} MB and hours of build on 2 cores"))
    return rows


def _data(data_dir: Path, seed: int) -> dict:
    key = (str(data_dir), seed)
    if key not in _CACHE:
        users, items = als_factors(data_dir, seed=seed)
        gen = ClusteredGenerator(seed=seed).fit(items)
        _CACHE[key] = {"users": users, "items": items, "generator": gen}
    return _CACHE[key]


def _latency_ms(idx, queries: np.ndarray, filters=None, exact=None, n_exact: int = 0, rounds: int = 3) -> dict:
    """One query at a time, one thread for FAISS (OpenMP) and numpy (BLAS) alike.

    With ``exact``, exact search times ``n_exact`` queries in ``rounds`` blocks alternating with
    blocks of the index's queries, so both see the same load from other jobs on a shared machine;
    each index block starts with an untimed query (exact search just flushed the CPU caches).
    """
    from threadpoolctl import threadpool_limits

    from recsys.index._faiss import import_faiss

    faiss = import_faiss()

    def timed(index, i: int) -> float:
        t0 = time.perf_counter()
        index.search(queries[i:i + 1], K, filters)
        return (time.perf_counter() - t0) * 1000

    n_rounds = rounds if exact is not None and n_exact else 1
    own_blocks = np.array_split(np.arange(len(queries)), n_rounds)
    exact_blocks = np.array_split(np.arange(min(n_exact, len(queries))), n_rounds)
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            times, exact_times = [], []
            for r in range(n_rounds):
                if exact is not None and n_exact:
                    exact_times += [timed(exact, i) for i in exact_blocks[r]]
                idx.search(queries[:1], K, filters)  # warm-up (caches; filter resolution is cached per snapshot)
                times += [timed(idx, i) for i in own_blocks[r]]
    finally:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    out = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
    if exact_times:
        ex = float(np.median(exact_times))
        out.update(exact_p50_ms_paired=ex, speedup_vs_exact_p50=ex / out["p50_ms"], n_paired_queries=len(exact_times))
    return out


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _bench_index(factory: str, x: np.ndarray, ids: np.ndarray, q: dict, truth: dict, filt: list,
                 recall_target: float, n_latency: int, exact=None):
    """One index type: its row, and the index itself when it is the exact one (kept for pairing)."""
    from recsys.index import FaissIndex

    gc.collect()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    idx = FaissIndex(factory=factory, metric="ip", dim=x.shape[1]).build(x, ids)
    build_s = time.perf_counter() - t0
    row = {"factory": factory, "build_s": build_s, "memory_mb": idx.memory_bytes() / 2**20,
           "rss_delta_mb": _rss_mb() - rss0}
    if factory != "Flat":
        tuning = idx.tune(q["tune"], k=K, recall_target=recall_target, reference_vectors=x)
        row.update(params=tuning["params"], tuned_recall=tuning["recall"], tune_met_target=tuning["met_target"],
                   tuning_grid=[{"params": g["params"], "recall": g["recall"]} for g in tuning["grid"]])
    t0 = time.perf_counter()
    _, found = idx.search(q["eval"], K)
    row["batch_qps"] = len(q["eval"]) / (time.perf_counter() - t0)
    row["recall@10"] = recall_at_k(found[:, :10], truth["eval"][:, :10])
    row["recall@100"] = recall_at_k(found, truth["eval"])
    n_exact = min(n_latency, max(30, int(6e7 // len(x))))  # exact takes ~1 s a query at 10M: fewer there
    if factory == "Flat":
        n_latency = n_exact
    row.update(_latency_ms(idx, q["eval"][:n_latency], exact=exact, n_exact=n_exact))
    row["filtered"] = {}
    for frac, f, ftruth in filt:
        from recsys.index.filters import plan_search

        _, ffound = idx.search(q["eval"][:len(ftruth)], K, f)
        plan = plan_search(idx._state, f, K, idx.filter_config)
        row["filtered"][f"{frac:.0%}"] = {
            "allow_items": len(f.allow), "strategy": plan.strategy, "recall@100": recall_at_k(ffound, ftruth),
            "always_k": bool((ffound >= 0).all()), **_latency_ms(idx, q["eval"][:min(100, n_latency)], f)}
    if factory == "Flat":
        row["speedup_vs_exact_p50"] = 1.0
        return row, idx
    del idx
    gc.collect()
    return row, None


def run_index_benchmark(n_items: int, json_path: str | Path | None = None, *, data_dir: str | Path | None = None,
                        out_dir: str | Path | None = DEFAULT_OUT, factories: list[str] | None = None,
                        n_eval: int = 1000, n_tune: int = 500, n_latency: int = 300, n_filtered: int = 300,
                        recall_target: float = 0.95, memory_budget_mb: float = 2048, seed: int = 0,
                        embeddings: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Measure each index type on ``n_items`` items; write JSON (+ table and plot under ``out_dir``).

    ``embeddings``: (user vectors, item vectors) to fit the generator to instead of ALS on Gowalla.
    """
    from recsys.index._faiss import import_faiss

    faiss = import_faiss()
    t_start, load_start = time.perf_counter(), os.getloadavg()
    data_dir, data = _source(data_dir, embeddings, seed)
    x = catalogue(n_items, data["items"], data["generator"], seed=seed)
    ids = np.arange(n_items, dtype=np.int64)
    rng = np.random.default_rng(seed)
    users = data["users"][rng.permutation(len(data["users"]))]
    q = {"tune": users[:n_tune], "eval": users[n_tune:n_tune + n_eval]}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    truth = {"eval": faiss.knn(q["eval"], x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]}
    filt = _filtered_truth(x, q["eval"][:n_filtered], rng)
    plan = default_factories(n_items, x.shape[1], memory_budget_mb)
    if factories is not None:
        plan = [(f, None) for f in factories]
    rows = _bench_plan(plan, x, ids, q, truth, filt, recall_target, n_latency)
    result = {
        "benchmark": "index", "n_items": n_items, "dim": int(x.shape[1]), "k": K, "metric": "ip",
        "data": _data_section(data_dir, data, q, n_items, n_latency, n_filtered, seed),
        "recall_target": recall_target, "memory_budget_mb": memory_budget_mb,
        "machine": {"cpus": os.cpu_count(), "faiss": faiss.__version__, "python": sys.version.split()[0],
                    "load_average": {"start": list(load_start), "end": list(os.getloadavg())}},
        "command": f"recsys benchmark index --items {n_items}", "total_s": time.perf_counter() - t_start,
        "indexes": rows,
    }
    _write(result, out_dir, json_path)
    return result


def _source(data_dir: str | Path | None, embeddings: tuple[np.ndarray, np.ndarray] | None, seed: int
            ) -> tuple[Path, dict]:
    """Where the vectors come from, and the user vectors, item vectors and the generator fitted to the items."""
    from recsys.datasets.paths import require_shared

    if embeddings is not None:
        return Path("given-embeddings"), {
            "users": embeddings[0], "items": embeddings[1],
            "generator": ClusteredGenerator(n_clusters=min(256, len(embeddings[1]) // 20), seed=seed).fit(embeddings[1])}
    data_dir = Path(data_dir) if data_dir else require_shared("retrieval/gowalla")
    return data_dir, _data(data_dir, seed)


def _filtered_truth(x: np.ndarray, queries: np.ndarray, rng: np.random.Generator) -> list:
    """Per allow-list fraction: (fraction, its SearchFilters, the exact filtered top K of ``queries``)."""
    from recsys.index import SearchFilters
    from recsys.index._faiss import import_faiss

    faiss = import_faiss()
    filt = []
    for frac in FILTER_FRACTIONS:
        allow = np.sort(rng.choice(len(x), max(K, int(len(x) * frac)), replace=False))
        ftruth = allow[faiss.knn(queries, x[allow], K, metric=faiss.METRIC_INNER_PRODUCT)[1]]
        filt.append((frac, SearchFilters(allow=frozenset(allow.tolist())), ftruth))
    return filt


def _bench_plan(plan: list[tuple[str, str | None]], x: np.ndarray, ids: np.ndarray, q: dict, truth: dict, filt: list,
                recall_target: float, n_latency: int) -> list[dict]:
    """One row per planned index (or its reason to skip); the exact index, once built, is kept for the speed-ups."""
    rows, exact = [], None
    for factory, skip in plan:
        if skip:
            rows.append({"factory": factory, "skipped": skip})
            print(f"[index {len(x):,}] {factory}: skipped ({skip})", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        row, kept = _bench_index(factory, x, ids, q, truth, filt, recall_target, n_latency, exact)
        rows.append(row)
        exact = kept if kept is not None else exact
        print(f"[index {len(x):,}] {factory}: {time.perf_counter() - t0:.0f}s "
              f"recall@100={rows[-1]['recall@100']:.3f} p50={rows[-1]['p50_ms']:.3f}ms", file=sys.stderr)
    del exact
    gc.collect()
    return rows


def _data_section(data_dir: Path, data: dict, q: dict, n_items: int, n_latency: int, n_filtered: int,
                  seed: int) -> dict:
    return {"source": f"implicit ALS factors of {data_dir.name} train (dim 64); items beyond the "
                      f"{len(data['items']):,} real ones from a clustered generator fitted to them",
            "real_items": int(min(n_items, len(data["items"]))), "queries": "real ALS user factors",
            "n_eval_queries": len(q["eval"]), "n_tune_queries": len(q["tune"]),
            "n_latency_queries": n_latency, "n_filtered_queries": n_filtered,
            "generator_fidelity": fidelity(data["items"], data["generator"], q["eval"][:500], seed)}


def _write(result: dict, out_dir: str | Path | None, json_path: str | Path | None) -> None:
    """``index_<N>.json`` and the regenerated report under ``out_dir``, and/or the JSON at ``json_path``."""
    if out_dir is not None:
        from recsys.bench.index_report import write_report

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out_dir / f"index_{result['n_items']}.json", json.dumps(result, indent=2) + "\n")
        write_report(out_dir)
    if json_path is not None:
        write_text_atomically(json_path, json.dumps(result, indent=2) + "\n")
