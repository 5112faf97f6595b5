"""Vocabularies and transforms: OOV buckets, ids out unchanged, JSON round trips, stable hashing."""

import json

import numpy as np
import pytest

from recsys.errors import ConfigError, DataValidationError
from recsys.features.transforms import HashedTokens, NumericScaler, QuantileBuckets, tokenize
from recsys.features.vocab import HashingVocabulary, Vocabulary, stable_hash, vocabulary_from_dict


def test_vocabulary_orders_by_frequency_and_sends_unknowns_to_oov():
    v = Vocabulary().fit(["b", "a", "b", "c", "b", "a"])
    assert v.transform(["b", "a", "c"]).tolist() == [0, 1, 2]
    assert v.size == 4 and v.oov_index == 3
    assert v.transform(["zzz", None, 5]).tolist() == [3, 3, 3]  # unseen, null, wrong type: no crash


def test_int_and_string_ids_come_back_unchanged():
    big = np.array([2**63 + 5, 7, 2**63 + 5], dtype=np.uint64)
    v = Vocabulary().fit(big)
    back = v.inverse_transform(v.transform(big))
    assert back.dtype == np.uint64 and back.tolist() == big.tolist()
    s = Vocabulary().fit(np.array(["u1", "u2"], dtype=object))
    assert s.inverse_transform([1]).tolist() == ["u2"]
    with pytest.raises(DataValidationError, match="OOV"):
        s.inverse_transform([s.oov_index])


@pytest.mark.parametrize("values", [np.array([10, 20, 20, 30]), np.array(["x", "y", "y"], dtype=object),
                                    np.array([2**64 - 1, 1], dtype=np.uint64)])
def test_vocabulary_json_round_trip(values):
    v = Vocabulary(min_count=1, max_size=10).fit(values)
    w = vocabulary_from_dict(json.loads(json.dumps(v.to_dict())))
    probe = np.concatenate([values, values[:1]])
    assert w.transform(probe).tolist() == v.transform(probe).tolist()
    assert w.inverse_transform([0]).tolist() == v.inverse_transform([0]).tolist()


def test_min_count_max_size_and_several_oov_buckets():
    v = Vocabulary(min_count=2, max_size=1, num_oov_buckets=4).fit(["a", "a", "a", "b", "b", "c"])
    assert v.num_known == 1 and v.size == 5
    idx = v.transform(["a", "b", "c", "new"])
    assert idx[0] == 0 and all(1 <= i < 5 for i in idx[1:])
    assert v.transform(["new"])[0] == idx[3]  # the same unseen value always lands in the same bucket
    with pytest.raises(ConfigError):
        Vocabulary(num_oov_buckets=0).fit(["a"])
    with pytest.raises(ConfigError, match="not fitted"):
        Vocabulary().transform(["a"])


def test_hashing_vocabulary_is_stable_and_in_range():
    h = HashingVocabulary(num_buckets=97, salt="u")
    a = h.transform(["a", 12345, "ü"])
    b = vocabulary_from_dict(json.loads(json.dumps(h.to_dict()))).transform(["a", 12345, "ü"])
    assert a.tolist() == b.tolist() and ((a >= 0) & (a < 97)).all()
    assert stable_hash(["x"]).tolist() == stable_hash(["x"]).tolist()
    assert stable_hash(["x"], salt="1").tolist() != stable_hash(["x"], salt="2").tolist()


def test_numeric_scaler_and_quantile_buckets():
    s = NumericScaler(log1p=True).fit([0, 1, 3, 7, np.nan])
    z = s.transform([0, 7, np.nan, "bad"])
    assert z.dtype == np.float32 and z[2] == 0.0 and z[3] == 0.0 and z[0] < 0 < z[1]
    assert NumericScaler.from_dict(s.to_dict()).transform([3]).tolist() == s.transform([3]).tolist()
    q = QuantileBuckets(num_buckets=4).fit(np.arange(100))
    b = q.transform([-5, 10, 30, 60, 99, 1e9, np.nan])
    assert b.tolist() == [1, 1, 2, 3, 4, 4, 0]  # 0 = missing, then monotone bands
    assert q.size == 5
    assert QuantileBuckets.from_dict(q.to_dict()).transform([60]).tolist() == [3]


def test_hashed_title_tokens():
    t = HashedTokens(num_buckets=1000, max_tokens=4).fit()
    out = t.transform(["Red Running Shoes", "red shoes", None, "连衣裙 Dress", "a b c d e f"])
    assert out.shape == (5, 4)
    assert out[0, 0] == out[1, 0] and out[0, 2] == out[1, 1]  # same word, same bucket, case-insensitive
    assert (out[2] == 0).all()  # no title: all padding
    assert (out[3, :4] > 0).all()  # three CJK characters and one word
    assert (out > 0).sum(1)[4] == 4  # truncated to max_tokens
    assert tokenize("Nike Air-Max 90") == ["nike", "air", "max", "90"]
