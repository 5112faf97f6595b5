"""The local batch job (issue 18, items 1 and 2): a partner's audience, Parquet parts equal to recommend_batch,
every user once per partner, nested feeds, users files, refusal of changed inputs, and resume after a real
SIGKILL of a subprocess (tests/batch_worker.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import recsys
from recsys.batch.job import score
from recsys.cli import app
from recsys.errors import ConfigError, DataValidationError
from recsys.fit.components import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "tests" / "fixtures" / "bundles" / "v1"
WHEN = "2026-01-02 03:04:05"
FEED_COLUMNS = ["user_id", "media_id", "rank", "item_id", "score", "pctr", "pcvr", "reason", "fallback"]


@pytest.fixture(scope="module")
def fixture_rec() -> recsys.Recommender:
    return recsys.load(BUNDLE)


@pytest.fixture(scope="module")
def tiny() -> recsys.Recommender:
    """A hand-made log with string user ids: who has a positive event (not an impression) on which partner.

    guide-0: "007" (click), "u4" (fav); "u3" only saw an impression there. kol-0: "u2" (purchase), "u3" (cart);
    "007" only saw an impression. app-0: nobody. "u4"'s click without a partner counts for no partner. "u5" is
    in the users table only."""
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4"], "category": ["a", "a", "b", "b"], "brand": ["x"] * 4,
                          "shop": ["s"] * 4, "price": [1.0, 2.0, 3.0, 4.0], "commission_rate": [0.1] * 4,
                          "title": ["t one", "t two", "t three", "t four"]})
    log = [("007", "i1", "click", "guide-0"), ("007", "i2", "impression", "kol-0"), ("u2", "i2", "purchase", "kol-0"),
           ("u3", "i3", "impression", "guide-0"), ("u3", "i4", "cart", "kol-0"), ("u4", "i1", "fav", "guide-0"),
           ("u4", "i3", "click", None)]
    t0 = pd.Timestamp("2026-01-01")
    events = pd.DataFrame([{"user_id": u, "item_id": i, "event_type": e, "media_id": m,
                            "timestamp": t0 + pd.Timedelta(hours=n)} for n, (u, i, e, m) in enumerate(log)])
    return recsys.Recommender(train=TrainSettings(dim=4, epochs=1, ranker="none")).fit(
        events, items, users=pd.DataFrame({"user_id": ["007", "u2", "u3", "u4", "u5"]}),
        media=pd.DataFrame({"media_id": ["guide-0", "kol-0", "app-0"]}), progress=False)


def _read(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).sort_values(["media_id", "user_id", "rank"], kind="stable").reset_index(drop=True)


def _objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Values as Python objects, every missing value None (parquet gives NaN, recommend_batch None)."""
    frame = frame.reset_index(drop=True).astype(object)
    return frame.where(frame.notna(), None)


def test_audience_rule_on_a_hand_made_log(tiny: recsys.Recommender) -> None:
    assert tiny.audience("guide-0").tolist() == ["007", "u4"]
    assert tiny.audience("kol-0").tolist() == ["u2", "u3"]
    assert tiny.audience("app-0").tolist() == []
    assert tiny.audience().tolist() == ["007", "u2", "u3", "u4", "u5"]
    assert tiny.partners() == ["app-0", "guide-0", "kol-0"]


def test_audience_of_an_unknown_partner_is_the_request_paths_error(tiny: recsys.Recommender) -> None:
    with pytest.raises(DataValidationError, match="unknown media_id 'Guide-0'; did you mean 'guide-0'"):
        tiny.recommend("007", media_id="Guide-0")
    with pytest.raises(DataValidationError, match="unknown media_id 'Guide-0'; did you mean 'guide-0'"):
        tiny.audience("Guide-0")


def test_rows_equal_recommend_batch_and_every_user_once(fixture_rec: recsys.Recommender, tmp_path: Path) -> None:
    manifest = score(fixture_rec, tmp_path, k=5, chunk_size=4, progress=False, scored_at=WHEN)
    got = _read(tmp_path)
    for media in fixture_rec.partners():
        users = fixture_rec.audience(media)
        want = fixture_rec.recommend_batch(users.tolist(), k=5, media_id=media)
        mine = got[got["media_id"] == media]
        # every audience member exactly once, ranks 1..n without gaps
        assert sorted(mine["user_id"].unique().tolist()) == users.tolist()
        assert (mine.groupby("user_id")["rank"].apply(lambda r: r.tolist() == list(range(1, len(r) + 1)))).all()
        want = want.sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(_objects(mine[FEED_COLUMNS]), _objects(want[FEED_COLUMNS]), check_dtype=False)
        assert manifest["partners"][media]["users"] == len(users)
        assert manifest["partners"][media]["rows"] == len(mine)
    assert manifest["rows"] == len(got) and manifest["resumed_parts"] == []
    assert (got["scored_at"] == pd.Timestamp(WHEN)).all() and (tmp_path / "_SUCCESS").is_file()
    assert got["user_id"].dtype == np.int64 and got["item_id"].dtype == np.int64


def test_nested_layout(fixture_rec: recsys.Recommender, tmp_path: Path) -> None:
    score(fixture_rec, tmp_path / "flat", media_id="guide-1", k=4, chunk_size=5, progress=False, scored_at=WHEN)
    score(fixture_rec, tmp_path / "nested", media_id="guide-1", k=4, chunk_size=5, nested=True, progress=False,
          scored_at=WHEN)
    flat, nested = _read(tmp_path / "flat"), pd.read_parquet(tmp_path / "nested")
    assert nested["user_id"].tolist() == fixture_rec.audience("guide-1").tolist()  # one row per user, in order
    for row in nested.itertuples():
        feed = flat[flat["user_id"] == row.user_id]
        assert [s["item_id"] for s in row.feed] == feed["item_id"].tolist()
        assert [s["rank"] for s in row.feed] == list(range(1, len(feed) + 1))


def test_users_file_keeps_string_ids(tiny: recsys.Recommender, tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id\n007\nu5\n007\n", encoding="utf-8")
    manifest = score(tiny, tmp_path / "out", media_id="guide-0", users=users, k=2, progress=False)
    got = pd.read_parquet(tmp_path / "out")
    assert sorted(got["user_id"].unique().tolist()) == ["007", "u5"]  # '007' not 7, the repeat scored once
    assert manifest["users"] == 2 and manifest["inputs"]["users_source"] == str(users)
    (tmp_path / "bad.csv").write_text("id\n1\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match="user_id"):
        score(tiny, tmp_path / "bad", media_id="guide-0", users=tmp_path / "bad.csv", progress=False)


def test_refuses_a_changed_k_or_model_unless_restart(fixture_rec: recsys.Recommender, tmp_path: Path) -> None:
    model, out = tmp_path / "model", tmp_path / "out"
    fixture_rec.save(model)
    score(model, out, media_id="guide-0", k=3, progress=False)
    with pytest.raises(ConfigError, match="k: 3 -> 4"):
        score(model, out, media_id="guide-0", k=4, progress=False)
    changed = recsys.load(BUNDLE)  # the same path, another model: one item out of stock changes its tables
    changed.set_in_stock([changed._ready().catalogue.ids[0]], False)
    changed.save(model, overwrite=True)
    with pytest.raises(ConfigError, match="model.manifest_sha256"):
        score(model, out, media_id="guide-0", k=3, progress=False)
    manifest = score(model, out, media_id="guide-0", k=4, restart=True, progress=False)
    assert manifest["resumed_parts"] == [] and pd.read_parquet(out).groupby("user_id").size().max() == 4


def test_cli_score(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["score", "--model", str(BUNDLE), "--out", str(tmp_path / "f"), "--media-id", "guide-0",
                             "--k", "3"])
    assert ok.exit_code == 0, ok.output
    assert len(pd.read_parquet(tmp_path / "f")) == 3 * len(recsys.load(BUNDLE).audience("guide-0"))
    bad = runner.invoke(app, ["score", "--model", str(BUNDLE), "--out", str(tmp_path / "g"), "--media-id", "gide-0"])
    assert bad.exit_code == 2 and "did you mean 'guide-0'" in bad.output


def test_resume_after_sigkill_equals_an_uninterrupted_run(fixture_rec: recsys.Recommender, tmp_path: Path) -> None:
    out, chunk, k = tmp_path / "killed", 3, 4
    env = {**os.environ, "RECSYS_TEST_PART_SLEEP_S": "1", "CI": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.batch_worker", str(BUNDLE), str(out), str(chunk), str(k),
                             WHEN], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "part 0"
        assert proc.stdout.readline().strip() == "part 1"
        time.sleep(0.2)  # it is now sleeping after part 1 or already writing part 2
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    published = sorted(p.name for p in out.glob("part-*.parquet"))
    total = sum(-(-len(fixture_rec.audience(m)) // chunk) for m in fixture_rec.partners())
    assert 2 <= len(published) < total and not (out / "_SUCCESS").exists()
    for p in out.glob("part-*.parquet"):
        pd.read_parquet(p)  # every visible part is whole
    (out / ".part-00002.parquet.tmp-999999-deadbeef").write_bytes(b"PAR1 half a part")  # what a kill mid-write leaves

    resumed = score(BUNDLE, out, k=k, chunk_size=chunk, scored_at=WHEN, progress=False)
    whole = score(BUNDLE, tmp_path / "whole", k=k, chunk_size=chunk, scored_at=WHEN, progress=False)
    assert resumed["resumed_parts"] == [int(n[5:10]) for n in published] and whole["resumed_parts"] == []
    assert not list(out.glob(".*.tmp-*"))
    pd.testing.assert_frame_equal(_read(out), _read(tmp_path / "whole"))
    assert resumed["rows"] == whole["rows"] and resumed["partners"] == whole["partners"]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:  # a zombie has exited: it only waits to be reaped
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_worker_processes_write_the_same_rows_and_load_the_model_once_each(
        fixture_rec: recsys.Recommender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("RECSYS_BATCH_LOAD_LOG", str(log))
    one = score(BUNDLE, tmp_path / "one", k=4, chunk_size=5, scored_at=WHEN, progress=False, workers=1)
    two = score(BUNDLE, tmp_path / "two", k=4, chunk_size=5, scored_at=WHEN, progress=False, workers=2)
    assert two["parts"] == one["parts"] >= 4 and two["rows"] == one["rows"]
    assert (one["workers"], two["workers"]) == (1, 2)
    pd.testing.assert_frame_equal(_read(tmp_path / "two"), _read(tmp_path / "one"))
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)) == 1  # this process scores too: one worker started, loading the bundle once
    three = score(BUNDLE, tmp_path / "three", k=4, chunk_size=5, scored_at=WHEN, progress=False, workers=3)
    pd.testing.assert_frame_equal(_read(tmp_path / "three"), _read(tmp_path / "one"))
    pids = log.read_text().split()
    assert three["workers"] == 3 and 2 <= len(pids) == len(set(pids)) <= 3  # each worker loaded once, if at all
    # an in-memory model (no bundle on disk) goes to the workers through a temporary save, removed after
    mem = score(fixture_rec, tmp_path / "mem", k=4, chunk_size=5, scored_at=WHEN, progress=False, workers=2)
    assert mem["rows"] == one["rows"] and mem["model"]["name"] == "<in-memory Recommender>"
    pd.testing.assert_frame_equal(_read(tmp_path / "mem")[FEED_COLUMNS], _read(tmp_path / "one")[FEED_COLUMNS])
    with pytest.raises(ConfigError, match="workers must be a whole number"):
        score(BUNDLE, tmp_path / "bad", workers=0)


def test_sigkill_of_a_job_with_workers_stops_them_and_resumes_exactly(tmp_path: Path) -> None:
    out, chunk, k = tmp_path / "killed", 1, 4
    log = tmp_path / "loads.txt"
    env = {**os.environ, "RECSYS_TEST_PART_SLEEP_S": "0.5", "CI": "true", "RECSYS_BATCH_LOAD_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.batch_worker", str(BUNDLE), str(out), str(chunk), str(k),
                             WHEN, "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip().startswith("part ")
        workers = _children(proc.pid)  # the worker started besides the job's own process (and multiprocessing's
                                       # resource tracker)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    loaded = set(map(int, log.read_text().split())) if log.exists() else set()
    assert len(workers) >= 1 and loaded <= set(workers)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)  # the workers died with their parent: nothing writes behind a rerun
    published = sorted(p.name for p in out.glob("part-*.parquet"))
    resumed = score(BUNDLE, out, k=k, chunk_size=chunk, scored_at=WHEN, progress=False, workers=2)
    whole = score(BUNDLE, tmp_path / "whole", k=k, chunk_size=chunk, scored_at=WHEN, progress=False, workers=1)
    assert 1 <= len(published) < whole["parts"] and resumed["resumed_parts"] == [int(n[5:10]) for n in published]
    assert not list(out.glob(".*.tmp-*"))
    pd.testing.assert_frame_equal(_read(out), _read(tmp_path / "whole"))


def test_pool_is_the_partners_live_items(tmp_path: Path) -> None:
    rec = recsys.load(BUNDLE)  # its own copy: this test removes an item
    assert rec.pool("kol-0").tolist() == [3, 53, 74]  # the fixture's media_pools rows for kol-0
    assert len(rec.pool("app-0")) == rec.info["items"] == 100  # an unrestricted partner: the whole live catalogue
    rec.remove_items([53])
    assert rec.pool("kol-0").tolist() == [3, 74] and len(rec.pool("app-0")) == 99
    with pytest.raises(DataValidationError, match="did you mean 'kol-0'"):
        rec.pool("kol0")


def test_a_bundles_version_is_the_same_in_batch_rows_and_the_service(tmp_path: Path) -> None:
    from recsys.service.holder import resolve_source

    m = score(BUNDLE, tmp_path / "f", media_id="guide-0", k=2, scored_at=WHEN, progress=False)
    rows = pd.read_parquet(tmp_path / "f")
    assert set(rows["model_version"]) == {m["model"]["version"]} == {resolve_source(str(BUNDLE))[1]}
    assert len(m["model"]["version"]) == 12 and m["model"]["name"] == "v1"


def test_a_script_without_a_main_guard_gets_a_clear_error_not_a_broken_pool(tmp_path: Path) -> None:
    # worker processes start by importing the calling script again (spawn); without `if __name__ == "__main__":`
    # that import calls score() once more and the worker dies while starting
    script = tmp_path / "no_guard.py"
    script.write_text("from recsys.batch.job import score\n"
                      f"score({str(BUNDLE)!r}, {str(tmp_path / 'out')!r}, k=4, chunk_size=5, scored_at={WHEN!r}, "
                      "progress=False, workers=2)\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**os.environ, "CI": "true"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("recsys.errors.WorkerError:") and 'if __name__ == "__main__":' in last, last
    assert "workers=1" in last
