"""Lifecycle funnels on a hand-made event log with known stage counts and flows, plus its plots."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys.errors import ConfigError, DataValidationError
from recsys.partners import FLOW_STAGES, funnel_counts, funnel_flows, lifecycle_funnel

T0 = pd.Timestamp("2026-01-01")
H, D = pd.Timedelta(hours=1), pd.Timedelta(days=1)
END = T0 + 3 * D  # windows [T0, T0+1d), [T0+1d, T0+2d), [T0+2d, T0+3d)
ITEMS = pd.DataFrame({"item_id": [1, 2, 3], "brand": ["A", "A", "B"]})


def hand_made() -> pd.DataFrame:
    """Brand A on partner p, window by window (W0, W1, W2):

    v1: impression | click | purchase          -> awareness, interest, purchase
    v2: purchase   | -     | purchase          -> purchase, none, loyalty (a returning buyer)
    v3: 2 purchases| impression | -            -> loyalty, awareness, none
    v4: bought A 5 days before W0; - | purchase | -  -> none, loyalty, none
    v5: - | cart of A, impression of B | -      -> A: none, interest, none; B: W1 awareness
    v6: events on partner q only (not counted); v7: an impression at END (outside the last window).
    """
    rows = [("v1", 1, T0 + H, "impression"), ("v1", 1, T0 + D + H, "click"), ("v1", 2, T0 + 2 * D + H, "purchase"),
            ("v2", 1, T0 + 2 * H, "purchase"), ("v2", 2, T0 + 2 * D + 2 * H, "purchase"),
            ("v3", 1, T0 + 3 * H, "purchase"), ("v3", 2, T0 + 4 * H, "purchase"), ("v3", 1, T0 + D + 3 * H, "impression"),
            ("v4", 1, T0 - 5 * D, "purchase"), ("v4", 1, T0 + D + 4 * H, "purchase"),
            ("v5", 2, T0 + D + 5 * H, "cart"), ("v5", 3, T0 + D + 5 * H, "impression"),
            ("v7", 1, END, "impression")]
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event_type"]).assign(media_id="p")
    other = pd.DataFrame({"user_id": ["v6", "v6"], "item_id": [1, 1], "timestamp": [T0 + H, T0 + 2 * H],
                          "event_type": ["click", "purchase"], "media_id": "q"})
    return pd.concat([ev, other], ignore_index=True)


def funnel(**kw) -> dict:
    return lifecycle_funnel(hand_made(), ITEMS, media_id="p", window="1D", windows=3, end=END, **kw)


def test_stage_counts_per_window() -> None:
    f = funnel(brands=["A", "B"])
    counts = funnel_counts(f).set_index(["brand", "window"])
    stages = ["awareness", "interest", "purchase", "loyalty", "active"]
    assert counts.loc[("A", 0), stages].tolist() == [1, 0, 1, 1, 3]
    assert counts.loc[("A", 1), stages].tolist() == [1, 2, 0, 1, 4]
    assert counts.loc[("A", 2), stages].tolist() == [0, 0, 1, 1, 2]
    assert counts.loc[("B", 1), stages].tolist() == [1, 0, 0, 0, 1]
    assert counts.loc[("B", 0), "active"] == 0 and counts.loc[("B", 2), "active"] == 0
    assert [w["start"] for w in f["windows"]] == [(T0 + k * D).isoformat() for k in range(3)]


def test_flows_between_windows() -> None:
    f = funnel(brands=["A"])
    flows = funnel_flows(f)
    cells = {(r.from_window, r.from_stage, r.to_stage): r.users for r in flows.itertuples()}
    assert cells == {
        (0, "awareness", "interest"): 1,   # v1
        (0, "purchase", "none"): 1,        # v2
        (0, "loyalty", "awareness"): 1,    # v3
        (0, "none", "loyalty"): 1,         # v4
        (0, "none", "interest"): 1,        # v5
        (1, "interest", "purchase"): 1,    # v1
        (1, "none", "loyalty"): 1,         # v2
        (1, "awareness", "none"): 1,       # v3
        (1, "loyalty", "none"): 1,         # v4
        (1, "interest", "none"): 1,        # v5
    }
    m = f["flows"][0]["matrix"]
    assert len(m) == len(FLOW_STAGES) and sum(map(sum, m)) == 5  # every user of A in the span, once per step


def test_default_brands_and_json() -> None:
    f = funnel()
    assert f["brands"] == ["A"]  # B has no engaged user in the windows
    json.dumps(f, allow_nan=False)


def test_bad_input_errors() -> None:
    with pytest.raises(DataValidationError, match="unknown brands"):
        funnel(brands=["Z"])
    with pytest.raises(ConfigError, match="window"):
        lifecycle_funnel(hand_made(), ITEMS, media_id="p", window="-1D")
    with pytest.raises(ConfigError, match="windows"):
        lifecycle_funnel(hand_made(), ITEMS, media_id="p", windows=0)
    with pytest.raises(DataValidationError, match="has no events"):
        lifecycle_funnel(hand_made(), ITEMS, media_id="nobody")
    with pytest.raises(DataValidationError, match="brand"):
        lifecycle_funnel(hand_made(), ITEMS.drop(columns="brand"), media_id="p")


def test_plots_written(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from recsys.partners.plots import funnel_plots

    paths = funnel_plots(funnel(brands=["A", "B"]), tmp_path)
    assert [p.name for p in paths] == ["funnel_counts.png", "funnel_flows.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
