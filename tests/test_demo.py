"""The demo runs end to end on a small world and its model beats random."""

from recsys.demo import run_demo


def test_demo_end_to_end_small(capsys):
    out = run_demo(n_events=30_000, seed=1)
    printed = capsys.readouterr().out
    assert "validate against the data contracts" in printed
    res = out["results"]
    assert res["popular"]["recall@50"] > res["random"]["recall@50"]
