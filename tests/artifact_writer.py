"""Subprocess of tests/test_atomic_saves.py: save two artifacts over one path, alternately, until killed.

    python -m tests.artifact_writer bundle|index SRC_A SRC_B TARGET [SAVES]

Prints "ready" once both sources are loaded, waits for a line on stdin, then saves, printing "saved <n>"
after every save (SAVES: stop after that many; default: until killed). Waiting lets a test start several
writers at once (their imports overlap) and kill each at a moment of its choosing.
"""

from __future__ import annotations

import sys


def main(kind: str, src_a: str, src_b: str, target: str, saves: int | None = None) -> None:
    if kind == "bundle":
        from recsys.loading import load_bundle as load
    else:
        from recsys.index import load_index as load
    sources = [load(src_a), load(src_b)]
    print("ready", flush=True)
    sys.stdin.readline()
    n = 0
    while saves is None or n < saves:
        art = sources[n % 2]
        if kind == "bundle":
            art.save(target, overwrite=True)
        else:
            art.save(target)
        n += 1
        print(f"saved {n}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5], *(int(a) for a in sys.argv[5:6]))
