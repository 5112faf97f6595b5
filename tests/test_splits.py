"""Splits without leakage: global time cut, per-user leave-last-out, published splits, and the checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.datasets.splits import (
    check_no_leakage,
    check_time_leakage,
    leave_last_out,
    published_split,
    time_split,
)
from recsys.datasets.synthetic import generate_world
from recsys.errors import ConfigError, DataValidationError, LeakageError

T0 = pd.Timestamp("2026-01-01")


def frame(rows) -> pd.DataFrame:
    """rows: (user, item, minute, event_type, impression_id)."""
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "minute", "event_type", "impression_id"])
    df["timestamp"] = T0 + pd.to_timedelta(df.pop("minute"), unit="min")
    return df


@pytest.fixture
def log() -> pd.DataFrame:
    return frame([
        (1, 10, 0, "impression", 100), (1, 10, 1, "click", 100),     # user 1 clicks 10 early...
        (1, 11, 2, "impression", 101), (1, 11, 3, "click", 101),
        (1, 12, 4, "impression", 102), (1, 12, 5, "click", 102),
        (1, 10, 6, "impression", 103), (1, 10, 7, "click", 103),     # ...and again last
        (1, 13, 8, "impression", 104),                              # shown after the last click
        (2, 20, 0, "impression", 200), (2, 20, 1, "click", 200),     # user 2: one click only
        (3, 31, 5, "click", 300), (3, 30, 5, "click", 301),          # user 3: a tie at minute 5
        (3, 32, 2, "click", 302),
    ])


def test_time_split_cuts_globally_at_the_given_time(log):
    train, test = time_split(log, test_start=T0 + pd.Timedelta(minutes=5))
    assert train["timestamp"].max() < T0 + pd.Timedelta(minutes=5) <= test["timestamp"].min()
    assert len(train) + len(test) == len(log)
    assert test.attrs["split_time"] == T0 + pd.Timedelta(minutes=5)
    assert list(test.index) == list(range(len(test)))
    train2, test2 = time_split(log, test_start="2026-01-01 00:05:00")
    pd.testing.assert_frame_equal(test, test2)


def test_time_split_by_fraction_and_integer_seconds(log):
    distinct = log.assign(timestamp=T0 + pd.to_timedelta(np.arange(len(log)), unit="min"))
    train, test = time_split(distinct, test_fraction=0.25)
    assert len(test) == 4 and train["timestamp"].max() < test["timestamp"].min()  # 14 - floor(14 * 0.75)
    train, test = time_split(log, test_fraction=0.25)
    assert test.attrs["split_time"] == T0 + pd.Timedelta(minutes=5) and len(test) == 6  # ties stay together
    cut = T0 + pd.Timedelta(minutes=5)
    secs = log.assign(timestamp=(log["timestamp"] - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    tr, te = time_split(secs, test_start=cut)
    assert len(te) == 6 and te["timestamp"].min() == int(cut.timestamp()) and len(tr) == 8


def test_time_split_refuses_empty_sides_and_bad_arguments(log):
    with pytest.raises(DataValidationError, match="every row falls in train"):
        time_split(log, test_start="2027-01-01")
    with pytest.raises(DataValidationError, match="every row falls in test"):
        time_split(log, test_start="2025-01-01")
    with pytest.raises(ConfigError, match="test_fraction"):
        time_split(log, test_fraction=1.5)
    with pytest.raises(DataValidationError, match="missing column"):
        time_split(log.drop(columns="timestamp"))
    with pytest.raises(ConfigError, match="not a time"):
        time_split(log, test_start="yesterday-ish")


def test_time_split_can_drop_seen_pairs_with_their_impressions(log):
    cut = T0 + pd.Timedelta(minutes=6)
    train, test = time_split(log, test_start=cut)
    with pytest.raises(LeakageError):
        check_no_leakage(train, test)  # user 1 clicked item 10 on both sides
    train, test = time_split(log, test_start=cut, drop_seen_pairs=True)
    check_no_leakage(train, test)
    assert 103 not in set(test["impression_id"])  # the repeat click and its impression left together
    assert 104 in set(test["impression_id"])


def test_leave_last_out_holds_out_the_last_interaction_per_user(log):
    train, test = leave_last_out(log)
    held = {(u, i) for u, i in zip(test["user_id"], test["item_id"], strict=True)}
    assert held == {(1, 10), (3, 31)}  # user 3's tie at minute 5 goes to the larger item id; user 2 too short
    assert set(test["event_type"]) == {"click"}
    u1 = train[train["user_id"] == 1]
    assert u1["timestamp"].max() < T0 + pd.Timedelta(minutes=7)
    assert 104 not in set(train["impression_id"])  # shown after the held-out click: the future
    assert 103 not in set(train["impression_id"])  # the impression that led to the held-out click
    assert not ((u1["item_id"] == 10) & (u1["event_type"] == "click")).any()  # earlier repeat removed
    assert set(train.loc[train["user_id"] == 2, "item_id"]) == {20}
    assert set(train.loc[train["user_id"] == 3, "item_id"]) == {30, 32}
    check_no_leakage(train, test)


def test_leave_last_out_is_deterministic_under_shuffling_and_takes_n(log):
    a_train, a_test = leave_last_out(log, n=2)
    shuffled = log.sample(frac=1.0, random_state=0)
    b_train, b_test = leave_last_out(shuffled, n=2)
    key = ["user_id", "item_id", "timestamp", "event_type"]
    pd.testing.assert_frame_equal(a_test.sort_values(key).reset_index(drop=True),
                                  b_test.sort_values(key).reset_index(drop=True))
    pd.testing.assert_frame_equal(a_train.sort_values(key).reset_index(drop=True),
                                  b_train.sort_values(key).reset_index(drop=True))
    assert a_test.groupby("user_id").size().to_dict() == {1: 2, 3: 2}
    with pytest.raises(ConfigError, match="positive integer"):
        leave_last_out(log, n=0)
    with pytest.raises(ConfigError, match="unknown event type"):
        leave_last_out(log, event_types=["clik"])


def test_leave_last_out_without_event_types_uses_every_row():
    df = pd.DataFrame({"user_id": ["a", "a", "b", "b", "b"], "item_id": ["x", "y", "x", "z", "y"],
                       "timestamp": [1, 2, 1, 2, 3]})
    train, test = leave_last_out(df)
    assert sorted(zip(test["user_id"], test["item_id"], strict=True)) == [("a", "y"), ("b", "y")]
    assert sorted(zip(train["user_id"], train["item_id"], strict=True)) == [("a", "x"), ("b", "x"), ("b", "z")]


def test_check_no_leakage_names_pairs_and_the_fix():
    train = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 6, 7]})
    test = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [6, 8, 7]})
    with pytest.raises(LeakageError) as err:
        check_no_leakage(train, test)
    msg = str(err.value)
    assert "1 test interaction" in msg and "Fix:" in msg and "leave_last_out" in msg
    assert "6" in msg.splitlines()[2]  # the sample shows the leaked pair (user 1, item 6)
    check_no_leakage(train, test.iloc[1:])
    with pytest.raises(LeakageError, match="2 test interaction"):
        check_no_leakage(train, test, keys=("user_id",))  # any key tuple works: here, users
    with pytest.raises(DataValidationError, match="int64 in train but (str|object)"):
        check_no_leakage(train, test.astype({"item_id": str}))
    with pytest.raises(DataValidationError, match="missing column"):
        check_no_leakage(train, test.drop(columns="item_id"))


def test_check_no_leakage_ignores_impressions_unless_asked(log):
    train = frame([(1, 10, 0, "impression", 1)])
    test = frame([(1, 10, 9, "click", 2)])
    check_no_leakage(train, test)  # having been shown an item is not having chosen it
    with pytest.raises(LeakageError):
        check_no_leakage(train, test, event_types=["impression", "click"])


def test_check_time_leakage_flags_rows_at_or_after_the_split(log):
    cut = T0 + pd.Timedelta(minutes=5)
    check_time_leakage(log[log["timestamp"] < cut], cut)
    with pytest.raises(LeakageError) as err:
        check_time_leakage(log, cut)
    msg = str(err.value)
    assert "6 of 14 rows" in msg and "Fix:" in msg and "2026-01-01 00:08:00" in msg
    secs = log.assign(timestamp=(log["timestamp"] - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    with pytest.raises(LeakageError):
        check_time_leakage(secs, "2026-01-01 00:05:00")
    with pytest.raises(DataValidationError, match="no 'timestamp' column"):
        check_time_leakage(log.drop(columns="timestamp"), cut)


def test_published_split_passes_through_and_validates():
    train = pd.DataFrame({"user_id": [0, 0, 1], "item_id": [1, 2, 3]})
    test = pd.DataFrame({"user_id": [0, 1], "item_id": [3, 4]})
    tr, te = published_split(train, test)
    assert tr is train and te is test
    with pytest.raises(LeakageError):
        published_split(train, pd.DataFrame({"user_id": [0], "item_id": [2]}))
    with pytest.raises(DataValidationError, match="empty"):
        published_split(train, test.iloc[:0])


def test_splits_of_the_synthetic_world_are_leakage_free():
    events = generate_world(30_000, seed=5, progress=False).events
    train, test = leave_last_out(events)
    check_no_leakage(train, test)
    assert test["user_id"].is_unique and len(test) > 100
    cut_train, cut_test = time_split(events, test_fraction=0.2, drop_seen_pairs=True)
    check_no_leakage(cut_train, cut_test)
    check_time_leakage(cut_train, cut_test.attrs["split_time"])
    assert cut_train["timestamp"].max() < cut_test["timestamp"].min()
    assert 0.15 < len(cut_test) / len(events) < 0.25
    clicks = set(cut_test.loc[cut_test["event_type"] == "click", "impression_id"])
    imps = set(cut_test.loc[cut_test["event_type"] == "impression", "impression_id"])
    late = clicks - imps  # clicks whose impression came before the cut: a delayed label, not leakage
    assert len(late) < 0.05 * max(len(clicks), 1) + 5
    assert np.isin(list(clicks & imps), cut_test["impression_id"]).all()
