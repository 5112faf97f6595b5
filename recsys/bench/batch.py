"""Batch scoring speed: the same users scored four ways with the 1M-item serving model, in one run.

``run_batch_benchmark`` builds the serving benchmark's model (:func:`recsys.bench.recommend._build`: a small
synthetic world fitted, the catalogue grown to ``n_items``, FAISS), saves it as a bundle, draws ``n_users``
distinct known users, then measures on this machine (threads left at their defaults):

* (a) a loop of ``rec.recommend(user, k, media_id)`` over ``loop_users`` of them, in process, three times (before
  (b), between (b) and (c), after (c)); the run with the median rate is (a);
* (b) ``recsys score`` local (:func:`recsys.batch.job.score`) over all of them, in a subprocess;
* (c) ``recsys score --engine spark`` (:func:`recsys.batch.spark.score_spark_job`) on ``master``, in a subprocess;
* (d) the exact-scoring limit: one GEMM of user embeddings against every item embedding plus a top-k;
* the resume: (b) again into a fresh folder, SIGKILLed about halfway, then rerun in process with the same
  arguments; its rows are compared with (b)'s (lost, duplicated, different items).

Peak memory of (b) and (c) is the largest summed RSS of the subprocess and its children (Spark's JVM and
Python workers), polled every 0.2 s. Writes ``batch.json`` and ``batch.md`` into ``out_dir``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.bench.batch_report import markdown, targets

__all__ = ["run_batch_benchmark"]

_SCORED_AT = "2026-01-15 00:00:00"  # one scored_at for every run, so their rows compare cell for cell


def _tree_rss(proc) -> int:
    """Summed RSS (bytes) of ``proc`` and all its descendants; processes that vanish count 0."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _job(args: list[str], *, kill_after_part: int | None = None) -> dict:
    """Run :mod:`recsys.bench.batch_worker` with ``args``; wall seconds, peak tree RSS, its manifest (None when
    killed), the parts it announced; SIGKILL it once it has announced part ``kill_after_part``."""
    import threading

    import psutil

    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as err:
        t = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "recsys.bench.batch_worker", *args], stdout=subprocess.PIPE,
                                 stderr=err, text=True, env={**os.environ, "CI": "true"})
        reader = threading.Thread(target=lambda: lines.extend(x.strip() for x in child.stdout), daemon=True)
        reader.start()
        proc, peak, killed = psutil.Process(child.pid), 0, False
        while child.poll() is None:
            peak = max(peak, _tree_rss(proc))
            parts = [int(x.split()[1]) for x in list(lines) if x.startswith("part ")]
            if kill_after_part is not None and not killed and parts and max(parts) >= kill_after_part:
                child.send_signal(signal.SIGKILL)
                killed = True
            time.sleep(0.2)
        wall = time.perf_counter() - t
        reader.join(timeout=10)
        err.seek(0)
        stderr = err.read()
    manifest = next((json.loads(x[len("manifest "):]) for x in lines if x.startswith("manifest ")), None)
    if manifest is None and not killed:
        raise RuntimeError(f"batch worker {args[0]} failed (exit {child.returncode}): {stderr[-2000:]}")
    return {"wall_seconds": wall, "peak_rss_mb": peak / 2**20, "manifest": manifest, "killed": killed,
            "exit_code": child.returncode,
            "parts_announced": sorted({int(x.split()[1]) for x in lines if x.startswith("part ")})}


def _rate(run: dict, n_users: int) -> dict:
    """A job's figures: users/s over the job's own seconds (model load and plan included) and over the wall."""
    m = run["manifest"]
    return {"users": m["users"], "rows": m["rows"], "parts": m["parts"], "job_seconds": m["seconds"],
            "wall_seconds": run["wall_seconds"], "users_per_s": n_users / m["seconds"],
            "users_per_s_wall": n_users / run["wall_seconds"], "peak_rss_mb": run["peak_rss_mb"],
            "workers": m.get("workers")}


def _loop(rec, users: np.ndarray, media_id: str, k: int) -> dict:
    """(a): one ``recommend`` call per user, timed after 20 warm-up calls."""
    for u in users[:20]:
        rec.recommend(u, k=k, media_id=media_id)
    t = time.perf_counter()
    for u in users:
        rec.recommend(u, k=k, media_id=media_id)
    dt = time.perf_counter() - t
    return {"users": len(users), "seconds": dt, "users_per_s": len(users) / dt}


def _median_loop(runs: list[dict]) -> dict:
    """(a) as the run with the median users/s of ``runs`` (taken before (b), between (b) and (c) and after (c): a few
    seconds each, on a machine whose speed moves by tens of percent from one minute to the next), every run kept."""
    middle = sorted(runs, key=lambda x: x["users_per_s"])[len(runs) // 2]
    return {**middle, "runs_users_per_s": [x["users_per_s"] for x in runs]}


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out, columns=["user_id", "rank", "item_id"])  # pyarrow skips _job.json, _SUCCESS...


def _compare(reference: Path, other: Path) -> dict:
    """(user_id, rank) rows of ``other`` against ``reference``: lost, extra, duplicated, a different item."""
    a, b = _rows(reference), _rows(other)
    keys = ["user_id", "rank"]
    both = a.drop_duplicates(keys).merge(b.drop_duplicates(keys), on=keys, how="outer", indicator=True,
                                         suffixes=("_ref", "_other"))
    same = both["_merge"] == "both"
    return {"reference_rows": len(a), "rows": len(b), "lost": int((both["_merge"] == "left_only").sum()),
            "extra": int((both["_merge"] == "right_only").sum()), "duplicated": int(b.duplicated(keys).sum()),
            "different_item": int((both.loc[same, "item_id_ref"] != both.loc[same, "item_id_other"]).sum())}


def _resume(bundle: Path, out: Path, users_file: Path, args: list[str], n_parts: int, pause_s: float) -> dict:
    """Kill a local job about halfway (after part ``n_parts // 2 - 1``), then resume it in process."""
    from recsys.batch.job import score
    from recsys.batch.parts import part_files

    killed = _job(["local", str(bundle), str(out), *args, str(pause_s)], kill_after_part=max(0, n_parts // 2 - 1))
    left = len(part_files(out))
    media_id, k, chunk = args[1], int(args[2]), int(args[3])
    t = time.perf_counter()
    manifest = score(bundle, out, media_id=media_id, users=users_file, k=k, chunk_size=chunk, scored_at=_SCORED_AT,
                     progress=False)
    return {"killed": killed["killed"], "killed_after_seconds": killed["wall_seconds"],
            "parts_at_kill": left, "parts": manifest["parts"], "resumed_parts": len(manifest["resumed_parts"]),
            "resumed_run_seconds": time.perf_counter() - t, "killed_run_exit_code": killed["exit_code"]}


def _sample_users(rec, n_users: int, seed: int) -> tuple[np.ndarray, int]:
    """``n_users`` distinct known user ids drawn with ``seed`` (all of them when fewer exist); how many exist."""
    known = rec.audience(None)
    rng = np.random.default_rng(seed)
    take = min(n_users, len(known))
    return np.sort(rng.choice(known, size=take, replace=False)), len(known)


def run_batch_benchmark(*, n_items: int = 1_000_000, n_users: int = 100_000, n_events: int = 200_000,
                        media_id: str = "app-0", k: int = 20, loop_users: int = 2000, chunk_size: int = 2048,
                        index_factory: str = "IVF1024,Flat", master: str = "local[2]", seed: int = 0,
                        kill_pause_s: float = 0.0, out_dir: str | Path = "experiments/batch",
                        progress: bool = False) -> dict:
    """Measure (a)-(d) and the resume for the same users; write ``batch.json`` and ``batch.md``; return the figures.

    The world is generated with ``n_users`` users (and ``n_events`` events), so that ``n_users`` distinct known
    users exist; ``kill_pause_s``: a sleep after each part of the run that is killed (tests: so the kill lands
    before the last part).
    """
    from recsys.bench.recommend import _build, _uptime, _user_vectors, run_context
    from recsys.bench.recommend_timing import _matmul_limit

    t_start, load_before, uptime_before = time.perf_counter(), os.getloadavg(), _uptime()
    rec, _, setup = _build(n_events, n_items, index_factory, seed, progress, n_users=n_users)
    users, n_known = _sample_users(rec, n_users, seed)
    n = len(users)
    rng = np.random.default_rng(seed + 2)
    loop_sample = users[np.sort(rng.choice(n, size=min(loop_users, n), replace=False))]
    with tempfile.TemporaryDirectory(prefix="recsys-batch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        rec.save(tmp / "bundle")
        setup["bundle_save_seconds"] = time.perf_counter() - t
        users_file = tmp / "users.parquet"
        pd.DataFrame({"user_id": users}).to_parquet(users_file, index=False)
        loops = [_loop(rec, loop_sample, media_id, k)]
        d = _matmul_limit(_user_vectors(rec, users[:256]), rec._state.item_emb, n, k)
        info = rec.info
        args = [str(users_file), media_id, str(k), str(chunk_size), _SCORED_AT]
        b_run = _job(["local", str(tmp / "bundle"), str(tmp / "b"), *args])
        b = _rate(b_run, n)
        loops.append(_loop(rec, loop_sample, media_id, k))
        c = _rate(_job([f"spark={master}", str(tmp / "bundle"), str(tmp / "c"), *args]), n)
        loops.append(_loop(rec, loop_sample, media_id, k))
        a = _median_loop(loops)
        del rec  # the resume loads the bundle itself
        resume = _resume(tmp / "bundle", tmp / "r", users_file, args, b["parts"], kill_pause_s)
        resume["full_run_seconds"] = b["job_seconds"]
        resume["rows_vs_full_run"] = _compare(tmp / "b", tmp / "r")
        spark_rows = _compare(tmp / "b", tmp / "c")
    result = {
        "command": f"run_batch_benchmark(n_items={n_items}, n_users={n_users}, n_events={n_events}, "
                   f"media_id={media_id!r}, k={k}, loop_users={loop_users}, chunk_size={chunk_size}, "
                   f"index_factory={index_factory!r}, master={master!r}, seed={seed})",
        "cli": f"recsys benchmark batch --items {n_items} --users {n_users} --events {n_events} "
               f"--media-id {media_id} --loop-users {loop_users} --master '{master}'",
        **run_context(load_before, uptime_before),
        "n_items": info["items"], "known_users": n_known, "users": n, "users_requested": n_users,
        "media_id": media_id, "k": k, "chunk_size": chunk_size, "index_factory": index_factory, "setup": setup,
        "a_recommend_loop": a, "b_local_job": b, "c_spark_job": {**c, "master": master}, "d_exact_gemm_limit": d,
        "resume": resume, "spark_rows_vs_local": spark_rows, "seconds": time.perf_counter() - t_start}
    result["targets"] = targets(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "batch.md").write_text(markdown(result))
    return result
