"""Worker processes for the local batch job: one per core, each loading the bundle once and publishing parts.

A batch job's cost is per user and per candidate (retrieve, rank, rules), and one Python process uses one
core. :func:`run_parallel` scores in this process (its model is loaded already) and in ``workers - 1`` more
(``spawn``: no inherited threads or locks), each loading and verifying the bundle once; every process computes with
:data:`SCORING_THREADS` math threads (so a part's rows do not depend on which process scored it) and publishes
parts atomically exactly as the in-process job does (:mod:`.parts`). Parts go to whoever is free, so a faster
process takes more. A worker whose parent dies (even by SIGKILL) exits within a second, so a rerun never races
with it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SCORING_THREADS", "usable_cores", "run_parallel", "start_workers", "early_workers"]

# math threads of every process that scores parts (this one and the workers, whatever their number): rows must not
# depend on which process scored them, and a BLAS product summed by another number of threads can differ in the
# last bit, which reorders near-tied candidates (seen at 1M items: 22 of 2,000,000 rows of a resumed run differed
# from the uninterrupted run while the workers, unlike this process, ran faiss's BLAS on two threads)
SCORING_THREADS = 1

_BROKEN = ("a worker process of the batch job died or could not start (killed, out of memory, or it failed while "
           "starting: its own traceback is printed above). Called from a script? Worker processes start by importing "
           "the script again, so put the call under `if __name__ == \"__main__\":`, or pass workers=1 to score in "
           "this process only. The parts published so far are kept: run the job again to resume.")

_worker: dict[str, Any] = {}  # this worker process's model and settings (set once by _init)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _exit_with_parent(parent: int) -> None:
    """Die with the parent: Linux's parent-death signal where it exists, and a watcher thread everywhere."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="recsys-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the watcher started
        os._exit(1)


def _init(parent: int, bundle: str, preload: bool) -> None:
    from recsys.threads import limit_threads

    _exit_with_parent(parent)
    limit_threads(SCORING_THREADS)
    _worker["bundle"] = bundle
    if preload:  # started before the parent has its own model: load now, side by side with the parent's load
        try:
            _worker["loaded"] = _load(bundle)
        except Exception as e:  # noqa: BLE001 - raised again, with its message, as the first part's error
            _worker["load_error"] = e


def _load(bundle: str) -> Any:
    from recsys.loading import load_bundle

    rec = load_bundle(bundle)
    hook = os.environ.get("RECSYS_BATCH_LOAD_LOG")  # tests: one line per model load, to count loads per worker
    if hook:
        with open(hook, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    return rec


def _model(settings: dict) -> Any:
    """This worker's Recommender, loaded and verified on its first part (an error here reaches the parent as the
    part's error, with its message) and checked to be the very bundle the parent planned with."""
    rec = _worker.get("rec")
    if rec is None:
        from recsys.errors import ArtifactError
        from recsys.storage.bundle import manifest_digest

        if "load_error" in _worker:
            raise _worker["load_error"]
        rec = _worker.pop("loaded", None) or _load(_worker["bundle"])
        if manifest_digest(rec.bundle_manifest_) != settings["manifest_sha256"]:
            raise ArtifactError(f"{_worker['bundle']} changed after the job started (its manifest is not the one the "
                                "job planned with); rerun the job")
        _worker["rec"] = rec
    return rec


def _ready() -> None:
    """A no-op task: submitting one makes the pool start a process (whose initializer loads the bundle)."""


def _score_part(i: int, media: str | None, users: list, w: dict) -> tuple[int, int]:
    from recsys.batch import parts as files
    from recsys.batch.rows import nest, score_chunk

    frame = score_chunk(_model(w), users, k=w["k"], media_id=media, model=w["info"], scored_at=w["when"])
    return i, files.write_part(nest(frame) if w["nested"] else frame, files.part_path(Path(w["out"]), i), w["schema"])


def _pool(bundle: str | Path, workers: int, preload: bool):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers - 1, mp_context=mp.get_context("spawn"), initializer=_init,
                               initargs=(os.getpid(), str(bundle), preload))


def start_workers(bundle: str | Path, workers: int):
    """A pool of ``workers - 1`` processes for :func:`run_parallel`, started now and loading ``bundle`` as they
    start, so that their load overlaps the caller's own (a model load is seconds of a job's start). Shut it down
    (``shutdown(wait=False, cancel_futures=True)``) when the job does not use it."""
    pool = _pool(bundle, workers, preload=True)
    for _ in range(workers - 1):
        pool.submit(_ready)
    return pool


def early_workers(model: Any, users: Any, workers: int | None, min_users: int) -> tuple[int, Any] | None:
    """(processes, pool) of worker processes started before the job loads its model, when the job is known to need
    them before the model is loaded: a bundle on disk and ``workers`` > 1, or by default (one per core) a list or
    parquet file of at least ``min_users`` users. None otherwise (the job starts its workers later, if any)."""
    from recsys.loading import MLFLOW_SCHEMES

    if not isinstance(model, (str, os.PathLike)) or str(model).startswith(MLFLOW_SCHEMES):
        return None
    n = workers if workers is not None else usable_cores()
    if n <= 1:
        return None
    if workers is None:
        if isinstance(users, (str, os.PathLike)) and str(users).endswith(".parquet") and Path(users).is_file():
            import pyarrow.parquet as pq

            count = pq.ParquetFile(users).metadata.num_rows
        elif hasattr(users, "__len__") and not isinstance(users, (str, bytes, os.PathLike)):
            count = len(users)
        else:
            return None
        if count < min_users:
            return None
    path = Path(str(model)[len("file://"):] if str(model).startswith("file://") else model)
    if not (path / "manifest.json").is_file():
        return None  # not a bundle directory: the job's own load says what is wrong
    return n, start_workers(path.resolve(), n)


def run_parallel(bundle: str | Path, out: Path, todo: Sequence[tuple[int, str | None, list]], *, workers: int,
                 settings: dict, score_here: Callable[[int, str | None, list], int],
                 on_done: Callable[[int, int], None], pool: Any = None) -> None:
    """Score the parts ``todo`` (part index, partner, its users) in ``workers`` processes: this one, whose model is
    already loaded (``score_here(i, partner, users)`` publishes a part and returns its rows), and ``workers - 1``
    started here, each loading ``bundle``. Parts are handed out in plan order to whoever is free (two queued per
    worker, so a worker never waits for this process to finish a part); ``on_done(i, rows)`` runs in this process
    as each part is published. ``settings`` (k, nested, info, when, schema, manifest_sha256) are the job's. The
    first failing part stops the job and raises its error (published parts stay: a rerun resumes after them).
    ``pool``: one :func:`start_workers` started for ``bundle`` and ``workers`` (default: started here); it is shut
    down at the end.
    """
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    from recsys.errors import WorkerError
    from recsys.threads import math_threads

    queue = deque(todo)
    settings = {**settings, "out": str(out)}
    with pool if pool is not None else _pool(bundle, workers, preload=False) as pool, math_threads(SCORING_THREADS):
        pending: set = set()

        def collect(block: bool) -> None:
            done = {f for f in pending if f.done()} if not block else wait(pending, return_when=FIRST_COMPLETED)[0]
            for fut in done:
                pending.discard(fut)
                on_done(*fut.result())  # re-raises a worker's error here
            while queue and len(pending) < 2 * (workers - 1):
                pending.add(pool.submit(_score_part, *queue.popleft(), settings))

        try:
            collect(False)
            while queue:
                i, media, users = queue.popleft()
                on_done(i, score_here(i, media, users))
                collect(False)
            while pending:
                collect(True)
        except BrokenProcessPool as e:
            for fut in pending:
                fut.cancel()
            raise WorkerError(_BROKEN) from e
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
