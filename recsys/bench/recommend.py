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

Writes ``recommend.json`` and ``recommend.md`` into ``out_dir`` (default ``experiments/recommend``). The measurements live in
:mod:`.recommend_timing`, the markdown in :mod:`.recommend_report`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.bench.recommend_report import _markdown
from recsys.bench.recommend_timing import (
    _forest_engines,
    _index_recall,
    _latency,
    _matmul_limit,
    _median_round,
    _throughput,
    _tower_engines,
)

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


def _build(n_events: int, n_items: int, factory: str, seed: int, progress: bool, n_users: int | None = None,
           item_to_item: int = 0, friends: int = 0):
    from recsys.datasets.synthetic import generate_world
    from recsys.fit.components import TrainSettings
    from recsys.index import FaissIndex
    from recsys.models.encode import embed_items
    from recsys.recommender import Recommender

    t0 = time.perf_counter()
    w = generate_world(n_events, n_users=n_users, seed=seed, progress=progress)  # n_users None: ~n_events / 100
    # with item_to_item the ranker also learns from the channel's score (recsys.feed.item_score), as it would in use
    small = Recommender(train=TrainSettings(dim=32, epochs=3, ranker_max_iter=60, seed=seed,
                                            ranker_options={"num_threads": 1}), item_to_item=item_to_item).fit(
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
                                      no_partner="catalogue",  # a fifth of the requests are the network's own pages
                                      item_to_item=item_to_item, friends=friends)
    setup = {"world_events": len(w.events), "fit_seconds": t_fit, "embed_seconds": t_embed,
             "index_build_seconds": t_index, "total_setup_seconds": time.perf_counter() - t0}
    return rec, w, setup


MEDIAS = ["guide-0", "app-0", "app-1", "kol-0", None]  # a fifth of the requests are the network's own pages


def _requests(w, n_requests: int, seed: int) -> tuple[np.ndarray, list[tuple]]:
    """The world's users with a non-impression event, and the benchmark's (user, partner) requests."""
    users = w.events.loc[w.events["event_type"].astype(str) != "impression", "user_id"].unique()
    return users, _picks(users, MEDIAS, n_requests, seed)


def _picks(users: np.ndarray, medias: list, n_requests: int, seed: int) -> list[tuple]:
    """The benchmark's (user, partner) requests, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return [(users[rng.integers(len(users))], medias[rng.integers(len(medias))]) for _ in range(n_requests)]


def run_context(load_before: tuple, uptime_before: str) -> dict:
    """The machine and how busy it was before and after a benchmark run (every benchmark JSON records these)."""
    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
            "uptime": {"before": uptime_before, "after": _uptime()}}


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
                            latency_rounds: int = 5, item_to_item: int = 0, friends: int = 0,
                            progress: bool = False) -> dict:
    """Measure ``recommend`` latency and ``recommend_batch`` throughput; write JSON + markdown; return the figures.

    Latency: ``latency_rounds`` rounds of ``n_requests`` calls; ``latency`` / ``latency_cpu`` hold each
    percentile's median over the rounds (one round's p99 moves by ~1 ms on a shared machine), and
    ``latency_rounds`` every round's own.

    ``batch_measured_users``: users actually run through ``recommend_batch`` (None: all ``n_batch_users``); the
    time is scaled to ``n_batch_users`` (chunks are independent).

    ``item_to_item`` / ``friends``: candidates the item-to-item / friends channel adds per request
    (``Recommender(item_to_item=..., friends=...)``); with either, every figure is measured with the channels on,
    and the same requests' latency is measured again with the two-tower alone on the same Recommender, in
    alternating rounds (``latency_paired``), side by side. With ``item_to_item`` the ranker is trained on the
    channel's score too (``ranker_reads_item_to_item_score``), so both sides of that comparison compute it.
    """
    from recsys.feed.item_score import ranker_uses

    t_start = time.perf_counter()
    limits = _one_thread()
    load_before, uptime_before = os.getloadavg(), _uptime()
    try:
        rec, w, setup = _build(n_events, n_items, index_factory, seed, progress, item_to_item=item_to_item,
                               friends=friends)
        figures = _measure(rec, w, k=k, n_requests=n_requests, n_batch_users=n_batch_users,
                           batch_measured_users=batch_measured_users, batch_chunk=batch_chunk,
                           latency_rounds=latency_rounds, seed=seed)
        if item_to_item or friends:
            figures.update(_two_tower_only(rec, w, k, n_requests, latency_rounds, seed))
    finally:
        limits.restore_original_limits()
    serving = _serving(rec)
    result = {"command": f"run_recommend_benchmark(n_items={n_items}, n_requests={n_requests}, "
                         f"n_batch_users={n_batch_users}, batch_measured_users={batch_measured_users}, k={k}, "
                         f"latency_rounds={latency_rounds}, item_to_item={item_to_item}, friends={friends}, "
                         f"n_events={n_events}, index_factory={index_factory!r})",
              "cli": f"recsys benchmark recommend --items {n_items} --requests {n_requests} --batch-users {n_batch_users} "
                     f"--rounds {latency_rounds}" + (f" --item-to-item {item_to_item}" if item_to_item else "")
                     + (f" --friends {friends}" if friends else ""),
              **run_context(load_before, uptime_before),
              "n_items": n_items, "n_candidates": rec._state.config.n_candidates, "item_to_item": item_to_item,
              "friends": friends, "k": k, "ranker_reads_item_to_item_score": ranker_uses(rec._state.ranker),
              "index_factory": index_factory, "index_params": rec._state.index.effective_params(),
              "target_p99_ms": target_p99_ms, "setup": setup, **figures, "serving": serving,
              "seconds": time.perf_counter() - t_start}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recommend.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "recommend.md").write_text(_markdown(result))
    return result


def _measure(rec, w, *, k: int, n_requests: int, n_batch_users: int, batch_measured_users: int | None,
             batch_chunk: int, latency_rounds: int, seed: int) -> dict:
    """Every figure of the benchmark, measured in this order, keyed as the JSON writes them."""
    users, picks = _requests(w, n_requests, seed)
    rounds, stages, steady = _latency(rec, picks, MEDIAS, k, latency_rounds)
    engines = _forest_engines(rec, picks, k)
    towers = _tower_engines(rec, picks)
    measured = min(n_batch_users, batch_measured_users or n_batch_users)
    batch = _throughput(rec, users, n_batch_users, measured, k, batch_chunk, "app-0")
    vecs = _user_vectors(rec, users[:256])
    mm = _matmul_limit(vecs, rec._state.item_emb, n_batch_users, k)
    recall = _index_recall(rec, vecs, rec._state.config.n_candidates)
    return {"latency": _median_round(rounds, "wall"), "latency_cpu": _median_round(rounds, "cpu"),
            "latency_rounds": rounds, "latency_steady_cpu": steady,
            "latency_stages_ms": stages["wall_ms"], "latency_stages_cpu_ms": stages["cpu_ms"],
            "index_recall": recall, "forest_engines": engines, "tower_engines": towers, "batch": batch,
            "matmul_limit": mm}


def _two_tower_only(rec, w, k: int, n_requests: int, rounds: int, seed: int) -> dict:
    """The same requests' latency on the same Recommender with its channels and with the two-tower alone, in
    alternating rounds (the host's speed drifts over a minute: alternating gives both the same drift)."""
    from dataclasses import replace

    state = rec._state
    off = state.evolve(config=replace(state.config, item_to_item=0, friends=0))
    picks = _requests(w, n_requests, seed)[1]
    both, alone = [], []
    try:
        for _ in range(rounds):
            for which, out in ((state, both), (off, alone)):
                rec._state = which
                out.extend(_latency(rec, picks, MEDIAS, k, 1)[0])
    finally:
        rec._state = state
    return {"latency_paired": {"both_channels": _median_round(both, "wall"), "two_tower_only": _median_round(alone, "wall"),
                               "both_channels_cpu": _median_round(both, "cpu"),
                               "two_tower_only_cpu": _median_round(alone, "cpu")}}


def _serving(rec) -> dict:
    """How serving computed the ranking features and walked the GBDT trees."""
    forest = getattr(rec._state.ranker, "_forest", None)
    return {"ranking_features": "arrays" if rec._state.candidate_features() is not None else "frames",
            "forest_engine": forest[2].engine if forest else None}


def _user_vectors(rec, users: np.ndarray) -> np.ndarray:
    from recsys.feed.engine import Request, _resolve, _user_vectors

    reqs = [Request(u, "app-0", 20) for u in users]
    _resolve(rec._state, reqs)
    return _user_vectors(rec._state, reqs)
