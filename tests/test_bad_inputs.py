"""Bad inputs the fuzz suite (tests/test_fuzz.py) met, one test per cause: each is a typed error that names
what is wrong and the fix, never a traceback from inside pandas, numpy or pyarrow (issue 16 item 8)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys.errors import DataValidationError
from recsys.features.schema import validate_events, validate_items
from recsys.recommender import MAX_K
from tests.test_fuzz import models
from tests.test_recommender import world

LONE = "\ud800"  # a lone surrogate: a str Python holds but UTF-8 (Arrow, parquet, JSON) cannot encode


@pytest.fixture(scope="module")
def str_rec():
    """A model with string ids ('u5', 'i7'): its ids go through pyarrow, where a lone surrogate crashed."""
    return models()["str"][0]


def test_a_lone_surrogate_is_refused_naming_the_argument(str_rec):
    calls = {
        "user_id": lambda: str_rec.recommend(LONE),
        "media_id": lambda: str_rec.recommend("u5", media_id=LONE),
        "row 1: user_id": lambda: str_rec.recommend_batch(["u5", "a" + LONE]),
        "exclude item_id": lambda: str_rec.recommend("u5", exclude=["i3", LONE]),
        r"context\['friends'\] entry": lambda: str_rec.recommend("u5", context={"friends": [LONE]}),
        r"context\['segment'\]": lambda: str_rec.recommend("u5", context={"segment": LONE}),
        "item_id": lambda: str_rec.similar_items(LONE),
    }
    for what, call in calls.items():
        with pytest.raises(DataValidationError, match=f"{what} .*lone surrogate.*Fix: decode"):
            call()
    assert len(str_rec.recommend("u5", k=4)) == 4  # the model still serves


def test_k_is_bounded_by_max_k(str_rec):
    from tests.test_recommender import fitted

    rec = fitted()
    for call in (lambda: rec.similar_items(69, k=2**63), lambda: rec.recommend_ids([1279], k=2**63 - 1),
                 lambda: rec.recommend(5, k=MAX_K + 1), lambda: rec.recommend_batch([5], k=2**64)):
        with pytest.raises(DataValidationError, match="k must be <= 10,000"):
            call()
    feed = rec.recommend(5, k=MAX_K)  # the maximum itself is allowed: the whole eligible catalogue comes back
    assert 0 < len(feed) <= len(world().items)
    assert rec.recommend_ids([5], k=3, chunk_size=2**40).shape == (1, 3)  # chunk_size has no such bound


def test_exclude_holds_item_ids_only():
    from tests.test_recommender import fitted

    rec = fitted()
    for bad in ([{"a": 1}], [[3]], [None], {5: [3]}):  # a dict user -> ids is recommend_batch's, not recommend's
        with pytest.raises(DataValidationError, match="exclude"):
            rec.recommend(5, exclude=bad)
    assert 3 not in rec.recommend_batch([5], k=30, exclude={5: [3]})["item_id"].tolist()


def test_missing_context_values_are_not_given():
    from tests.test_recommender import fitted

    rec = fitted()
    plain = rec.recommend(5, k=6).item_ids
    for missing in (pd.NA, pd.NaT, np.nan, None):  # an empty cell of a users frame reads as one of these
        assert rec.recommend(5, k=6, context={"segment": missing, "friends": missing}).item_ids == plain
    frame = pd.DataFrame({"user_id": [5, 17], "segment": pd.Series([pd.NA, "vip"], dtype=object)})
    feeds = rec.recommend_batch(frame, k=6, context={"segment": "regular"})
    assert feeds.loc[feeds["user_id"] == 5, "item_id"].tolist() == rec.recommend(
        5, k=6, context={"segment": "regular"}).item_ids  # the row's empty cell leaves the call's context


def _events(timestamps) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [1, 2], "item_id": [10, 11], "timestamp": timestamps,
                         "event_type": ["click", "click"]})


@pytest.mark.parametrize("stamps", [
    [dt.datetime(2026, 1, 1), dt.datetime(2500, 1, 1)],  # pandas reads these as datetime64[us]
    pd.Series(np.array(["2026-01-01", "3000-01-01"], dtype="datetime64[s]")),
    ["2026-01-01 12:00", "2500-01-01"],
    pd.Series([dt.datetime(2026, 1, 1), dt.datetime(1600, 1, 1)], dtype=object),
    [1_767_225_600, 10**12],  # Unix milliseconds where seconds are expected: year 33658
    [1.0, np.inf],
], ids=["datetime-2500", "datetime64s-3000", "string-2500", "object-1600", "int-ms", "float-inf"])
def test_timestamps_outside_the_ns_range_are_refused(stamps):
    with pytest.raises(DataValidationError, match=r"(?s)outside the range pandas can hold.*1677-09-21.*2262-04-11"):
        validate_events(_events(stamps))
    assert validate_events(_events(["2026-01-01", "2262-04-10"]))["timestamp"].dtype == "datetime64[ns]"


def _items(**columns) -> pd.DataFrame:
    df = pd.DataFrame({"item_id": [1, 2, 3], "category": ["a", "b", "c"], "brand": ["x", "y", "z"],
                       "shop": ["s", "s", "t"], "price": [1.0, 2.0, 3.0], "commission_rate": [0.1, 0.1, 0.2],
                       "title": ["one", "two", "three"]})
    return df.assign(**columns)


def test_nullable_columns_are_read_not_crashed_on():
    out = validate_items(_items(brand=pd.array([7, pd.NA, 9], dtype="Int64"),
                                title=pd.array(["a", pd.NA, "c"], dtype="string")))
    assert out["brand"].tolist() == ["7", "unknown", "9"] and out["title"].tolist() == ["a", "", "c"]
    assert validate_items(_items(in_stock=pd.array([True, False, True], dtype="boolean")))["in_stock"].tolist() == [
        True, False, True]
    with pytest.raises(DataValidationError, match="in_stock"):
        validate_items(_items(in_stock=pd.array([True, pd.NA, True], dtype="boolean")))


@pytest.mark.parametrize("column", ["title", "brand", "item_id"])
def test_lone_surrogates_in_text_columns_are_refused(column):
    df = _items(item_id=["i1", "i2", "i3"])
    df[column] = pd.Series(["ok", "bad" + LONE, "fine"], dtype=object)
    with pytest.raises(DataValidationError, match=rf"(?s)column '{column}' holds text with lone surrogates.*\\ud800"):
        validate_items(df)
    named = _items()
    named.columns = pd.Index([*named.columns[:-1], "title" + LONE], dtype=object)
    with pytest.raises(DataValidationError, match="column name"):
        validate_items(named)
    with pytest.raises(DataValidationError, match="more than once"):
        validate_items(pd.concat([_items(), _items()[["brand"]]], axis=1))


def _write(path, kind: str) -> None:
    good = _events(["2026-01-01", "2026-01-02"])
    if kind == "truncated":
        good.to_parquet(path)
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.write_bytes({"empty": b"", "garbage": b"PAR1 not parquet at all", "quote": b'user_id,item_id\n1,"2\n',
                          "utf8": b"user_id,item_id,timestamp,event_type\n1,2,2026-01-01,cl\xffck\n"}[kind])


BAD_FILES = [("empty", ".csv"), ("empty", ".parquet"), ("garbage", ".parquet"), ("truncated", ".parquet"),
             ("quote", ".csv"), ("utf8", ".csv"), ("utf8", ".tsv")]


@pytest.mark.parametrize(("kind", "suffix"), BAD_FILES)
def test_unreadable_files_are_a_data_error_naming_the_file(tmp_path, kind, suffix):
    path = tmp_path / f"events{suffix}"
    _write(path, kind)
    with pytest.raises(DataValidationError, match=rf"(?s)cannot read {path} as .*Fix: "):
        validate_events(path)


@pytest.mark.parametrize(("kind", "suffix"), BAD_FILES[:5:2] + [("utf8", ".csv")])
def test_data_validate_prints_an_error_and_exits_2(tmp_path, kind, suffix):
    from recsys.cli import app

    path = tmp_path / f"events{suffix}"
    _write(path, kind)
    result = CliRunner().invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot read") and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
