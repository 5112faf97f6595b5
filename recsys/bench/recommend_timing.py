"""The measurements of the serving benchmark (:mod:`recsys.bench.recommend`): latency per request and per
stage, the tree walks and user towers side by side, the index's recall, batch throughput and the
matrix-multiply limit of exact scoring. All run on the calling thread."""

from __future__ import annotations

import time

import numpy as np


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


def _warm(rec, medias: list) -> None:
    """What a serving process has warm after its first minutes: every partner's popular list per segment."""
    state = rec._state
    users = state.tables.get("users")
    col = state.config.segment_column
    segments = [None] + (sorted(users[col].dropna().astype(str).unique()) if users is not None and col in users else [])
    for m in medias:
        for seg in segments:
            state.popular.top(state.catalogue, m, seg)


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
