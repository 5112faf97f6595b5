"""Loaders for the real public data: hand-made fixtures always; the shared data's PROVENANCE counts when present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.datasets import paths
from recsys.datasets.ali_ccp import COLUMNS, detect_ali_ccp_format, iter_ali_ccp_full, load_ali_ccp
from recsys.datasets.lightgcn import load_lightgcn
from recsys.datasets.ranking_samples import (
    load_aliexpress,
    load_taobao_ad_display,
    read_taobao_ad_display_csv,
)
from recsys.datasets.taobao import load_taobao_multibehavior, load_taobao_userbehavior, userbehavior_items
from recsys.errors import DataValidationError
from recsys.features.schema import validate_events

FIXTURES = Path(__file__).parent / "data"


def _shared(subpath: str) -> Path:
    try:
        return paths.require_shared(subpath)
    except FileNotFoundError as e:
        pytest.skip(f"shared real data absent: {str(e).splitlines()[0]} (set RECSYS_SHARED_DATA to run this test)")


# ---------------------------------------------------------------- paths

def test_shared_data_dir_honours_env_and_require_shared_explains(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert paths.shared_data_dir() == tmp_path
    (tmp_path / "retrieval").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds \['retrieval'\]"):
        paths.require_shared("nope/deeper")
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "absent"))
    assert paths.shared_data_dir() is None
    with pytest.raises(FileNotFoundError, match="RECSYS_SHARED_DATA"):
        paths.require_shared("retrieval/gowalla")


# ---------------------------------------------------------------- LightGCN format

def test_lightgcn_tiny_fixture_tolerates_blank_lines_empty_users_and_trailing_whitespace():
    ds = load_lightgcn(FIXTURES / "lightgcn_tiny")
    assert (ds.n_users, ds.n_items, ds.name) == (3, 5, "lightgcn_tiny")
    assert list(map(tuple, ds.train.to_numpy())) == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3)]
    assert list(map(tuple, ds.test.to_numpy())) == [(0, 3), (2, 4), (2, 1)]
    assert ds.train.dtypes.tolist() == [np.int64, np.int64]
    m = ds.train_matrix()
    assert m.shape == (3, 5) and m.dtype == np.float32 and m.nnz == 5
    np.testing.assert_array_equal(m.toarray()[2], 0)  # user 2 has no training items
    assert ds.test_matrix().toarray()[2].tolist() == [0, 1, 0, 0, 1]
    s = ds.stats()
    assert s["n_train"] == 5 and s["n_test"] == 3 and s["n_train_users"] == 2 and s["pairs_in_train_and_test"] == 0
    json.dumps(s)  # plain types only


def test_lightgcn_counts_overlap_and_duplicates_but_keeps_rows(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 1 2\n")
    (tmp_path / "test.txt").write_text("0 2\n3\n")
    ds = load_lightgcn(tmp_path)
    s = ds.stats()
    assert (s["n_users"], s["n_train"], s["train_duplicate_pairs"], s["pairs_in_train_and_test"]) == (4, 3, 1, 1)
    assert ds.train_matrix().toarray()[0].tolist() == [0, 1, 1]  # binary


@pytest.mark.parametrize("bad", ["1.5", "x7", "-3", "99999999999999999999999"])
def test_lightgcn_bad_token_names_file_line_and_token(tmp_path, bad):
    (tmp_path / "train.txt").write_text(f"0 1 2\n1 3 {bad} 4\n")
    (tmp_path / "test.txt").write_text("0 5\n")
    with pytest.raises(DataValidationError, match=rf"train\.txt, line 2, token 3: '{bad}' is not a non-negative"):
        load_lightgcn(tmp_path)


def test_lightgcn_missing_file_and_empty_train_are_named(tmp_path):
    (tmp_path / "train.txt").write_text("0 1\n")
    with pytest.raises(FileNotFoundError, match=r"test\.txt is missing"):
        load_lightgcn(tmp_path)
    with pytest.raises(FileNotFoundError, match="expects the directory"):
        load_lightgcn(tmp_path / "train.txt")
    (tmp_path / "train.txt").write_text("0\n\n")
    (tmp_path / "test.txt").write_text("0 1\n")
    with pytest.raises(DataValidationError, match="holds no interactions"):
        load_lightgcn(tmp_path)


@pytest.mark.shared_data
@pytest.mark.parametrize("name,counts", [
    ("gowalla", (29_858, 40_981, 810_128, 217_242)),
    ("yelp2018", (31_668, 38_048, 1_237_259, 324_147)),
])
def test_lightgcn_reproduces_provenance_counts(name, counts):
    root = _shared(f"retrieval/{name}")
    ds = load_lightgcn(root)
    s = ds.stats()
    assert (s["n_users"], s["n_items"], s["n_train"], s["n_test"]) == counts
    # PROVENANCE: every user has test items; no pair in both.
    assert s["n_test_users"] == counts[0] and s["pairs_in_train_and_test"] == 0
    assert ds.train_matrix().nnz == counts[2]


# ---------------------------------------------------------------- Taobao

def test_multibehavior_tiny_folder_without_statistics(tmp_path):
    (tmp_path / "buy.txt").write_text("0 0\n1 2\n")
    (tmp_path / "valid.txt").write_text("0 1\n")
    (tmp_path / "test.txt").write_text("1 3\n\n")
    ds = load_taobao_multibehavior(tmp_path)
    assert ds.train is ds.buy and ds.cart is None and ds.view is None
    assert (ds.n_users, ds.n_items) == (2, 4)
    assert ds.stats()["n_buy"] == 2 and list(ds.behaviors()) == ["buy"]


def test_multibehavior_errors_name_the_line_and_the_missing_file(tmp_path):
    (tmp_path / "train.txt").write_text("0 0\n1 2 3\n")
    with pytest.raises(FileNotFoundError, match=r"valid\.txt, test\.txt"):
        load_taobao_multibehavior(tmp_path)
    (tmp_path / "valid.txt").write_text("0 1\n")
    (tmp_path / "test.txt").write_text("0 1\n")
    with pytest.raises(DataValidationError, match=r"train\.txt, line 2: expected 2 integers"):
        load_taobao_multibehavior(tmp_path)
    (tmp_path / "train.txt").write_text("0 0\n5 2\n")
    (tmp_path / "statistics.json").write_text('{"n_users": 3, "n_items": 9}')
    with pytest.raises(DataValidationError, match="declares n_users=3 but the files use ids up to 5"):
        load_taobao_multibehavior(tmp_path)


@pytest.mark.shared_data
def test_multibehavior_taobao_matches_provenance_and_statistics():
    root = _shared("multibehavior/taobao")
    ds = load_taobao_multibehavior(root)
    stats = json.loads((root / "statistics.json").read_text())
    assert (ds.n_users, ds.n_items) == (stats["n_users"], stats["n_items"]) == (15_449, 11_953)
    assert len(ds.buy) == stats["n_buy"] == 92_180 and len(ds.cart) == stats["n_cart"] == 195_476
    assert len(ds.valid) == len(ds.test) == 15_449
    assert ds.train.equals(ds.buy)  # PROVENANCE: train.txt == buy.txt
    assert ds.view is None and ds.collect is None


def test_userbehavior_maps_events_and_validates(tmp_path):
    csv = tmp_path / "UserBehavior.csv"
    csv.write_text("2,11,101,fav,1511658000\n1,10,100,pv,1511658000\n1,10,100,buy,1511658060\n2,12,100,cart,1511658120\n")
    ev = load_taobao_userbehavior(tmp_path)
    assert ev["event_type"].astype(str).tolist() == ["fav", "click", "purchase", "cart"]
    assert ev["timestamp"].dtype == "datetime64[ns]"
    assert ev["timestamp"].iloc[2] == pd.Timestamp("2017-11-26 01:01:00")
    assert userbehavior_items(ev).to_dict("list") == {"item_id": [11, 10, 12], "category": [101, 100, 100]}
    assert len(validate_events(ev)) == 4
    csv.write_text("1,10,100,pv,1511658000\n1,10,100,like,1511658060\n")
    with pytest.raises(DataValidationError, match=r"(?s)'behavior_type' has 1 rows outside .*like"):
        load_taobao_userbehavior(csv)
    csv.write_text("1,ten,100,pv,1511658000\n")
    with pytest.raises(DataValidationError, match="not in UserBehavior format"):
        load_taobao_userbehavior(csv)


@pytest.mark.shared_data
def test_userbehavior_extract_matches_provenance():
    ev = load_taobao_userbehavior(_shared("ranking/taobao-userbehavior/UserBehavior_sample.csv"))
    assert len(ev) == 110_300
    assert (ev["user_id"].nunique(), ev["item_id"].nunique(), ev["category"].nunique()) == (66_454, 84_793, 3_913)
    counts = ev["event_type"].value_counts()
    assert (counts["click"], counts["cart"], counts["fav"], counts["purchase"], counts["impression"]) == (
        98_361, 6_063, 3_383, 2_493, 0)
    # 2017-11-26 09:00-11:10 +08:00 == 01:00-03:10 UTC
    assert ev["timestamp"].min() == pd.Timestamp("2017-11-26 01:00:00")
    assert ev["timestamp"].max() < pd.Timestamp("2017-11-26 03:11:00")
    assert len(userbehavior_items(ev)) == 84_793


# ---------------------------------------------------------------- Ali-CCP

def test_ali_ccp_full_format_fixture_joins_common_features():
    root = FIXTURES / "ali_ccp_full"
    assert detect_ali_ccp_format(root) == "full"
    with pytest.warns(UserWarning, match="dropped 1 impressions with buy=1 but click=0"):
        splits = load_ali_ccp(root)
    train, test = splits["train"], splits["test"]
    assert list(train.columns) == ["sample_id", *COLUMNS]
    assert train["sample_id"].tolist() == [1, 2, 3, 5]
    assert train["click"].tolist() == [0, 1, 1, 0] and train["purchase"].tolist() == [0, 0, 1, 0]
    first = train.iloc[0]
    assert (first["101"], first["121"], first["205"], first["206"], first["508"]) == (9001, 31, 5001, 601, 7001)
    assert first["109_14"] == 441 and first["D109_14"] == 3.0  # the repeated field's last value wins
    assert first["D508"] == 0.25 and first["216"] == 0 and first["D853"] == 0.0  # absent -> 0
    row5 = train.iloc[3]
    assert (row5["101"], row5["124"], row5["205"]) == (1002, 2, 0)  # only common features
    assert test["sample_id"].tolist() == [10, 11] and test["150_14"].tolist() == [12, 12]
    assert test["D150_14"].tolist() == [0.75, 0.75] and test["216"].tolist() == [0, 77]


def test_ali_ccp_full_streams_in_chunks():
    with pytest.warns(UserWarning):
        chunks = list(iter_ali_ccp_full(FIXTURES / "ali_ccp_full", "train", chunk_rows=3))
    assert [len(c) for c in chunks] == [3, 1]
    # stopping early ends the stream before its end-of-stream warning about dropped rows
    assert len(load_ali_ccp(FIXTURES / "ali_ccp_full", splits=("train",), max_rows=2)["train"]) == 2


@pytest.mark.parametrize("line,message", [
    ("1,0,0,c1,2,205\x025001\x031.0\n", "num_features says '2' but the list holds 1"),
    ("1,0,0,zz,1,205\x025001\x031.0\n", "common_feature_index 'zz' is not in common_features_train.csv"),
    ("1,0,0,c1,1,205\x02abc\x031.0\n", "malformed feature of field 205"),
    ("1,0,0,c1,1,508\x027001\x03abc\n", "malformed feature of field 508"),
    ("1,0,0,c1,2,205\x025001\x031.0\x01206\x02601\n", "num_features says '2' but the list holds 2 well-formed"),
    ("1,2,0,c1,1,205\x025001\x031.0\n", "click=2, buy=0: labels must be 0 or 1"),
    ("1,0,0,c1\n", "expected 6 comma-separated fields, found 4"),
])
def test_ali_ccp_full_bad_lines_name_file_and_line(tmp_path, line, message):
    (tmp_path / "common_features_train.csv").write_text("c1,1,101\x029\x031.0\n")
    (tmp_path / "sample_skeleton_train.csv").write_text("0,0,0,c1,0,\n" + line)
    with pytest.raises(DataValidationError, match=rf"sample_skeleton_train\.csv, line 2: {message}"):
        next(iter_ali_ccp_full(tmp_path, "train"))


def test_ali_ccp_processed_fixture_and_format_errors(tmp_path):
    splits = load_ali_ccp(FIXTURES / "ali_ccp_processed")
    df = splits["train"]
    assert list(df.columns) == list(COLUMNS) and len(df) == 3
    assert (df["click"].sum(), df["purchase"].sum()) == (2, 1) and df["click"].dtype == np.int8
    assert df["205"].dtype == np.int64 and df["D853"].dtype == np.float64
    with pytest.raises(FileNotFoundError, match="holds no Ali-CCP files"):
        load_ali_ccp(tmp_path)
    with pytest.raises(FileNotFoundError, match="sample_skeleton_test.csv is missing|has no full Ali-CCP file"):
        iter_ali_ccp_full(tmp_path, "test")
    (tmp_path / "ali_ccp_val.csv").write_text("click,purchase,101\n0,0,1\n")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['121'"):
        load_ali_ccp(tmp_path)


@pytest.mark.shared_data
def test_ali_ccp_sample_matches_provenance():
    splits = load_ali_ccp(_shared("ranking/ali-ccp"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 100, "val": 50, "test": 50}
    both = pd.concat(splits.values())
    assert (both["click"].sum(), both["purchase"].sum()) == (12, 3)
    assert not ((both["purchase"] == 1) & (both["click"] == 0)).any()


# ---------------------------------------------------------------- AliExpress and Taobao display ads

def test_aliexpress_renames_conversion_and_drops_broken_funnel(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("search_id,categorical_1,numerical_1,click,conversion\n1,5,0.5,1,1\n2,6,0.1,0,1\n3,7,0.2,0,0\n")
    with pytest.warns(UserWarning, match="dropped 1 rows with purchase=1 but click=0"):
        df = load_aliexpress(f)["train"]
    assert df["search_id"].tolist() == [1, 3] and "conversion" not in df.columns
    assert df["purchase"].dtype == np.int8 and df["numerical_1"].dtype == np.float64
    f.write_text("search_id,click\n1,1\n")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['conversion'\]"):
        load_aliexpress(f)


def test_taobao_ad_display_raw_sample_layout_and_sequences(tmp_path):
    f = tmp_path / "raw_sample_test.csv"
    f.write_text("user,time_stamp,adgroup_id,pid,nonclk,clk,click_sequence\n"
                 "7,1494000000,11,430548_1007,1,0,\n8,1494000060,12,430539_1007,0,1,3^4\n")
    df = read_taobao_ad_display_csv(f)
    assert df["user_id"].tolist() == [7, 8] and df["click"].tolist() == [0, 1]
    assert df["timestamp"].iloc[0] == pd.Timestamp("2017-05-05 16:00:00")
    assert df["click_sequence"].tolist() == [[], [3, 4]] and df["pid"].iloc[0] == "430548_1007"
    f.write_text("clk,time_stamp,userid,adgroup_id,click_sequence\n0,2017-05-06 00:00:00,1,2,3^x\n")
    with pytest.raises(DataValidationError, match="row 0 has a sequence '3\\^x'"):
        read_taobao_ad_display_csv(f)


@pytest.mark.shared_data
def test_ranking_samples_match_provenance():
    ali = load_aliexpress(_shared("ranking/aliexpress"))
    assert {k: (len(v), v["click"].sum(), v["purchase"].sum()) for k, v in ali.items()} == {
        "train": (100, 60, 2), "test": (20, 10, 2)}
    assert sum(c.startswith("categorical_") for c in ali["train"].columns) == 16
    assert sum(c.startswith("numerical_") for c in ali["train"].columns) == 63
    ads = load_taobao_ad_display(_shared("ranking/taobao-ad-display"))
    assert {k: (len(v), v["click"].sum()) for k, v in ads.items()} == {"train": (100, 4), "test": (100, 4)}
    train = ads["train"]
    assert train["timestamp"].dt.date.astype(str).unique().tolist() == ["2017-05-06"]
    assert train["click_sequence"].iloc[2] == [170301, 573514, 158525, 633154, 383937, 431258]
    assert train["brand"].dtype == "Int64" and "purchase" not in train.columns
