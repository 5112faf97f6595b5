"""Ids: one rule for every serving call (an id read one way only is the model's id; any other is served as
unknown and the feed says so) and CSV id columns read as written ('007' stays '007').

The pyfunc side of the rule is in ``tests/test_pyfunc.py``; the shared fitted Recommender (integer ids,
GBDT ranker) comes from ``tests/test_recommender.py``.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataValidationError
from recsys.ids import coerce_id, read_csv_table
from tests.test_recommender import fitted, world

UNKNOWN = "served as an unknown user"


@pytest.mark.parametrize("value, kind, expected", [
    ("1279", "int", 1279), (1279.0, "int", 1279), (np.int64(1279), "int", 1279), (np.float32(7), "int", 7),
    ("-3", "int", -3), (1279, "str", "1279"), (1279.0, "str", "1279"), (np.str_("u1"), "str", "u1"),
    (1279.0, "any", 1279), ("u1", "any", "u1")])
def test_an_id_that_reads_one_way_is_coerced(value, kind, expected):
    got, note = coerce_id(value, kind, "user_id", UNKNOWN)
    assert got == expected and type(got) is type(expected) and note is None


@pytest.mark.parametrize("value, kind", [("12a", "int"), ("007", "int"), ("+7", "int"), (" 7", "int"),
                                         ("7.0", "int"), (12.5, "int"), (float("nan"), "int"), (2.0**60, "int"),
                                         (12.5, "str"), (12.5, "any")])
def test_an_ambiguous_id_is_left_as_given_with_a_note(value, kind):
    got, note = coerce_id(value, kind, "user_id", UNKNOWN)
    assert got is value or (got != got and value != value)  # unchanged (NaN is not equal to itself)
    assert note is not None and note.startswith(f"user_id {value!r} is not") and note.endswith(UNKNOWN)


@pytest.mark.parametrize("value", [None, True, [1], b"7", {"id": 1}])
def test_what_is_no_id_at_all_is_refused(value):
    with pytest.raises(DataValidationError, match="user_id must be an int or a str"):
        coerce_id(value, "int", "user_id", UNKNOWN)


def _known_user() -> int:
    ev = world().events
    return int(ev.loc[ev["event_type"].astype(str) == "click", "user_id"].iloc[0])


def test_every_spelling_of_an_integer_id_gets_the_same_feed():
    rec, uid = fitted(), _known_user()
    item = int(world().items["item_id"].iloc[7])
    feeds = [rec.recommend(v, k=8, media_id="guide-0", exclude=[e])
             for v, e in ((uid, item), (str(uid), str(item)), (float(uid), float(item)),
                          (np.int64(uid), np.int64(item)))]
    for f in feeds:
        assert f.user_id == uid and type(f.user_id) is int and f.notes == [] and f.fallback is None
        assert f.item_ids == feeds[0].item_ids and item not in f.item_ids
    batch = rec.recommend_batch([uid, str(uid), float(uid)], k=8, media_id="guide-0", exclude=[str(item)])
    assert batch["item_id"].tolist() == feeds[0].item_ids * 3 and batch.attrs["notes"] == {}
    ids = rec.recommend_ids(pd.Series([str(uid), float(uid)], dtype=object), k=8, media_id="guide-0",
                            exclude=[item])
    assert ids.tolist() == [feeds[0].item_ids] * 2
    assert rec.similar_items(str(item), k=5).item_ids == rec.similar_items(item, k=5).item_ids
    with pytest.raises(DataValidationError, match="unknown media_id '7'"):  # a partner id is a string ('7', unknown)
        rec.recommend(uid, k=3, media_id=7.0)


def test_an_id_of_another_type_is_served_as_unknown_and_the_feed_says_so():
    rec = fitted()
    unknown = rec.recommend(10**9, k=8).item_ids  # an integer id the model never saw
    for v in ("12a", "007", 12.5, float("nan")):
        feed = rec.recommend(v, k=8)
        assert feed.fallback is not None and feed.item_ids == unknown
        assert feed.notes[0] == f"user_id {v!r} is not an integer id of this model: served as an unknown user"
    batch = rec.recommend_batch(["12a", 10**9], k=8)
    assert batch.attrs["notes"]["12a"][0].startswith("user_id '12a' is not an integer id")
    feed = rec.recommend(_known_user(), k=5, exclude=["x-1"])
    assert feed.notes == ["exclude item_id 'x-1' is not an integer id of this model: ignored"]
    similar = rec.similar_items(3.5, k=4)
    assert similar.fallback == "popular" and similar.notes[0].startswith("item_id 3.5 is not an integer id")


def _tables_with_leading_zeros():
    """A small world whose item ids are written with leading zeros ('007') and whose user ids are plain."""
    from recsys.datasets.synthetic import generate_world

    w = generate_world(5_000, seed=3, progress=False)
    pad = lambda s: s.map(lambda i: f"{int(i):03d}")  # noqa: E731
    return {"events": w.events.assign(item_id=pad(w.events["item_id"])), "items": w.items.assign(
        item_id=pad(w.items["item_id"])), "users": w.users, "social": w.social, "media": w.media,
        "media_pools": w.media_pools.assign(item_id=pad(w.media_pools["item_id"]))}


@functools.cache
def _csv_recommender():
    """The tables written as CSV files, read back as ``recsys train`` reads data.source files, and a
    Recommender without a ranker fitted on them (built once per test process)."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    import torch

    from recsys.fit.components import TrainSettings
    from recsys.fit.settings import DataConfig
    from recsys.fit.tables import load_tables
    from recsys.recommender import Recommender

    root = Path(tempfile.mkdtemp(prefix="recsys-csv-ids-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for name, frame in _tables_with_leading_zeros().items():
        frame.to_csv(root / f"{name}.csv", index=False)
    t = load_tables(DataConfig(source="files", path=str(root)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = TrainSettings(dim=8, epochs=1, title_buckets=64, ranker="none")
        rec = Recommender(train=settings, no_partner="catalogue").fit(  # tests here ask without a partner too
            t.events, t.items, users=t.users, social=t.social, media=t.media, media_pools=t.media_pools,
            progress=False)
    finally:
        torch.set_num_threads(threads)
    return t, rec


@pytest.fixture(scope="module")
def csv_recommender():
    return _csv_recommender()


def test_csv_ids_with_leading_zeros_train_serve_and_come_back_as_written(csv_recommender):
    t, rec = csv_recommender
    written = set(_tables_with_leading_zeros()["items"]["item_id"])
    assert "007" in written and set(t.items["item_id"]) == written  # not 7: ids come back unchanged
    assert pd.api.types.is_integer_dtype(t.events["user_id"].dtype)  # canonical integers stay integers
    uid = int(t.events["user_id"].iloc[0])
    feed = rec.recommend(uid, k=10, media_id="guide-0", exclude=["007"])
    assert len(feed) == 10 and set(feed.item_ids) <= written and "007" not in feed.item_ids
    assert all(isinstance(i, str) and len(i) == 3 for i in feed.item_ids)
    assert rec.similar_items("007", k=3).fallback is None and rec.similar_items(7, k=3).fallback == "popular"


def test_read_csv_table_keeps_text_ids_and_makes_canonical_ones_integers(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,media_id,friend_id,price\n007,1,,99999999999999999999,1.5\n8,2,5,3,\n")
    frame = read_csv_table(path)
    assert frame["user_id"].tolist() == ["007", "8"] and frame["item_id"].dtype == np.int64
    assert frame["friend_id"].tolist() == ["99999999999999999999", "3"]  # beyond int64: kept as written
    assert frame["media_id"].isna().tolist() == [True, False] and frame["media_id"].iloc[1] == 5
    assert frame["price"].dtype == np.float64
    from recsys.features.schema import validate_items

    items = _tables_with_leading_zeros()["items"]
    items.to_csv(tmp_path / "items.csv", index=False)
    assert validate_items(str(tmp_path / "items.csv"))["item_id"].iloc[7] == "007"  # validation reads the same
