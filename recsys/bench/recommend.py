"""Serving speed of the composed Recommender: single-request latency and batch throughput.

``run_recommend_benchmark`` trains a Recommender on a synthetic affiliate world, grows its catalogue
to ``n_items`` (new items embedded from content features, as ``add_items`` would), indexes it with
FAISS, then measures on one thread (torch, FAISS and BLAS limited to 1):

* ``recommend`` latency, in process, ``n_candidates`` (300) ranked per request: p50 / p90 / p99 of wall
  time and of this thread's CPU time (on a shared machine the difference is waiting for a core), and
  the time per stage (retrieve, ranking features, ranker, rules, reasons);
* the index's recall of the ``n_candidates`` nearest items against exact scoring, per ``nprobe``;
* ``recommend_batch`` throughput (users/s) for ``n_batch_users`` users (timed on
  ``batch_measured_users`` of them when given, then scaled: chunks are independent), beside the matrix-multiply
  limit of exact scoring on this machine: one GEMM of the users' embeddings against every item
  embedding plus a top-k (no features, no ranker, no rules) — the most a brute-force scorer could do.

Writes ``recommend.json`` and ``recommend.md`` into ``out_dir`` (default ``experiments/recommend``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["run_recommend_benchmark"]


def _one_thread() -> object:
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    return threadpool_limits(limits=1)


def _grow_catalogue(items: pd.DataFrame, n_items: int, seed: int) -> pd.DataFrame:
    """``items`` plus synthetic items up to ``n_items``, mixed from real ones: per new item a category, then
    brand, shop, price, commission and title words each lent by a random real item of that category."""
    rng = np.random.default_rng(seed)
    n_new = max(0, n_items - len(items))
    cats = items["category"].astype(str).to_numpy()
    category = cats[rng.integers(0, len(items), n_new)]
    members = {c: np.flatnonzero(cats == c) for c in np.unique(cats)}

    def lend() -> np.ndarray:
        idx = np.empty(n_new, np.int64)
        for c, rows in members.items():
            m = category == c
            idx[m] = rows[rng.integers(0, len(rows), int(m.sum()))]
        return idx

    col = {c: items[c].to_numpy()[lend()] for c in ("brand", "shop", "price", "commission_rate") if c in items}
    words = items["title"].astype(str).str.split().to_numpy()
    w1, w2 = words[lend()], words[lend()]
    start = int(items["item_id"].max()) + 1
    new = pd.DataFrame({
        "item_id": np.arange(start, start + n_new, dtype=np.int64), "category": category, "brand": col["brand"],
        "shop": col["shop"], "price": np.round(col["price"] * rng.lognormal(0, 0.2, n_new), 2),
        "commission_rate": col["commission_rate"], "coupon": 0.0, "eligibility": "",
        "title": [f"{b} {c} {x[-1]} {y[len(y) // 2]}" for b, c, x, y in zip(col["brand"], category, w1, w2, strict=True)],
        "in_stock": rng.random(n_new) > 0.02})
    return pd.concat([items, new[[c for c in items.columns if c in new.columns]]], ignore_index=True)


def _percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


def _matmul_limit(user_vecs: np.ndarray, item_emb: np.ndarray, n_users: int, k: int, block: int = 256) -> dict:
    """Seconds for exact scores of ``block`` users against all items (GEMM + top-k), scaled to ``n_users``."""
    import torch

    items = torch.from_numpy(item_emb)
    q = torch.from_numpy(np.ascontiguousarray(user_vecs[:block]))
    torch.topk(q[:8] @ items.T, k)  # warm-up
    t = time.perf_counter()
    reps = 0
    while reps < 2 or time.perf_counter() - t < 5.0:
        torch.topk(q @ items.T, k, dim=1)
        reps += 1
    per_user = (time.perf_counter() - t) / (reps * len(q))
    return {"users_per_s": 1.0 / per_user, "seconds_for_all_users": per_user * n_users, "block": len(q),
            "gflops": 2 * item_emb.shape[0] * item_emb.shape[1] / per_user / 1e9}


def _build(n_events: int, n_items: int, factory: str, seed: int, progress: bool):
    from recsys.datasets.synthetic import generate_world
    from recsys.fit.components import TrainSettings
    from recsys.index import FaissIndex
    from recsys.models.encode import embed_items
    from recsys.recommender import Recommender

    t0 = time.perf_counter()
    w = generate_world(n_events, seed=seed, progress=progress)
    small = Recommender(train=TrainSettings(dim=32, epochs=3, ranker_max_iter=60, seed=seed,
                                            ranker_options={"num_threads": 1})).fit(
        w.events, w.items, users=w.users, social=w.social, media=w.media, media_pools=w.media_pools, progress=progress)
    t_fit = time.perf_counter() - t0
    s = small._state
    items = _grow_catalogue(w.items, n_items, seed)
    new_ids = items["item_id"].to_numpy()[len(w.items):]
    rng = np.random.default_rng(seed + 1)
    pools = pd.concat([w.media_pools, pd.DataFrame({"media_id": "app-0", "item_id": new_ids}),
                       pd.DataFrame({"media_id": "guide-0", "item_id": new_ids[rng.random(len(new_ids)) < 0.5]})],
                      ignore_index=True)
    t1 = time.perf_counter()
    emb = embed_items(s.model, s.pipeline, items)
    t_embed = time.perf_counter() - t1
    t1 = time.perf_counter()
    index = FaissIndex(factory=factory, metric="ip").build(emb, items["item_id"].to_numpy())
    t_index = time.perf_counter() - t1
    rec = Recommender.from_components(pipeline=s.pipeline, model=s.model, items=items, events=w.events, index=index,
                                      ranker=s.ranker, feature_builder=s.builder, users=w.users, social=w.social,
                                      media=w.media, media_pools=pools, item_embeddings=emb, n_candidates=300,
                                      no_partner="catalogue")  # a fifth of the requests are the network's own pages
    setup = {"world_events": len(w.events), "fit_seconds": t_fit, "embed_seconds": t_embed,
             "index_build_seconds": t_index, "total_setup_seconds": time.perf_counter() - t0}
    return rec, w, setup


def _warm(rec, medias: list) -> None:
    """What a serving process has warm after its first minutes: every partner's popular list per segment."""
    state = rec._state
    users = state.tables.get("users")
    col = state.config.segment_column
    segments = [None] + (sorted(users[col].dropna().astype(str).unique()) if users is not None and col in users else [])
    for m in medias:
        for seg in segments:
            state.popular.top(state.catalogue, m, seg)


def _picks(users: np.ndarray, medias: list, n_requests: int, seed: int) -> list[tuple]:
    """The benchmark's (user, partner) requests, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return [(users[rng.integers(len(users))], medias[rng.integers(len(medias))]) for _ in range(n_requests)]


def _latency(rec, picks: list[tuple], medias: list, k: int, rounds: int = 5) -> tuple[list[dict], dict, dict]:
    """Per round, wall and CPU (this thread) percentiles of the single recommend calls ``picks`` (the same
    requests each round, each round starting with no remembered user vectors); per-stage means (wall, CPU);
    percentiles of each request's median CPU over the rounds."""
    from recsys.feed.engine import Request, run_batch

    _warm(rec, medias)
    per_round, cpu_by_round = [], []
    for _ in range(rounds):
        rec._state.filters_cache.pop("user_vectors", None)
        for u, m in picks[:50]:  # warm-up: caches, lazy imports, first FAISS calls
            rec.recommend(u, k=k, media_id=m)
        wall, cpu = [], []
        for u, m in picks:
            t, c = time.perf_counter(), time.thread_time()
            rec.recommend(u, k=k, media_id=m)
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
        per_round.append({"wall": _percentiles(wall), "cpu": _percentiles(cpu)})
        cpu_by_round.append(cpu)
    stages: dict[str, float] = {}
    stages_cpu: dict[str, float] = {}
    n_stage = min(300, len(picks))
    rec._state.filters_cache.pop("user_vectors", None)  # these users were just served: start as cold as above
    for u, m in picks[:n_stage]:
        run_batch(rec._state, [Request(u, m, k)], timings=stages, cpu_timings=stages_cpu,
                  drop=("user_id", "media_id", "fallback", "score_kind"), as_columns=True)  # as recommend runs it
    per = lambda d: {name: 1000 * v / n_stage for name, v in d.items()}  # noqa: E731
    steady = _percentiles(list(np.median(np.asarray(cpu_by_round), axis=0)))
    return per_round, {"wall_ms": per(stages), "cpu_ms": per(stages_cpu)}, steady


def _median_round(rounds: list[dict], kind: str) -> dict:
    """Each percentile's median over the rounds (``kind``: "wall" or "cpu")."""
    keys = [k for k in rounds[0][kind] if k != "n"]
    return {"n": sum(r[kind]["n"] for r in rounds), "rounds": len(rounds),
            **{k: float(np.median([r[kind][k] for r in rounds])) for k in keys}}


def _forest_engines(rec, picks: list, k: int, n: int = 100, repeats: int = 5) -> dict:
    """CPU ms per request of each GBDT tree walk, side by side (round robin, median of ``repeats``), on the very
    feature matrices ``n`` requests hand the ranker (the candidates, then the reasons' ablated rows)."""
    from recsys.models.rankers.forest import ENGINES, CompiledForest
    from recsys.models.rankers.gbdt import GBDTRanker

    ranker = rec._state.ranker
    if not isinstance(ranker, GBDTRanker):  # the tree walks of a GBDT are what is timed
        return {}
    seen: list[np.ndarray] = []
    predict = ranker.predict_arrays
    ranker.predict_arrays = lambda X: (seen.append(np.array(X, dtype=np.float64)), predict(X))[1]
    try:
        for u, m in picks[:n]:
            rec.recommend(u, k=k, media_id=m)
    finally:
        del ranker.predict_arrays
    forests = {}
    for engine in ENGINES[1:]:
        try:
            forests[engine] = CompiledForest([ranker.ctr_, ranker.cvr_], len(ranker.columns_), engine=engine)
        except ValueError:
            continue
    ms = _side_by_side({e: f.decision_functions for e, f in forests.items()}, seen, n, repeats)
    return {"requests": n, "matrices": len(seen), "rows_per_request": sum(len(X) for X in seen) / n,
            "cpu_ms_per_request": ms, "repeats": repeats,
            "ratio_to_compiled": {e: v / ms["compiled"] for e, v in ms.items()} if "compiled" in ms else {}}


def _side_by_side(fns: dict, inputs: list, n_requests: int, repeats: int) -> dict[str, float]:
    """CPU ms per request of each of ``fns`` called on every one of ``inputs`` (``n_requests`` requests' worth),
    round robin, the median of ``repeats``."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            c = time.thread_time()
            for x in inputs:
                f(x)
            times[name].append(1000 * (time.thread_time() - c) / n_requests)
    return {name: float(np.median(t)) for name, t in times.items()}


def _tower_engines(rec, picks: list, n: int = 300, repeats: int = 5) -> dict:
    """CPU ms per request of the user tower (inputs and forward, one user at a time) in NumPy (the folded
    tower serving uses) and through torch, side by side (round robin, median of ``repeats``), for ``n`` requests."""
    import torch

    from recsys.feed.engine import Request, _resolve

    state = rec._state
    folded = state.folded_tower()
    if folded is None:
        return {}
    reqs = [Request(u, m, 20) for u, m in picks[:n]]
    _resolve(state, reqs)
    args = [(np.asarray([r.user_id], dtype=object), np.asarray([r.row], np.int64), [r.media_id], [r.context])
            for r in reqs]

    def with_torch(a):
        with torch.inference_mode():
            return state.model.user_embeddings(state.users.tower_inputs(*a)).numpy()

    walks = {"numpy": lambda a: folded(state.users.tower_arrays(*a)), "torch": with_torch}
    diff = max(float(np.abs(walks["numpy"](a) - walks["torch"](a)).max()) for a in args)
    ms = _side_by_side(walks, args, len(args), repeats)
    return {"requests": len(args), "cpu_ms_per_request": ms, "repeats": repeats, "max_abs_difference": diff,
            "ratio_to_numpy": {e: v / ms["numpy"] for e, v in ms.items()}}


def _index_recall(rec, vecs: np.ndarray, k: int, nprobes=(4, 8, 16, 32)) -> dict:
    """Recall@k of the index's unfiltered search against exact scoring, and CPU ms per query, per nprobe
    (IVF indexes; the serving setting is marked)."""
    import torch

    index = rec._state.index
    knobs = index.effective_params()
    if "nprobe" not in knobs:
        return {"serving": knobs}
    items = torch.from_numpy(rec._state.item_emb)
    exact = torch.topk(torch.from_numpy(vecs) @ items.T, k, dim=1).indices.numpy()
    out = {"serving": knobs, "k": k, "queries": len(vecs), "by_nprobe": {}}
    for nprobe in sorted(set(nprobes) | {knobs["nprobe"]}):
        _, labels = index.raw_search(vecs, k, params={"nprobe": nprobe})
        c = time.thread_time()
        for q in vecs[:64]:
            index.raw_search(q[None, :], k, params={"nprobe": nprobe})
        ms = 1000 * (time.thread_time() - c) / min(64, len(vecs))
        hits = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(labels, exact, strict=True)]
        out["by_nprobe"][str(nprobe)] = {"recall": float(np.mean(hits)), "cpu_ms_per_query": ms}
    return out


def _throughput(rec, users: np.ndarray, n_batch_users: int, measured: int, k: int, chunk: int, media: str) -> dict:
    """recommend_batch on ``measured`` users (chunks are independent, so time scales linearly to ``n_batch_users``)."""
    ids = np.resize(users, measured)
    t = time.perf_counter()
    out = rec.recommend_batch(ids, k=k, media_id=media, chunk_size=chunk)
    dt = time.perf_counter() - t
    return {"users": int(n_batch_users), "measured_users": int(measured), "measured_seconds": dt,
            "seconds": dt * n_batch_users / measured, "extrapolated": measured < n_batch_users,
            "users_per_s": measured / dt, "rows": len(out), "chunk_size": chunk}


def _markdown(r: dict) -> str:
    lat, cpu, thr, mm = r["latency"], r["latency_cpu"], r["batch"], r["matmul_limit"]
    st, st_cpu = r["latency_stages_ms"], r["latency_stages_cpu_ms"]
    met = lambda p: f"{r['target_p99_ms']} ms ({'met' if p <= r['target_p99_ms'] else 'missed'})"  # noqa: E731
    rec = r.get("index_recall", {})
    lines = [
        "# Recommender serving speed", "",
        f"Command: `{r['command']}` ({r['seconds']:.0f} s in all)  ",
        f"Machine: {r['machine']}; every stage limited to one thread (torch, FAISS, BLAS/OpenMP). Load average "
        f"(1/5/15 min) {', '.join(f'{x:.1f}' for x in r['load_average']['before'])} before and "
        f"{', '.join(f'{x:.1f}' for x in r['load_average']['after'])} after the run: the machine is shared, so "
        "wall times include waiting for a core; CPU time (``time.thread_time``, this thread only) is the cost "
        "of a request without the wait.", "",
        f"Catalogue {r['n_items']:,} items ({r['index_factory']}, {r.get('index_params', {})}), "
        f"{r['n_candidates']} candidates ranked per request, k={r['k']}. Ranking features computed as "
        f"{r.get('serving', {}).get('ranking_features')}, GBDT trees walked by "
        f"{r.get('serving', {}).get('forest_engine')}.", "",
        f"recommend latency, one request in process, {lat.get('rounds', 1)} rounds of {lat['n'] // lat.get('rounds', 1):,} "
        "calls: the median over the rounds of each percentile, then each round's own.", "",
        "| recommend latency | p50 ms | p90 ms | p99 ms | mean ms | target p99 |",
        "|---|---|---|---|---|---|",
        f"| **wall, median of rounds** | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | **{lat['p99_ms']:.2f}** | "
        f"{lat['mean_ms']:.2f} | {met(lat['p99_ms'])} |",
        f"| CPU, median of rounds | {cpu['p50_ms']:.2f} | {cpu['p90_ms']:.2f} | {cpu['p99_ms']:.2f} | "
        f"{cpu['mean_ms']:.2f} | {met(cpu['p99_ms'])} |",
        *([f"| each request's median CPU over the rounds (host noise damped; not the target's measure) | "
           f"{sc['p50_ms']:.2f} | {sc['p90_ms']:.2f} | {sc['p99_ms']:.2f} | {sc['mean_ms']:.2f} | |"]
          if (sc := r.get("latency_steady_cpu")) else []),
        *[f"| round {i + 1}: wall / CPU | {w['p50_ms']:.2f} / {c['p50_ms']:.2f} | {w['p90_ms']:.2f} / "
          f"{c['p90_ms']:.2f} | {w['p99_ms']:.2f} / {c['p99_ms']:.2f} | {w['mean_ms']:.2f} / {c['mean_ms']:.2f} | |"
          for i, (w, c) in enumerate((x["wall"], x["cpu"]) for x in r.get("latency_rounds", []))],
        "", "| stage (mean ms per request) | " + " | ".join(st) + " | sum |", "|---|" + "---|" * (len(st) + 1),
        "| wall | " + " | ".join(f"{v:.2f}" for v in st.values()) + f" | {sum(st.values()):.2f} |",
        "| CPU | " + " | ".join(f"{st_cpu.get(k, float('nan')):.2f}" for k in st) +
        f" | {sum(st_cpu.values()):.2f} |", ""]
    if rec.get("by_nprobe"):
        lines += [f"Index recall@{rec['k']} against exact scoring ({rec['queries']} users, unfiltered), and CPU "
                  f"per query; serving uses {rec['serving']}:", "", "| nprobe | recall | CPU ms per query |",
                  "|---|---|---|"]
        lines += [f"| {n} | {v['recall']:.3f} | {v['cpu_ms_per_query']:.2f} |" for n, v in rec["by_nprobe"].items()]
        lines.append("")
    fe = r.get("forest_engines") or {}
    if fe.get("cpu_ms_per_request"):
        lines += _engine_table(f"GBDT tree walks side by side on the feature matrices of {fe['requests']} requests "
                               f"({fe['rows_per_request']:.0f} rows per request: candidates, then the reasons' "
                               f"ablated rows), CPU ms per request, median of {fe['repeats']} round-robin repeats:",
                               "tree walk", fe, "compiled")
    te = r.get("tower_engines") or {}
    if te.get("cpu_ms_per_request"):
        lines += _engine_table(f"User tower (inputs and forward, one user a call) side by side for {te['requests']} "
                               f"requests, CPU ms per request, median of {te['repeats']} round-robin repeats; largest "
                               f"difference between the two vectors {te['max_abs_difference']:.1e}:",
                               "user tower", te, "numpy")
    lines += [
        "| batch scoring | users | seconds | users/s | ratio to matmul limit |", "|---|---|---|---|---|",
        f"| recommend_batch (retrieve + rank + rules + reasons) | {thr['users']:,} | {thr['seconds']:.1f}"
        f"{' (extrapolated from ' + format(thr['measured_users'], ',') + ' users)' if thr['extrapolated'] else ''} | "
        f"{thr['users_per_s']:,.0f} | {thr['users_per_s'] / mm['users_per_s']:.3f} |",
        f"| exact scoring limit (GEMM + top-{r['k']} over all items, 1 thread) | {thr['users']:,} | "
        f"{mm['seconds_for_all_users']:.1f} (extrapolated) | {mm['users_per_s']:,.0f} | 1 |", "",
        f"GEMM rate measured: {mm['gflops']:.1f} GFLOP/s.", ""]
    return "\n".join(lines)


def _engine_table(title: str, label: str, d: dict, ref: str) -> list[str]:
    """Markdown lines of a side-by-side timing (``d``: cpu_ms_per_request and ratio_to_<ref>)."""
    ratio = d.get(f"ratio_to_{ref}", {})
    return [title, "", f"| {label} | CPU ms per request | ratio to {ref} |", "|---|---|---|",
            *[f"| {e} | {v:.3f} | {ratio.get(e, float('nan')):.2f} |" for e, v in d["cpu_ms_per_request"].items()], ""]


def _uptime() -> str:
    import subprocess

    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_recommend_benchmark(*, n_items: int = 1_000_000, n_requests: int = 1000, n_batch_users: int = 100_000,
                            k: int = 20, n_events: int = 200_000, index_factory: str = "IVF1024,Flat",
                            batch_chunk: int = 2048, batch_measured_users: int | None = 8192, seed: int = 0,
                            out_dir: str | Path = "experiments/recommend", target_p99_ms: float = 5.0,
                            latency_rounds: int = 5, progress: bool = False) -> dict:
    """Measure ``recommend`` latency and ``recommend_batch`` throughput; write JSON + markdown; return the figures.

    Latency: ``latency_rounds`` rounds of ``n_requests`` calls; ``latency`` / ``latency_cpu`` hold each
    percentile's median over the rounds (one round's p99 moves by ~1 ms on a shared machine), and
    ``latency_rounds`` every round's own.

    ``batch_measured_users``: users actually run through ``recommend_batch`` (None: all ``n_batch_users``); the
    time is scaled to ``n_batch_users`` (chunks are independent).
    """
    t_start = time.perf_counter()
    limits = _one_thread()
    load_before, uptime_before = os.getloadavg(), _uptime()
    try:
        rec, w, setup = _build(n_events, n_items, index_factory, seed, progress)
        users = w.events.loc[w.events["event_type"].astype(str) != "impression", "user_id"].unique()
        medias = ["guide-0", "app-0", "app-1", "kol-0", None]
        picks = _picks(users, medias, n_requests, seed)
        rounds, stages, steady = _latency(rec, picks, medias, k, latency_rounds)
        latency, latency_cpu = _median_round(rounds, "wall"), _median_round(rounds, "cpu")
        engines = _forest_engines(rec, picks, k)
        towers = _tower_engines(rec, picks)
        measured = min(n_batch_users, batch_measured_users or n_batch_users)
        batch = _throughput(rec, users, n_batch_users, measured, k, batch_chunk, "app-0")
        vecs = _user_vectors(rec, users[:256])
        mm = _matmul_limit(vecs, rec._state.item_emb, n_batch_users, k)
        recall = _index_recall(rec, vecs, rec._state.config.n_candidates)
    finally:
        limits.restore_original_limits()
    index = rec._state.index
    forest = getattr(rec._state.ranker, "_forest", None)
    serving = {"ranking_features": "arrays" if rec._state.candidate_features() is not None else "frames",
               "forest_engine": forest[2].engine if forest else None}
    result = {"command": f"run_recommend_benchmark(n_items={n_items}, n_requests={n_requests}, "
                         f"n_batch_users={n_batch_users}, batch_measured_users={batch_measured_users}, k={k}, "
                         f"latency_rounds={latency_rounds}, "
                         f"n_events={n_events}, index_factory={index_factory!r})",
              "cli": f"recsys benchmark recommend --items {n_items} --requests {n_requests} --batch-users {n_batch_users} "
                     f"--rounds {latency_rounds}",
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
              "uptime": {"before": uptime_before, "after": _uptime()},
              "n_items": n_items, "n_candidates": rec._state.config.n_candidates, "k": k,
              "index_factory": index_factory,
              "index_params": index.effective_params(),
              "target_p99_ms": target_p99_ms, "setup": setup, "latency": latency, "latency_cpu": latency_cpu,
              "latency_rounds": rounds, "latency_steady_cpu": steady,
              "latency_stages_ms": stages["wall_ms"], "latency_stages_cpu_ms": stages["cpu_ms"],
              "index_recall": recall, "forest_engines": engines, "tower_engines": towers, "batch": batch,
              "matmul_limit": mm, "serving": serving,
              "seconds": time.perf_counter() - t_start}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recommend.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "recommend.md").write_text(_markdown(result))
    return result


def _user_vectors(rec, users: np.ndarray) -> np.ndarray:
    from recsys.feed.engine import Request, _resolve, _user_vectors

    reqs = [Request(u, "app-0", 20) for u in users]
    _resolve(rec._state, reqs)
    return _user_vectors(rec._state, reqs)
