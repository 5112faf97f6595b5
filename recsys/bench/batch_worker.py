"""Subprocess of the batch benchmark (:mod:`recsys.bench.batch`): one scoring job, so that its peak memory
and wall time are its own and a SIGKILL hits a real process.

    python -m recsys.bench.batch_worker ENGINE BUNDLE OUT USERS MEDIA_ID K CHUNK_SIZE SCORED_AT [PAUSE_S]

``ENGINE``: ``local`` (:func:`recsys.batch.job.score`) or ``spark=<master>``
(:func:`recsys.batch.spark.score_spark_job`). ``USERS``: a parquet file with a ``user_id`` column. The local
job prints ``part <i>`` after each published part (then sleeps ``PAUSE_S``, 0 by default). The last line is
``manifest <json>``.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> None:
    """Run the job ``argv`` describes (see the module docstring) and print its manifest."""
    engine, bundle, out, users, media_id, k, chunk_size, scored_at = argv[:8]
    pause = float(argv[8]) if len(argv) > 8 else 0.0
    common = {"media_id": media_id, "users": users, "k": int(k), "chunk_size": int(chunk_size),
              "scored_at": scored_at}
    if engine == "local":
        from recsys.batch.job import score

        def on_part(i: int) -> None:
            print(f"part {i}", flush=True)
            time.sleep(pause)

        manifest = score(bundle, out, progress=False, on_part=on_part, **common)
    elif engine.startswith("spark="):
        from recsys.batch.spark import score_spark_job

        manifest = score_spark_job(bundle, out, master=engine[len("spark="):], **common)
    else:
        raise SystemExit(f"unknown engine {engine!r}: use local or spark=<master>")
    print("manifest " + json.dumps(manifest, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
