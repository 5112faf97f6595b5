"""Write the Taobao multi-behaviour purchases as a LightGCN-format directory (train.txt, test.txt) under OUT.

    python experiments/tuning/derive_taobao.py /tmp/taobao-buy      # then: recsys tune --data-dir /tmp/taobao-buy

Source: ../shared/data/multibehavior/taobao (see its PROVENANCE.md): train.txt (purchases, valid.txt included)
is the training set, test.txt (one held-out purchase per user) the test set. The files are written outside the
repository only (the data's licence does not allow committing them).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multibehavior" / "taobao"


def _lists(path: Path) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for line in path.read_text().splitlines():
        user, item = line.split()
        out[int(user)].append(int(item))
    return out


def main(out: str) -> None:
    """Write OUT/train.txt and OUT/test.txt ('user item item ...' a line, each item once)."""
    target = Path(out)
    if Path(__file__).resolve().parents[2] in target.resolve().parents:
        sys.exit("write the derived data outside the repository (e.g. /tmp/taobao-buy)")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("train.txt", "test.txt"):
        lists = _lists(SOURCE / name)
        lines = [" ".join(map(str, [u, *dict.fromkeys(items)])) for u, items in sorted(lists.items())]
        (target / name).write_text("\n".join(lines) + "\n")
    print(f"wrote {target}/train.txt and test.txt from {SOURCE}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/taobao-buy")
