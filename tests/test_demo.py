"""The demo runs end to end on a small world: trains every stage, registers the model, loads it back through
MLflow, prints feeds with reasons for three users on two partners and the evaluation table, and says how to open
the MLflow UI. It shares one small tracked run with tests/test_tracking.py (``tracked_demo``)."""

from __future__ import annotations

from tests.test_tracking import tracked_demo


def test_demo_end_to_end_small():
    result, printed, _ = tracked_demo()
    assert "validate True" in printed and "register it as guess-you-like@candidate, @champion if it beats" in printed
    assert "version 1 becomes champion: no version holds @champion yet" in printed  # a fresh store: first run
    assert "mlflow.pyfunc.load_model('models:/guess-you-like@champion')" in printed
    assert "identical to the bundle's feeds: True" in printed and result["same_as_bundle"]
    feeds, requests = result["feeds"], result["requests"]
    assert len(requests) == 6 and requests["user_id"].nunique() == 3 and requests["media_id"].nunique() == 2
    assert printed.count("猜你喜欢 · user") == 6
    assert feeds.groupby("request").size().tolist() == [6] * 6 and feeds["reason"].astype(str).str.len().gt(0).all()
    assert "two-tower" in printed and "CTR AUC" in printed and "recall_at_100 vs exact" in printed
    assert "ui --backend-store-uri sqlite:///" in printed and "#/experiments/" in printed
    res = result["results"]
    assert res["two-tower"]["recall@50"] > res["random"]["recall@50"]
    assert res["popular"]["recall@50"] > res["random"]["recall@50"]
