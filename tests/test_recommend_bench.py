"""The serving benchmark runs end to end on a small world and writes what its README quotes."""

from __future__ import annotations

import json

import pytest

from recsys.bench.recommend import run_recommend_benchmark


@pytest.mark.slow
def test_recommend_benchmark_writes_latency_engines_and_throughput(tmp_path):
    r = run_recommend_benchmark(n_items=6000, n_requests=40, n_batch_users=400, batch_measured_users=200,
                                n_events=20000, index_factory="IVF16,Flat", latency_rounds=3, out_dir=tmp_path)
    saved = json.loads((tmp_path / "recommend.json").read_text())
    assert saved["latency"]["n"] == 120 and 0 < saved["latency"]["p50_ms"] <= saved["latency"]["p99_ms"]
    p99s = sorted(x["wall"]["p99_ms"] for x in saved["latency_rounds"])
    assert len(p99s) == 3 and saved["latency"]["p99_ms"] == p99s[1]  # the median round's
    steady = saved["latency_steady_cpu"]
    assert steady["n"] == 40 and 0 < steady["p50_ms"] <= steady["p99_ms"]
    assert set(saved["latency_stages_ms"]) == {"retrieve", "features", "ranker", "rules", "reasons"}
    engines = saved["forest_engines"]
    assert set(engines["cpu_ms_per_request"]) == {"compiled", "sklearn", "numpy"}
    assert engines["ratio_to_compiled"]["compiled"] == 1.0 and engines["rows_per_request"] > 20
    assert saved["serving"]["forest_engine"] == "compiled" == r["serving"]["forest_engine"]
    towers = saved["tower_engines"]  # the NumPy user tower beside torch's, on the same requests, same vectors
    assert set(towers["cpu_ms_per_request"]) == {"numpy", "torch"} and towers["max_abs_difference"] < 1e-5
    assert saved["batch"]["users"] == 400 and saved["batch"]["measured_users"] == 200
    md = (tmp_path / "recommend.md").read_text()
    assert "| compiled |" in md and "| sklearn |" in md and "target p99" in md and "| round 3: wall / CPU |" in md and "median CPU over the rounds" in md
    assert "| user tower | CPU ms per request |" in md


@pytest.mark.slow
def test_recommend_benchmark_times_both_channels_beside_the_two_tower_alone(tmp_path):
    r = run_recommend_benchmark(n_items=3000, n_requests=30, n_batch_users=100, batch_measured_users=100,
                                n_events=20000, index_factory="IVF16,Flat", latency_rounds=2, item_to_item=30,
                                friends=20, out_dir=tmp_path)
    saved = json.loads((tmp_path / "recommend.json").read_text())
    assert saved["item_to_item"] == 30 and "--item-to-item 30" in saved["cli"] and "item_to_item=30" in r["command"]
    assert saved["friends"] == 20 and "--friends 20" in saved["cli"]
    assert saved["ranker_reads_item_to_item_score"] is True  # trained as a Recommender with item_to_item is
    paired = saved["latency_paired"]
    for side in ("both_channels", "two_tower_only", "both_channels_cpu", "two_tower_only_cpu"):
        assert paired[side]["n"] == 60 and paired[side]["rounds"] == 2 and paired[side]["p99_ms"] > 0
    md = (tmp_path / "recommend.md").read_text()
    assert "up to 30 from the item-to-item channel, up to 20 from the friends channel" in md
    assert "| two-tower alone, wall |" in md and "up to 20 friends' candidates" in md
