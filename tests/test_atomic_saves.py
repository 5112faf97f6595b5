"""Saves are atomic under real SIGKILLs and concurrent readers: a load sees the old artifact or the new one,
whole, and the next save leaves nothing behind (issue 16 item 4).

A writer subprocess (tests/artifact_writer.py) saves two different artifacts over one path, alternately;
the test kills it with SIGKILL at random moments, or loads the path over and over while it writes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recsys.errors import ArtifactError
from recsys.index import ExactIndex, load_index
from recsys.loading import load_bundle
from tests.test_recommender import fitted

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "bundles" / "v1"


@pytest.fixture(scope="module")
def two_bundles(tmp_path_factory):
    """Bundles A and B (n_candidates 300 and 137) saved by a load-then-save round, as the writer saves them,
    and the sha256 of recommender.json for each n_candidates: what a whole bundle of each must list."""
    base = tmp_path_factory.mktemp("sources")
    rec = fitted()
    shas = {}
    for name, n in (("a", 300), ("b", 137)):
        rec.n_candidates = n
        rec.save(base / f"{name}0")
        load_bundle(base / f"{name}0").save(base / name)
        shas[n] = json.loads((base / name / "manifest.json").read_text())["files"]["recommender.json"]["sha256"]
    rec.n_candidates = 300
    return base / "a", base / "b", shas


def _writers(kind: str, a: Path, b: Path, target: Path, n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-m", "tests.artifact_writer", kind, str(a), str(b), str(target)],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def _leftovers(target: Path) -> list[str]:
    """Everything beside ``target`` except the path itself and its one current version."""
    names = sorted(p.name for p in target.parent.iterdir() if p.name != target.name)
    versions = target.parent / f".{target.name}.versions"
    if versions.is_dir():
        names.remove(versions.name)
        names += [f"{versions.name}/{p.name}" for p in versions.iterdir() if p != target.resolve()]
    return names


def _check_whole_bundle(target: Path, shas: dict) -> None:
    rec = load_bundle(target)
    assert rec.n_candidates in shas
    assert rec.bundle_manifest_["files"]["recommender.json"]["sha256"] == shas[rec.n_candidates]


def _kill_at_random(procs, target: Path, seconds: float, check, save_again, seed: int) -> None:
    rng = random.Random(seed)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
        time.sleep(rng.uniform(0.05, seconds))
        p.send_signal(signal.SIGKILL)
        p.wait()  # reaped: its pid is gone, as after a crash
        check()  # the path holds a whole artifact, the old one or the new one
        save_again()
        assert _leftovers(target) == [], "a killed save left files the next save did not remove"


def test_sigkill_during_bundle_saves_leaves_a_whole_bundle_and_nothing_behind(two_bundles, tmp_path):
    a, b, shas = two_bundles
    target = tmp_path / "live" / "rec"
    target.parent.mkdir()
    load_bundle(a).save(target)  # a plain directory first: the first overwrite turns it into a symlink
    procs = _writers("bundle", a, b, target, 3)
    try:
        _kill_at_random(procs, target, 1.5, lambda: _check_whole_bundle(target, shas),
                        lambda: load_bundle(b).save(target, overwrite=True), seed=0)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_sigkill_during_index_saves_leaves_a_whole_index_and_nothing_behind(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    sizes = {}
    for name, n in (("a", 3000), ("b", 2000)):
        idx = ExactIndex(metric="ip").build(rng.normal(size=(n, 16)).astype(np.float32), np.arange(n))
        idx.save(src / name)
        sizes[n] = idx
    target = tmp_path / "live" / "index"
    target.parent.mkdir()
    procs = _writers("index", src / "a", src / "b", target, 8)

    def check():
        if target.exists():  # the first save may not have happened yet
            assert len(load_index(target)) in sizes

    try:
        _kill_at_random(procs, target, 0.4, check, lambda: sizes[2000].save(target), seed=1)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_loads_during_concurrent_saves_match_their_manifest(two_bundles, tmp_path):
    a, b, shas = two_bundles
    target = tmp_path / "rec"
    load_bundle(a).save(target)
    (writer,) = _writers("bundle", a, b, target, 1)
    try:
        writer.stdin.write("go\n")
        writer.stdin.flush()
        seen = set()
        for _ in range(8):
            rec = load_bundle(target)  # never "not a bundle directory", never a checksum error
            seen.add(rec.n_candidates)
            assert rec.bundle_manifest_["files"]["recommender.json"]["sha256"] == shas[rec.n_candidates]
        assert writer.poll() is None, "the writer stopped: the test did not overlap saves and loads"
    finally:
        writer.kill()
        writer.wait()


def test_saving_over_a_plain_directory_bundle_and_leftovers_of_dead_writers(tmp_path):
    import shutil

    target = tmp_path / "rec"
    shutil.copytree(FIXTURE, target)  # a plain directory, as recsys before 0.2 wrote and as copies are
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited: what it left behind is stale
    host = __import__("recsys.storage.atomic", fromlist=["_HOST"])._HOST
    for junk in (f".rec.tmp-{host}-{pid}-0123abcd", ".rec.old-89abcdef", f".rec.link-{host}-{pid}-00000000"):
        (tmp_path / junk).mkdir() if "link" not in junk else os.symlink("nowhere", tmp_path / junk)
    live = tmp_path / f".rec.tmp-{host}-{os.getpid()}-feedbeef"  # a save in progress in this process: kept
    live.mkdir()
    load_bundle(FIXTURE).save(target, overwrite=True)
    assert target.is_symlink() and load_bundle(target).info["items"] == 100
    assert _leftovers(target) == [live.name]
    with pytest.raises(ArtifactError, match="already exists"):
        load_bundle(FIXTURE).save(target)
