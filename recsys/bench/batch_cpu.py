"""CPU time per user of the batch path, per stage, in one process with one math thread (a small-scale harness).

    python -m recsys.bench.batch_cpu BUNDLE [--users 2048] [--media-id app-0] [--k 20] [--rows OUT.parquet]

Loads ``BUNDLE``, limits the process to one math thread (as each of the batch job's worker processes does),
scores ``--users`` of the partner's audience (sorted, evenly spaced) through :func:`recsys.batch.rows.score_chunk`
in chunks of 2048 (the job's default) and prints this process's CPU milliseconds per user: in all, and per stage of
:func:`recsys.feed.engine.run_batch` (retrieve, features, ranker, rules, reasons). CPU time, not wall time, so that
other work on a shared machine moves the figures little. ``--rows`` writes the rows, to compare two versions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["measure"]


def measure(bundle: str | Path, *, n_users: int = 2048, media_id: str = "app-0", k: int = 20, chunk: int = 2048,
            rows: str | Path | None = None) -> dict[str, Any]:
    """CPU ms per user of scoring ``n_users`` of ``media_id``'s audience, in all and per run_batch stage."""
    import pandas as pd

    from recsys.batch.rows import ModelInfo, score_chunk
    from recsys.feed import engine
    from recsys.loading import load_bundle
    from recsys.threads import limit_threads

    limit_threads(1)
    rec = load_bundle(bundle)
    audience = rec.audience(None)  # as the benchmark: known users, scored on partner media_id
    users = audience[np.linspace(0, len(audience) - 1, min(n_users, len(audience))).astype(np.int64)]
    users = np.unique(users)
    stages: dict[str, float] = {}
    original = engine.run_batch

    def timed(state, reqs, *args, **kw):  # the stages of every run_batch call the chunk makes
        return original(state, reqs, *args, cpu_timings=stages, **kw)

    info, when = ModelInfo("bench", "0", str(bundle)), pd.Timestamp("2026-01-15")
    score_chunk(rec, users[:64].tolist(), k=k, media_id=media_id, model=info, scored_at=when)  # warm-up
    stages.clear()
    import recsys.recommender as recommender

    recommender.run_batch = timed
    frames = []
    try:
        t0 = time.process_time()
        for s in range(0, len(users), chunk):
            frames.append(score_chunk(rec, users[s:s + chunk].tolist(), k=k, media_id=media_id, model=info,
                                      scored_at=when))
        total = time.process_time() - t0
    finally:
        recommender.run_batch = original
    out = pd.concat(frames, ignore_index=True)
    if rows is not None:
        out.to_parquet(rows, index=False)
    n = len(users)
    per_stage = {s: 1000 * v / n for s, v in stages.items()}
    return {"users": n, "rows": len(out), "cpu_ms_per_user": 1000 * total / n,
            "stages_cpu_ms_per_user": per_stage, "outside_run_batch_ms": 1000 * total / n - sum(per_stage.values())}


def main(argv: list[str] | None = None) -> None:
    """Command line: print :func:`measure`'s figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle")
    p.add_argument("--users", type=int, default=2048)
    p.add_argument("--media-id", default="app-0")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--rows", default=None)
    a = p.parse_args(argv)
    print(json.dumps(measure(a.bundle, n_users=a.users, media_id=a.media_id, k=a.k, rows=a.rows), indent=2))


if __name__ == "__main__":
    main()
