"""Feature pipeline: same encoders at training and inference, new ids never crash, JSON round trip."""

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.errors import DataValidationError
from recsys.features.pipeline import FeaturePipeline
from recsys.features.sequences import history_tensors, sequence_matrix
from recsys.fit.trainer import encode_all
from recsys.models.two_tower import TwoTowerModel


@pytest.fixture(scope="module")
def tables():
    items = pd.DataFrame({"item_id": [100, 101, 102, 103], "category": ["shoe", "shoe", "bag", "hat"],
                          "brand": ["a", "b", "a", "c"], "shop": ["s1", "s1", "s2", "s3"],
                          "price": [10.0, 20.0, 30.0, 40.0], "title": ["red shoe", "blue shoe", "bag", "hat"]})
    t = pd.Timestamp("2026-01-01")
    events = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "item_id": [100, 101, 102, 103, 100, 102],
        "timestamp": [t + pd.Timedelta(minutes=m) for m in (3, 1, 2, 5, 4, 6)],
        "event_type": ["click", "click", "impression", "purchase", "click", "click"],
        "media_id": ["m1", "m1", "m1", "m2", "m2", "m1"]})
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "gender": ["F", "M", "F"]})
    return events, items, users


def _pipe(tables) -> FeaturePipeline:
    events, items, users = tables
    return FeaturePipeline(user_categoricals=("gender",), title_buckets=64, history_len=2).fit(events, items, users)


def test_history_is_positive_events_oldest_first_last_n(tables):
    events, _, _ = tables
    p = _pipe(tables)
    h = p.history_matrix(events, row_ids=["u1", "u2", "nobody"])
    enc = p.items_.transform([101, 100])
    # u1 clicked 101 (t=1) then 100 (t=3); the impression of 102 is not behaviour
    assert h.indices[h.indptr[0]:h.indptr[1]].tolist() == enc.tolist()
    assert h.indptr[3] - h.indptr[2] == 0


def test_training_data_shapes_and_impression_negatives(tables):
    events, items, users = tables
    p = _pipe(tables)
    data = p.training_data(events, items, users)
    assert data.positives.shape == (p.users_.size, p.items_.size)
    assert data.positives.nnz == 5
    u1 = p.users_.transform(["u1"])[0]
    assert data.impressions[u1].indices.tolist() == p.items_.transform([102]).tolist()
    assert set(data.item_features) == {"item_id", "category", "brand", "shop", "price_bucket", "title_tokens"}
    assert set(data.user_features) == {"user_id", "gender", "media_id"}


def test_new_ids_at_inference_never_crash(tables):
    events, items, users = tables
    p = _pipe(tables)
    new_items = pd.DataFrame({"item_id": [999, 100], "category": ["unseen", "shoe"], "brand": [None, "a"],
                              "shop": ["s9", "s1"], "price": [np.nan, 10.0], "title": ["totally new 新品", None]})
    enc = p.encode_items(new_items)
    assert enc["item_id"].tolist() == [p.items_.oov_index, 0]
    assert enc["category"][0] == p.item_vocabs_["category"].oov_index and enc["price_bucket"][0] == 0
    new_events = pd.DataFrame({"user_id": ["stranger"], "item_id": [12345], "event_type": ["click"],
                               "timestamp": [pd.Timestamp("2026-02-01")]})
    uenc = p.encode_users(["stranger", "u1"], events=pd.concat([events, new_events]), users=users,
                          media_ids="brand-new-partner")
    assert uenc["user_id"][0] == p.users_.oov_index
    assert uenc["history"].tolist()[0] == p.items_.oov_index  # unknown item in history: OOV row
    model = TwoTowerModel.for_features(p, dim=8, history="mean+attention").eval()
    with torch.no_grad():
        assert torch.isfinite(model.item_embeddings(enc)).all()
        assert torch.isfinite(model.user_embeddings(uenc)).all()


def test_training_and_inference_encode_alike(tables):
    events, items, users = tables
    p = _pipe(tables)
    data = p.training_data(events, items, users)
    model = TwoTowerModel.for_features(p, dim=8, history="mean").eval()
    u_train, i_train = encode_all(model, data)
    ids = p.users_.inverse_transform(np.arange(p.users_.num_known))
    media = p._dominant_media(events, ids)
    with torch.no_grad():
        u_inf = model.user_embeddings(p.encode_users(ids, events=events, users=users, media_ids=media))
        i_inf = model.item_embeddings(p.encode_items(items))
    assert np.allclose(u_train[: len(ids)], u_inf.numpy(), atol=1e-6)
    order = p.items_.transform(items["item_id"])
    assert np.allclose(i_train[order], i_inf.numpy(), atol=1e-6)


def test_json_round_trip_encodes_identically(tables, tmp_path):
    events, items, users = tables
    p = _pipe(tables)
    q = FeaturePipeline.load(p.save(tmp_path / "features.json"))
    for k, v in p.encode_items(items).items():
        assert torch.equal(v, q.encode_items(items)[k])
    a = p.encode_users(["u2", "x"], events=events, users=users, media_ids=["m2", "m9"])
    b = q.encode_users(["u2", "x"], events=events, users=users, media_ids=["m2", "m9"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert p.tower_sizes() == q.tower_sizes()


def test_missing_columns_are_named(tables):
    events, items, _ = tables
    with pytest.raises(DataValidationError, match="brand"):
        FeaturePipeline().fit(events, items.drop(columns=["brand"]))


def test_sequence_helpers():
    csr = sequence_matrix(np.array([0, 0, 0, 1]), np.array([5, 6, 5, 2]), np.array([1, 2, 3, 1]),
                          n_users=3, n_items=7, max_len=5)
    assert csr.indices[csr.indptr[0]:csr.indptr[1]].tolist() == [6, 5]  # 5 re-seen last: kept at its latest spot
    t = history_tensors(csr, np.array([2, 0]))
    assert t["history"].tolist() == [6, 5] and t["history_offsets"].tolist() == [0, 0]
    with pytest.raises(DataValidationError, match="out of range"):
        sequence_matrix(np.array([5]), np.array([0]), None, n_users=2, n_items=2)
