"""Subprocess of tests/test_batch_job.py: run a local batch job until it ends or is killed.

    python -m tests.batch_worker BUNDLE OUT CHUNK_SIZE K SCORED_AT [WORKERS]

Prints "part <i>" after each part is published; with ``$RECSYS_TEST_PART_SLEEP_S`` it then sleeps that long,
so a test can SIGKILL it after some parts and before the last.
"""

from __future__ import annotations

import os
import sys
import time


def main(bundle: str, out: str, chunk_size: str, k: str, scored_at: str, workers: str = "1") -> None:
    from recsys.batch.job import score

    pause = float(os.environ.get("RECSYS_TEST_PART_SLEEP_S", "0"))

    def on_part(i: int) -> None:
        print(f"part {i}", flush=True)
        time.sleep(pause)

    score(bundle, out, k=int(k), chunk_size=int(chunk_size), scored_at=scored_at, progress=False, on_part=on_part,
          workers=int(workers))
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:7])
