"""The local batch job: every user's feed for one partner or all of them, as resumable Parquet parts.

>>> manifest = score("runs/synthetic-demo/bundle", "feeds/", media_id="guide-0")  # doctest: +SKIP

The plan is deterministic: for each partner (sorted), its users (sorted, unique) cut into chunks of
``chunk_size``; chunk ``i`` of the whole plan becomes ``part-{i:05d}.parquet`` (:mod:`.parts`). Memory is
bounded by one chunk's feeds. ``_job.json`` records the fingerprint of the inputs before the first part; a
rerun with the same inputs skips the parts already published and finishes the rest, a rerun with other inputs
is refused (naming what changed) unless ``restart=True``. The end writes ``_manifest.json`` and ``_SUCCESS``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.batch import parts as files
from recsys.batch.rows import ModelInfo, model_info, nest, run_time, score_chunk
from recsys.batch.workers import SCORING_THREADS, early_workers, run_parallel, usable_cores
from recsys.errors import ConfigError, DataValidationError
from recsys.feed.request_checks import check_k
from recsys.ids import coerce_id, id_kind
from recsys.loading import MLFLOW_SCHEMES
from recsys.progress import show_progress
from recsys.recommender import Recommender
from recsys.storage.bundle import manifest_digest
from recsys.threads import math_threads
from recsys.version import __version__

__all__ = ["score", "Plan", "plan_job"]

FORMAT = 1
AUTO_WORKERS_MIN_USERS = 10_000  # workers=None: one process per core from this many users left to score


@dataclass(frozen=True)
class Plan:
    """What a job scores: partner -> its sorted users, and the chunks ``(partner, start, stop)`` in part order."""

    users: dict[str, list]
    chunks: list[tuple[str, int, int]]
    source: str  # "audience", "list" or the users file's path

    def digest(self) -> str:
        """sha256 of the sorted ids per partner (the users part of the fingerprint)."""
        h = hashlib.sha256()
        for media, ids in self.users.items():
            h.update(json.dumps([media, ids], ensure_ascii=False).encode("utf-8") + b"\n")
        return h.hexdigest()


def _user_list(rec: Recommender, users: Sequence | str | Path | None) -> tuple[list | None, str]:
    """The given users as the model's ids, sorted and unique (None: each partner's audience), and their source."""
    if users is None:
        return None, "audience"
    source = "list"
    if isinstance(users, (str, Path)):
        from recsys.features.validation import read_table

        table = read_table(users)
        if "user_id" not in table.columns:
            raise DataValidationError(f"the users file {users} needs a 'user_id' column; it has {list(table.columns)}")
        users, source = table["user_id"].tolist(), str(users)
    elif isinstance(users, (pd.DataFrame, bytes)) or not isinstance(users, (Sequence, np.ndarray, pd.Series, pd.Index)):
        raise DataValidationError(f"users must be a list of user ids, a parquet/CSV file with a 'user_id' column or "
                                  f"None (each partner's audience), got {type(users).__name__}")
    kind = id_kind(pd.Index(rec.audience()))
    out, bad = set(), []
    for n, raw in enumerate(list(users)):
        try:
            uid, note = coerce_id(raw, kind, "user_id", "unknown")
        except DataValidationError as e:
            raise DataValidationError(f"users row {n}: {e}") from None
        if note:
            bad.append(raw)
        else:
            out.add(uid)
    if bad:
        raise DataValidationError(f"{len(bad)} user ids are not ids of this model's kind ({kind}), e.g. {bad[:5]}: "
                                  "fix or drop them (a new user's id is fine when it has the model's kind)")
    return sorted(out, key=lambda v: (isinstance(v, str), v)), source


def plan_job(rec: Recommender, *, media_id: str | None, users: Sequence | str | Path | None,
             chunk_size: int) -> Plan:
    """The deterministic plan of a job (see the module docstring)."""
    partners = [media_id] if media_id is not None else rec.partners()
    if media_id is not None:
        rec.audience(media_id)  # an unknown partner: the request path's DataValidationError
    given, source = _user_list(rec, users)
    per = {m: (list(given) if given is not None else rec.audience(m).tolist()) for m in partners}
    chunks = [(m, s, min(s + chunk_size, len(ids))) for m, ids in per.items() for s in range(0, len(ids), chunk_size)]
    return Plan(users=per, chunks=chunks, source=source)


def _model_fingerprint(rec: Recommender, uri: str, info: ModelInfo) -> dict:
    manifest = getattr(rec, "bundle_manifest_", None)
    digest = manifest_digest(manifest) if manifest else None
    return {"uri": uri, "manifest_sha256": digest, "training_data_hash": getattr(rec, "training_data_hash_", None),
            "name": info.name, "version": info.version}


def _changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _prepare(out: Path, job: dict, scored_at: Any, restart: bool) -> pd.Timestamp:
    """Check ``out`` against ``job`` (refuse or start over), write ``_job.json``; the run's scored_at."""
    old = files.read_json(out / files.JOB_FILE)
    if restart:
        files.remove_outputs(out)
        old = None
    elif old is None and files.part_files(out):
        raise ConfigError(f"{out} holds part files but no {files.JOB_FILE}: they are not this job's. Write to an "
                          "empty directory, or pass restart=True (--restart) to remove them and start over")
    if old is not None:
        changed = _changes(old.get("fingerprint", {}), job["fingerprint"])
        if scored_at is not None and run_time(scored_at) != pd.Timestamp(old.get("scored_at")):
            changed.append(f"scored_at: {old.get('scored_at')!r} -> {str(run_time(scored_at))!r}")
        if changed:
            raise ConfigError(f"{out} holds the parts of another job; changed: {'; '.join(changed)}. Rerun with the "
                              "same arguments to resume it, write to another directory, or pass restart=True "
                              "(--restart) to remove its parts and start over")
        files.remove_strays(out)
        (out / files.SUCCESS_FILE).unlink(missing_ok=True)
        return pd.Timestamp(old["scored_at"])
    files.remove_strays(out)
    when = run_time(scored_at)
    files.write_json(out / files.JOB_FILE, {**job, "scored_at": str(when)})
    return when


def score(model: str | Path | Recommender, out: str | Path, *, media_id: str | None = None,
          users: Sequence | str | Path | None = None, k: int = 20, nested: bool = False, chunk_size: int = 2048,
          restart: bool = False, progress: bool | None = None, scored_at: Any = None,
          on_part: Callable[[int], None] | None = None, workers: int | None = None) -> dict:
    """Score every user's feed into Parquet parts under ``out``; the manifest (also ``out/_manifest.json``).

    ``model``: a bundle path, a ``models:/`` URI (:func:`recsys.load`) or a loaded Recommender. ``media_id``:
    one partner, None: every partner of the model. ``users``: ids, a parquet/CSV file with a ``user_id`` column
    (ids kept as written), or None: each partner's audience (:meth:`Recommender.audience`). ``nested``: one row
    per user, the feed a list of structs. ``scored_at``: the run's time written in every row (default: now, kept
    by a resumed run). ``on_part(i)`` is called after part ``i`` is published. Resumes an interrupted run with the
    same arguments; refuses other arguments in the same ``out`` (ConfigError) unless ``restart``.
    ``workers``: processes scoring parts side by side, this one included (:mod:`.workers`; default: one per
    usable core when at least ``AUTO_WORKERS_MIN_USERS`` users are left, else 1; never more than the parts
    left). Each holds the model, so memory grows with them; the rows do not change (every process computes with
    one math thread, :data:`~recsys.batch.workers.SCORING_THREADS`). Worker processes start by importing the
    calling script again: in a script, call this under ``if __name__ == "__main__":`` (else
    :class:`~recsys.errors.WorkerError` says so).
    """
    started, t0 = pd.Timestamp.now(tz="UTC"), time.perf_counter()
    k, chunk_size = check_k(k), check_k(chunk_size, "chunk_size", None)  # the request path's one rule
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ConfigError(f"workers must be a whole number >= 1 (leave it out for one per core), got {workers!r}")
    early = early_workers(model, users, workers, AUTO_WORKERS_MIN_USERS)  # their loads overlap this one's
    try:
        return _score(model, out, media_id=media_id, users=users, k=k, nested=nested, chunk_size=chunk_size,
                      restart=restart, progress=progress, scored_at=scored_at, on_part=on_part, workers=workers,
                      early=early, started=started, t0=t0)
    finally:
        if early is not None:  # unused, or already shut down by the parts' run (then this does nothing)
            early[1].shutdown(wait=False, cancel_futures=True)


def _score(model: Any, out: str | Path, *, media_id: str | None, users: Any, k: int, nested: bool, chunk_size: int,
           restart: bool, progress: bool | None, scored_at: Any, on_part: Callable[[int], None] | None,
           workers: int | None, early: tuple[int, Any] | None, started: pd.Timestamp, t0: float) -> dict:
    if isinstance(model, Recommender):
        rec, uri = model, "<in-memory Recommender>"
    else:
        import recsys

        rec, uri = recsys.load(model), str(model)
    info = model_info(rec, uri)
    plan = plan_job(rec, media_id=media_id, users=users, chunk_size=int(chunk_size))
    fingerprint = {"model": _model_fingerprint(rec, uri, info), "users": plan.digest(), "media_id": media_id,
                   "partners": list(plan.users), "k": int(k), "nested": bool(nested), "chunk_size": int(chunk_size),
                   "library_version": __version__}
    job = {"format": FORMAT, "fingerprint": fingerprint, "users_source": plan.source, "parts": len(plan.chunks)}
    state = rec._ready()  # the model's id kinds type the parts' columns
    schema = files.arrow_schema(id_kind(state.users.ids), id_kind(state.catalogue.index), bool(nested))
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    with files.job_lock(root):
        when = _prepare(root, job, scored_at, restart)
        settings = {"k": int(k), "nested": bool(nested), "info": info, "when": when, "schema": schema,
                    "manifest_sha256": fingerprint["model"]["manifest_sha256"]}
        source = None if isinstance(model, Recommender) or str(model).startswith(MLFLOW_SCHEMES) else model
        counts, resumed, n_workers = _run_parts(rec, source, root, plan, settings, workers=workers,
                                                progress=progress, on_part=on_part, early=early)
        manifest = _manifest(job, info, plan, counts, resumed, started, when, time.perf_counter() - t0)
        manifest["workers"] = n_workers
        files.write_json(root / files.MANIFEST_FILE, manifest)
        files.write_json(root / files.SUCCESS_FILE, {"parts": len(plan.chunks)})
    return manifest


def _run_parts(rec: Recommender, source: Any, out: Path, plan: Plan, settings: dict, *, workers: int | None,
               progress: bool | None, on_part: Callable[[int], None] | None, early: tuple[int, Any] | None = None
               ) -> tuple[list[int], list[int], int]:
    """Write every part not yet published (in this process or in worker processes); the row count of each part,
    the indices of the parts skipped and the number of processes that scored. ``source``: the bundle directory workers load (None: the model is not
    a bundle on disk, and is saved to a temporary one when workers are used). ``early``: (processes, pool) from
    :func:`~recsys.batch.workers.early_workers`, used when the job needs exactly that many processes (else a pool is started here)."""
    from tqdm.auto import tqdm

    counts: list[int | None] = [files.part_rows(files.part_path(out, i)) for i in range(len(plan.chunks))]
    resumed = [i for i, rows in enumerate(counts) if rows is not None]
    todo = [(i, media, plan.users[media][start:stop]) for i, (media, start, stop) in enumerate(plan.chunks)
            if counts[i] is None]
    n_users = sum(len(users) for _, _, users in todo)
    auto = usable_cores() if n_users >= AUTO_WORKERS_MIN_USERS else 1  # starting a worker costs a model load
    n_workers = max(1, min(workers or auto, len(todo)))
    bar = tqdm(total=len(plan.chunks), initial=len(resumed), desc="score", unit="part",
               disable=not show_progress(progress))

    def done(i: int, rows: int) -> None:
        counts[i] = rows
        bar.update()
        if on_part is not None:
            on_part(i)

    def score_here(i: int, media: str | None, users: list) -> int:
        s = settings
        frame = score_chunk(rec, users, k=s["k"], media_id=media, model=s["info"], scored_at=s["when"])
        return files.write_part(nest(frame) if s["nested"] else frame, files.part_path(out, i), s["schema"])

    with bar:
        if n_workers <= 1:
            with math_threads(SCORING_THREADS):  # as in run_parallel: the same rows whoever scores a part
                for i, media, users in todo:
                    done(i, score_here(i, media, users))
        else:
            with _bundle_dir(rec, source) as bundle:
                if source is None:  # a fresh save: the workers must find that save's manifest
                    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
                    settings = {**settings, "manifest_sha256": manifest_digest(manifest)}
                pool = early[1] if early is not None and early[0] == n_workers and source is not None else None
                run_parallel(bundle, out, todo, workers=n_workers, settings=settings, score_here=score_here,
                             on_done=done, pool=pool)
    return [int(c) for c in counts], resumed, n_workers


@contextmanager
def _bundle_dir(rec: Recommender, source: Any) -> Iterator[Path]:
    """A bundle directory holding ``rec`` for worker processes: ``source`` itself, else a temporary save."""
    if source is not None:
        path = Path(str(source)[len("file://"):] if str(source).startswith("file://") else source)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="recsys-score-") as tmp:
        yield rec.save(Path(tmp) / "bundle")


def _manifest(job: dict, info: ModelInfo, plan: Plan, counts: list[int], resumed: list[int],
              started: pd.Timestamp, when: pd.Timestamp, seconds: float) -> dict:
    per: dict[str, dict] = {m: {"users": len(ids), "rows": 0, "parts": 0} for m, ids in plan.users.items()}
    for (media, _, _), rows in zip(plan.chunks, counts, strict=True):
        per[media]["rows"] += rows
        per[media]["parts"] += 1
    return {"format": FORMAT, "inputs": {**job["fingerprint"], "users_source": plan.source}, "model": info.to_dict(),
            "partners": per, "rows": int(sum(counts)), "users": int(sum(len(v) for v in plan.users.values())),
            "parts": len(plan.chunks), "resumed_parts": resumed, "scored_at": str(when),
            "started_at": started.isoformat(), "finished_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "seconds": round(seconds, 3)}
