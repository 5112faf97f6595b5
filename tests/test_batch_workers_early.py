"""Worker processes started before the job loads its model (recsys.batch.workers.early_workers / start_workers):
when they start at all, and a worker whose early load failed reports that failure, with its message, as the error
of the first part it is given (the job stops there, as it does when a worker's load fails on its first part)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from recsys.batch.workers import early_workers, run_parallel, start_workers
from recsys.errors import RecsysError


def test_early_workers_start_only_for_a_bundle_on_disk_and_a_job_known_to_need_them(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert early_workers(object(), None, 2, 10) is None  # an in-memory model
    assert early_workers("models:/guess-you-like@champion", None, 2, 10) is None  # MLflow: loaded by the job
    assert early_workers(str(bundle), None, 2, 10) is None  # no manifest: the job's own load says what is wrong
    assert early_workers(str(bundle), None, 1, 10) is None  # one process: nothing to start
    (bundle / "manifest.json").write_text("{}", encoding="utf-8")
    assert early_workers(str(bundle), list(range(9)), None, 10) is None  # by default: too few users for workers
    assert early_workers(str(bundle), None, None, 10) is None  # each partner's audience: unknown before the load


def test_a_failed_early_load_is_the_first_parts_error(tmp_path: Path) -> None:
    bad = tmp_path / "bundle"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json", encoding="utf-8")
    pool = start_workers(bad, 2)
    todo = [(i, None, [i]) for i in range(8)]

    def here(i: int, media: str | None, users: list) -> int:  # this process's parts: slow, so the worker gets some
        time.sleep(0.5)
        return 0

    with pytest.raises(RecsysError) as info:
        run_parallel(bad, tmp_path / "out", todo, workers=2, settings={"manifest_sha256": "x"}, score_here=here,
                     on_done=lambda i, rows: None, pool=pool)
    assert "manifest.json is not valid JSON" in str(info.value)  # the load's own message, from the worker
