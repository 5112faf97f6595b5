"""The longer fuzz run: tests/test_fuzz.py with more examples per target, its counts written as JSON.

    .venv/bin/python experiments/reliability/fuzz.py --examples 1000 --json experiments/reliability/fuzz.json

Same targets, strategies and checks as the test suite (which runs 60 examples per target in ``make test``);
derandomized, so a run with the same ``--examples`` tries the same inputs. Counts: ``tried``, ``ok``,
``fallback`` (a feed on a fallback path), ``typed`` (a RecsysError), ``crash`` and ``wrong`` (both must be 0).
Exits non-zero when a crash or a wrong answer is found; the failing inputs are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="inputs tried per fuzz target (6 targets)")
    parser.add_argument("--json", type=Path, default=ROOT / "experiments/reliability/fuzz.json",
                        help="where to write the counts")
    args = parser.parse_args(argv)
    os.environ["RECSYS_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["RECSYS_FUZZ_JSON"] = str(args.json.resolve())
    import pytest

    code = pytest.main(["-q", "-s", "-p", "no:cacheprovider", "-W", "ignore", str(ROOT / "tests/test_fuzz.py")])
    counts = json.loads(args.json.read_text())
    print(json.dumps(counts["total"], sort_keys=True))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
