"""Data contracts: every bad-input case raises a message naming the column, sample bad rows and the fix."""

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataValidationError
from recsys.features.schema import (
    EVENT_TYPES,
    validate_events,
    validate_items,
    validate_media,
    validate_media_pools,
    validate_social,
    validate_tables,
    validate_users,
)
from recsys.features.validation import DataQualityWarning


def events(**over):
    df = pd.DataFrame({
        "user_id": [1, 2, 3, 1],
        "item_id": [10, 11, 12, 13],
        "timestamp": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]),
        "event_type": ["impression", "click", "purchase", "cart"],
        "media_id": ["guide-0", "app-1", "kol-2", "guide-0"],
        "value": [np.nan, np.nan, 99.0, np.nan],
    })
    for k, val in over.items():
        df[k] = val
    return df


def items(**over):
    df = pd.DataFrame({
        "item_id": ["a", "b", "c"],
        "category": ["shoes", "shoes", "tea"],
        "brand": ["x", "y", "z"],
        "shop": ["s1", "s2", "s3"],
        "price": [10.0, 20.0, 5.5],
        "commission_rate": [0.05, 0.1, 0.2],
        "title": ["red shoe", "blue shoe", "green tea"],
    })
    for k, val in over.items():
        df[k] = val
    return df


def assert_message(exc: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(exc.value)
    for p in parts:
        assert p in msg, f"{p!r} not in message:\n{msg}"


def test_valid_events_pass_and_keep_types():
    out = validate_events(events())
    assert list(out["event_type"].cat.categories) == list(EVENT_TYPES)
    assert out["user_id"].tolist() == [1, 2, 3, 1]
    assert out["timestamp"].dtype == "datetime64[ns]"


def test_missing_column_names_it_and_fix():
    with pytest.raises(DataValidationError) as e:
        validate_events(events().drop(columns=["event_type"]))
    assert_message(e, "events", "'event_type'", "Fix:", "rename")


def test_wrong_dtype_of_id_names_column_rows_and_fix():
    with pytest.raises(DataValidationError) as e:
        validate_events(events(user_id=[1.5, 2.0, 3.0, 1.0]))
    assert_message(e, "column 'user_id'", "float64", "1.5", "Fix:", "astype('int64')")


def test_wrong_dtype_of_price_names_bad_rows():
    with pytest.raises(DataValidationError) as e:
        validate_items(items(price=["10", "oops", "3"]))
    assert_message(e, "column 'price'", "not numbers", "oops", "1 of 3 rows", "Fix:", "pd.to_numeric")


def test_bad_timestamp_named():
    with pytest.raises(DataValidationError) as e:
        validate_events(events(timestamp=["2026-01-01", "yesterday-ish", "2026-01-03", "2026-01-04"]))
    assert_message(e, "column 'timestamp'", "yesterday-ish", "Fix:")


def test_null_key_names_column_and_rows():
    with pytest.raises(DataValidationError) as e:
        validate_events(events(item_id=pd.array([10, None, 12, 13], dtype="Int64")))
    assert_message(e, "column 'item_id'", "null", "1 of 4 rows", "Fix:", "dropna")


@pytest.mark.parametrize("col,vals,needle", [
    ("price", [10.0, np.nan, 1.0], "NaN"),
    ("price", [10.0, -3.0, 1.0], "below 0"),
    ("price", [10.0, np.inf, 1.0], "infinite"),
    ("coupon", [0.0, np.inf, 1.0], "infinite"),
    ("commission_rate", [0.1, np.nan, 0.2], "NaN"),
    ("commission_rate", [0.1, -0.2, 0.2], "below 0"),
    ("commission_rate", [0.1, 5.0, 0.2], "divide percentages by 100"),
])
def test_bad_price_or_commission(col, vals, needle):
    with pytest.raises(DataValidationError) as e:
        validate_items(items(**{col: vals}))
    assert_message(e, f"column '{col}'", needle, "1 of 3 rows", "Fix:")
    # the sample shows the offending row label (1) and value
    assert "\n1 " in str(e.value)


def test_unknown_event_type_lists_values_and_allowed():
    with pytest.raises(DataValidationError) as e:
        validate_events(events(event_type=["impression", "pv", "buy", "click"]))
    assert_message(e, "column 'event_type'", "'buy'", "'pv'", "2 of 4 rows", "purchase", "Fix:")


def test_event_type_is_case_insensitive():
    out = validate_events(events(event_type=["Impression", " CLICK", "purchase", "cart"]))
    assert out["event_type"].tolist() == ["impression", "click", "purchase", "cart"]


@pytest.mark.parametrize("fn,df", [
    (validate_events, events().iloc[:0]),
    (validate_items, items().iloc[:0]),
    (validate_users, pd.DataFrame({"user_id": []})),
    (validate_social, pd.DataFrame({"user_id": [], "friend_id": []})),
])
def test_empty_table(fn, df):
    with pytest.raises(DataValidationError) as e:
        fn(df)
    assert_message(e, "empty", "0 rows", "Fix:")


def test_not_a_dataframe():
    with pytest.raises(DataValidationError) as e:
        validate_events([1, 2, 3])
    assert_message(e, "expected a pandas DataFrame", "list", "Fix:")


def test_duplicates_dropped_deterministically_with_count():
    df = pd.concat([events(), events().iloc[[1, 1, 2]]], ignore_index=True)
    df.loc[4:, "value"] = [1.0, 2.0, 3.0]  # duplicates differ only in a non-key column: first is kept
    with pytest.warns(DataQualityWarning, match="dropped 3 duplicate"):
        out = validate_events(df)
    assert len(out) == 4
    assert out.loc[out["item_id"] == 11, "value"].isna().all()
    with pytest.warns(DataQualityWarning):
        again = validate_events(df.copy())
    pd.testing.assert_frame_equal(out, again)


def test_out_of_order_timestamps_sorted_stably():
    df = events(timestamp=[3, 1, 2, 1])  # integer Unix seconds
    with pytest.warns(DataQualityWarning, match="sorted"):
        out = validate_events(df)
    assert out["item_id"].tolist() == [11, 13, 12, 10]
    assert out["timestamp"].is_monotonic_increasing


@pytest.mark.parametrize("ids", [
    [2**63 - 1, 2**62 + 1, 3, 4],
    ["用户-α", "user:β", "😀", "x" * 200],
])
def test_ids_come_back_unchanged(ids):
    out = validate_events(events(user_id=ids, item_id=ids[::-1]))
    assert out["user_id"].tolist() == ids
    assert out["item_id"].tolist() == ids[::-1]


def test_uint64_ids_unchanged():
    ids = np.array([2**64 - 1, 2**63, 5, 7], dtype=np.uint64)
    out = validate_events(events(user_id=ids))
    assert out["user_id"].dtype == np.uint64
    assert out["user_id"].tolist() == ids.tolist()


def test_mixed_id_types_refused():
    with pytest.raises(DataValidationError) as e:
        validate_events(events(item_id=pd.Series([10, "b", 12, 13], dtype=object)))
    assert_message(e, "column 'item_id'", "mixes ids", "Fix:")


def test_negative_value_refused():
    with pytest.raises(DataValidationError) as e:
        validate_events(events(value=[np.nan, np.nan, -5.0, np.nan]))
    assert_message(e, "column 'value'", "below 0", "-5.0")


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_value_refused(bad):
    with pytest.raises(DataValidationError) as e:
        validate_events(events(value=[np.nan, np.nan, bad, np.nan]))
    assert_message(e, "column 'value'", "infinite", "1 of 4 rows", "Fix:")


def test_impression_id_is_an_id_and_keeps_distinct_impressions():
    same = events(timestamp=pd.to_datetime(["2026-01-01"] * 4), user_id=[1] * 4, item_id=[10] * 4,
                  event_type=["impression"] * 4, media_id=["g"] * 4)
    out = validate_events(same.assign(impression_id=[7, 8, 9, 10]))  # four impressions, not duplicates
    assert out["impression_id"].tolist() == [7, 8, 9, 10]
    with pytest.raises(DataValidationError) as e:
        validate_events(events(impression_id=[1.5, 2.0, 3.0, 4.0]))
    assert_message(e, "column 'impression_id'", "float64", "Fix:")


def test_media_objectives_checked():
    media = pd.DataFrame({"media_id": ["guide-0", "app-1"], "objective": ["GMV", "ctr"], "kind": ["g", "a"]})
    assert validate_media(media)["objective"].tolist() == ["GMV", "ctr"]  # synonyms and case are fine
    with pytest.raises(DataValidationError) as e:
        validate_media(media.assign(objective=["gmv", "likes"]))
    assert_message(e, "media", "column 'objective'", "'likes'", "1 of 2 rows", "commission", "Fix:")
    with pytest.raises(DataValidationError) as e:
        validate_media(media.assign(objective=["gmv", None]))
    assert_message(e, "column 'objective'", "missing")
    with pytest.raises(DataValidationError) as e:
        validate_media(media.assign(media_id=["a", "a"]))
    assert_message(e, "column 'media_id'", "duplicate")


def test_media_pools_ids_duplicates_and_known_items():
    pools = pd.DataFrame({"media_id": ["g", "g", "g"], "item_id": ["a", "b", "a"]})
    with pytest.warns(DataQualityWarning, match="dropped 1 duplicate"):
        assert validate_media_pools(pools)["item_id"].tolist() == ["a", "b"]
    with pytest.raises(DataValidationError) as e:
        validate_tables(items=items(), media_pools=pools.assign(item_id=["a", "zzz", "b"]))
    assert_message(e, "media_pools", "'item_id'", "zzz", "not in the items table", "Fix:")
    with pytest.raises(DataValidationError) as e:
        validate_media_pools(pools.drop(columns=["media_id"]))
    assert_message(e, "media_pools", "'media_id'")


def test_items_defaults_and_duplicates():
    out = validate_items(items())
    assert out["coupon"].tolist() == [0.0, 0.0, 0.0]
    assert out["in_stock"].all() and (out["eligibility"] == "").all()
    with pytest.raises(DataValidationError) as e:
        validate_items(items(item_id=["a", "a", "c"]))
    assert_message(e, "column 'item_id'", "duplicate", "drop_duplicates")


def test_in_stock_bad_values():
    out = validate_items(items(in_stock=["yes", "0", True]))
    assert out["in_stock"].tolist() == [True, False, True]
    with pytest.raises(DataValidationError) as e:
        validate_items(items(in_stock=["maybe", "1", "0"]))
    assert_message(e, "column 'in_stock'", "maybe")


def test_social_drops_loops_and_duplicates():
    with pytest.warns(DataQualityWarning, match="1 self-loop.*1 duplicate"):
        out = validate_social(pd.DataFrame({"user_id": [1, 1, 2, 1], "friend_id": [2, 1, 3, 2]}))
    assert out.values.tolist() == [[1, 2], [2, 3]]


def test_events_reference_unknown_items():
    with pytest.raises(DataValidationError) as e:
        validate_tables(events=events(item_id=["a", "b", "zzz", "c"]), items=items())
    assert_message(e, "'item_id'", "zzz", "not in the items table")


def test_reads_parquet_and_csv(tmp_path):
    df = events()
    df.to_parquet(tmp_path / "e.parquet")
    df.to_csv(tmp_path / "e.csv", index=False)
    a = validate_events(tmp_path / "e.parquet")
    b = validate_events(str(tmp_path / "e.csv"))
    assert a["item_id"].tolist() == b["item_id"].tolist() == [10, 11, 12, 13]
    with pytest.raises(DataValidationError, match="no such file"):
        validate_events(tmp_path / "missing.parquet")


def test_cli_validates_media_and_pools(tmp_path):
    from typer.testing import CliRunner

    from recsys.cli import app

    pd.DataFrame({"media_id": ["g", "a"], "objective": ["gmv", "likes"]}).to_csv(tmp_path / "media.csv", index=False)
    res = CliRunner().invoke(app, ["data", "validate", str(tmp_path / "media.csv"), "--table", "media"])
    assert res.exit_code == 2 and "'objective'" in res.output and "likes" in res.output
    pd.DataFrame({"media_id": ["g"], "item_id": [3]}).to_csv(tmp_path / "pools.csv", index=False)
    res = CliRunner().invoke(app, ["data", "validate", str(tmp_path / "pools.csv"), "--table", "media_pools"])
    assert res.exit_code == 0 and "media_pools: 1 rows" in res.output
