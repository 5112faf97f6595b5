"""The batch benchmark runs end to end on a small world: all four ways, a real kill and resume, its files."""

from __future__ import annotations

import json

import pytest

from recsys.bench.batch import run_batch_benchmark


@pytest.mark.slow
def test_batch_benchmark_measures_four_ways_and_a_resume(tmp_path):
    r = run_batch_benchmark(n_items=3000, n_users=300, n_events=5000, loop_users=40, chunk_size=40,
                            index_factory="IVF16,Flat", kill_pause_s=0.5, out_dir=tmp_path)
    saved = json.loads((tmp_path / "batch.json").read_text())
    assert saved["users"] == 300 == saved["b_local_job"]["users"] == saved["c_spark_job"]["users"]
    for key in ("a_recommend_loop", "b_local_job", "c_spark_job", "d_exact_gemm_limit"):
        assert saved[key]["users_per_s"] > 0
    assert len(saved["a_recommend_loop"]["runs_users_per_s"]) == 3
    assert saved["b_local_job"]["peak_rss_mb"] > 50 and saved["c_spark_job"]["peak_rss_mb"] > 50
    res = saved["resume"]
    assert res["killed"] and 0 < res["parts_at_kill"] < res["parts"] == 8
    assert res["resumed_parts"] == res["parts_at_kill"]  # the rerun skipped exactly the published parts
    rows = res["rows_vs_full_run"]
    assert rows["rows"] == rows["reference_rows"] > 0
    assert rows["lost"] == rows["extra"] == rows["duplicated"] == rows["different_item"] == 0
    assert saved["spark_rows_vs_local"]["lost"] == saved["spark_rows_vs_local"]["extra"] == 0
    assert set(saved["targets"]) == {"local_over_loop", "local_over_spark", "rows_lost_or_duplicated_after_resume",
                                     "rows_differing_after_resume", "spark_rows_differing_from_local"}
    for name in ("rows_lost_or_duplicated_after_resume", "rows_differing_after_resume",
                 "spark_rows_differing_from_local"):
        assert saved["targets"][name]["met"] is True, name
    md = (tmp_path / "batch.md").read_text()
    for row in ("| (a) loop", "| (b) `recsys score` local", "| (c) `recsys score --engine spark`", "| (d) exact GEMM"):
        assert row in md
    assert r["targets"] == saved["targets"]
