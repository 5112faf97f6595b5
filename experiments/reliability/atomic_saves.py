"""Re-measure issue 16 item 4: random SIGKILLs during bundle saves, and loads during concurrent saves.

    .venv/bin/python experiments/reliability/atomic_saves.py --kills 20 --loads 42

Bundles A and B are the committed v1 fixture with two n_candidates values. Kills: a writer process
(tests/artifact_writer.py) saves A and B over one path alternately and is SIGKILLed after a random
delay; we count kills after which the path does not load whole, kills that left something beside the
path, and what is still there after the next save. Loads: one writer saves in a loop while this process
loads the path; a load fails, or "mismatches" when the recommender.json it parsed is not the one its
manifest lists (told apart by n_candidates).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from recsys.loading import load_bundle  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "bundles" / "v1"


def writer(a: Path, b: Path, target: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "tests.artifact_writer", "bundle", str(a), str(b), str(target)],
                         cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def beside(target: Path) -> list[str]:
    out = [p.name for p in target.parent.iterdir() if p.name not in (target.name, f".{target.name}.versions")]
    versions = target.parent / f".{target.name}.versions"
    if versions.is_dir():
        out += [p.name for p in versions.iterdir() if p != target.resolve()]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--loads", type=int, default=42)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="atomic-saves-"))
    rec = load_bundle(FIXTURE)
    shas = {}
    for name, n in (("a", 300), ("b", 137)):
        rec.n_candidates = n
        rec.save(work / "src" / f"{name}0")
        load_bundle(work / "src" / f"{name}0").save(work / "src" / name)
        shas[n] = json.loads((work / "src" / name / "manifest.json").read_text())["files"]["recommender.json"]["sha256"]
    a, b, target = work / "src" / "a", work / "src" / "b", work / "live" / "rec"
    target.parent.mkdir()
    load_bundle(a).save(target)
    broken = left = left_after_save = 0
    for _ in range(args.kills):
        p = writer(a, b, target)
        p.stdin.write("go\n")
        p.stdin.flush()
        time.sleep(rng.uniform(0.05, 2.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        try:
            got = load_bundle(target)
            broken += got.bundle_manifest_["files"]["recommender.json"]["sha256"] != shas.get(got.n_candidates)
        except Exception:  # noqa: BLE001 - any failure to load counts
            broken += 1
        left += bool(beside(target))
        load_bundle(b).save(target, overwrite=True)
        left_after_save += bool(beside(target))
    print(f"kills: {args.kills}; path not loadable whole: {broken}; something left beside it right after the kill: "
          f"{left}; still left after the next save: {left_after_save}")
    p = writer(a, b, target)
    p.stdin.write("go\n")
    p.stdin.flush()
    failed = mismatched = 0
    for _ in range(args.loads):
        try:
            got = load_bundle(target)
            mismatched += got.bundle_manifest_["files"]["recommender.json"]["sha256"] != shas[got.n_candidates]
        except Exception:  # noqa: BLE001
            failed += 1
    saves = 0
    p.kill()
    p.wait()
    saves = sum(1 for line in p.stdout if line.startswith("saved"))
    print(f"loads during concurrent saves: {args.loads}; failed: {failed}; content not matching the manifest: "
          f"{mismatched} (the writer completed {saves}+ saves meanwhile)")


if __name__ == "__main__":
    main()
