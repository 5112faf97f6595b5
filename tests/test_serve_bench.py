"""`recsys benchmark serve` at tiny scale: the whole pipeline (build, two bundles, in process, recsys serve under
wrk at two levels, the open-loop generator at 70% and 2x, three swaps, SIGTERM, the FastAPI floor) in well under a
minute; the JSON's structure and that its counts add up. Plus the pieces with known answers: the wrk log parser
and which versions may answer a request sent across swaps."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from recsys.bench.serve import _serving_at
from recsys.bench.serve_load import Record, finish_wrk, summarize


def test_serving_at_counts_a_swap_window_for_both_versions() -> None:
    timeline = [(10.0, 12.0, "b"), (20.0, 21.0, "a")]  # a until the swap to b (10-12), b until the swap back (20-21)
    assert _serving_at(1.0, 2.0, timeline, "a") == {"a"}
    assert _serving_at(9.0, 11.0, timeline, "a") == {"a", "b"}
    assert _serving_at(12.5, 19.0, timeline, "a") == {"b"}       # only b served then: an 'a' answer contradicts
    assert _serving_at(20.5, 20.6, timeline, "a") == {"a", "b"}
    assert _serving_at(21.5, 30.0, timeline, "a") == {"a"}


def test_wrk_logs_pair_sends_with_answers(tmp_path: Path) -> None:
    class Done:
        def wait(self, timeout: float) -> int:
            return 0

    (tmp_path / "summary.json").write_text(json.dumps({"requests": 3, "duration_s": 1.0}))
    (tmp_path / "conn-1.log").write_text("S 1.0\nR 1.0 1.5 200 v1\nS 2.0\nS 3.0\nR 3.0 3.1 503 -\nS 4.0\n")
    (tmp_path / "conn-2.log").write_text("S 1.2\nR 1.2 1.4 200 v2\n")
    records, summary = finish_wrk(Done(), tmp_path, 1)
    assert sorted(records, key=lambda r: r.sent) == [
        Record(1.0, 1.5, 200, "v1"), Record(1.2, 1.4, 200, "v2"), Record(2.0, None, None, None),
        Record(3.0, 3.1, 503, None), Record(4.0, None, None, None, at_stop=True)]
    s = summarize(records, summary["duration_s"])
    assert (s["sent"], s["ok"], s["non_2xx"], s["unanswered"], s["in_flight_at_stop"]) == (5, 2, 1, 1, 1)
    assert s["statuses"] == {"503": 1}
    assert s["latency_ms"]["max"] == pytest.approx(500.0)  # 1.5 - 1.0 s in ms; float subtraction, so approx


def _adds_up(s: dict) -> None:
    assert s["sent"] == s["ok"] + s["non_2xx"] + s["unanswered"] + s["in_flight_at_stop"]
    assert s["non_2xx"] == sum(s["statuses"].values())


@pytest.mark.slow
def test_serve_benchmark_tiny(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    from recsys.bench.serve import run_serve_benchmark

    r = run_serve_benchmark(n_items=20_000, n_events=20_000, seconds=2, swap_seconds=8, concurrency=(1, 4),
                            n_requests=200, out_dir=tmp_path)
    assert json.loads((tmp_path / "serve.json").read_text())["targets"] == r["targets"]
    assert "| failed requests across swaps |" in (tmp_path / "serve.md").read_text()
    assert "Machine steadiness: one request repeated" in (tmp_path / "serve.md").read_text()
    assert r["in_process"]["threads"]["threads"] == os.cpu_count()
    assert r["in_process"]["loop"]["calls"] > 0 and r["in_process"]["threads"]["calls"] > 0
    assert r["in_process"]["loop_one_intra_op_thread"]["calls"] > 0
    ceiling = max(x["calls_per_s"] for x in r["in_process"].values())  # the best of the three in-process runs
    assert r["targets"]["http_over_in_process"]["value"] == pytest.approx(r["saturation"]["ok_per_s"] / ceiling)

    assert [x["connections"] for x in r["levels"]] == [1, 4]
    for level in [*r["levels"], *r["floor"]]:
        _adds_up(level)
        assert level["ok"] + level["non_2xx"] == level["wrk"]["requests"]  # our logs and wrk's own count agree
        assert level["ok"] > 0
    best = max(r["levels"], key=lambda x: x["ok_per_s"])
    sat = r["saturation"]
    assert (sat["connections"], sat["ok_per_s"]) == (best["connections"], best["ok_per_s"])
    assert len(sat["samples_ok_per_s"]) == 3 and sat["samples_ok_per_s"][0] == best["ok_per_s"]
    assert sat["sustained_ok_per_s"] == pytest.approx(sorted(sat["samples_ok_per_s"])[1])  # the median
    steady = r["machine_steadiness"]
    assert steady["min"] <= steady["median"] <= steady["max"] and steady["min"] > 0
    p99s = r["at_70_percent"]["repeats_p99_ms"]
    assert len(p99s) == 3 and r["at_70_percent"]["latency_ms"]["p99"] == sorted(p99s)[1]  # the median run
    assert r["targets"]["p99_ms_at_70_percent"]["value"] == sorted(p99s)[1]

    for phase, factor, rate in (("at_70_percent", 0.7, sat["sustained_ok_per_s"]), ("at_2x", 2.0, sat["ok_per_s"])):
        s = r[phase]
        _adds_up(s)
        assert s["in_flight_at_stop"] == 0  # the open loop waits for every answer
        assert s["generator"]["rate_requested"] == pytest.approx(factor * rate)
        assert s["sent"] == s["generator"]["requests_scheduled"]  # the warm-up's requests are not among them
        assert s["generator"]["warmup_requests"] == int(s["generator"]["rate_requested"] * 2.0)
        assert 0 < s["generator"]["warmup_2xx"] <= s["generator"]["warmup_requests"]
    assert set(r["at_2x"]["statuses"]) <= {"503", "504"}

    s = r["swaps"]
    _adds_up(s)
    first, other = s["first_version"], s["swaps"][0]["version"]
    assert [x["result"] for x in s["swaps"]] == ["swapped"] * 3
    assert [x["version"] for x in s["swaps"]] == [other, first, other] and first != other
    assert set(s["versions_seen"]) <= {first, other}
    # the service's promise: no failed request and no answer from a version not serving at the time
    assert s["non_2xx"] == 0 and s["unanswered"] == 0 and s["version_contradictions"] == 0

    g = r["sigterm"]
    assert g["sent_before_signal"] == g["ok_before_signal"] + g["dropped"] > 0
    assert g["dropped"] == g["dropped_non_2xx"] + g["dropped_unanswered"]
    assert g["exit_code"] in (0, -15)  # uvicorn re-raises the SIGTERM it handled after its graceful shutdown

    t = r["targets"]
    assert set(t) == {"http_over_in_process", "p99_ms_at_70_percent", "failed_across_swaps", "dropped_on_sigterm"}
    assert all(isinstance(x["met"], bool) for x in t.values())
    assert t["dropped_on_sigterm"]["value"] == g["dropped"]
    assert r["http_over_in_process_per_cpu_second"] > 0
    assert all(x["server_cpu_seconds"] > 0 for x in r["levels"])
