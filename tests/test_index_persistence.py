"""Save/load round trips give identical results; corrupt, truncated, tampered or mismatched files are refused."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from recsys.errors import ArtifactError
from recsys.index import ExactIndex, FaissIndex, SearchFilters, load_index, read_manifest
from tests.test_index_recall import clustered

BACKENDS = ["exact", "Flat", "HNSW16", "IVF16,Flat", "IVF16,PQ16x4fs,Refine(SQ8)"]
ITEMS, QUERIES = clustered(1500, d=16, n_clusters=10, seed=12, n_queries=10)


def _prepared(factory: str, ids):
    idx = ExactIndex(metric="cosine") if factory == "exact" else FaissIndex(factory=factory, metric="cosine", search_params={"nprobe": 4})
    idx.build(ITEMS[:1400], ids[:1400])
    idx.add(ITEMS[1400:], ids[1400:])
    idx.remove(ids[10:20])
    idx.set_item_attributes(ids[:50], in_stock=False, eligibility=["vip"] * 25 + [None] * 25)
    return idx


def _searches(idx, ids):
    f = [None, SearchFilters(exclude=ids[100:200]), SearchFilters(allow=ids[:400], segments={"vip"},
                                                                  require_in_stock=False)]
    return [idx.search(QUERIES, 20, x) for x in f]


@pytest.mark.parametrize("factory", BACKENDS)
@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_round_trip_gives_identical_results(tmp_path, factory, id_kind):
    ids = (np.arange(1500, dtype=np.int64) * 997 + 2**53 + 1 if id_kind == "int"
           else np.array([f"商品-{i}-é" for i in range(1500)], dtype=object))
    idx = _prepared(factory, ids)
    path = idx.save(tmp_path / "index")
    loaded = load_index(path)
    assert type(loaded) is type(idx) and len(loaded) == len(idx) == 1490
    for (s1, i1), (s2, i2) in zip(_searches(idx, ids), _searches(loaded, ids), strict=True):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(i1, i2)
    assert loaded.health() == idx.health()
    if factory != "exact":
        assert loaded.factory == factory and loaded.effective_params() == idx.effective_params()
    m = read_manifest(path)
    assert m["dim"] == 16 and m["metric"] == "cosine" and m["count"] == 1490 and m["faiss_version"]
    assert all(len(v["sha256"]) == 64 for v in m["files"].values())


@pytest.fixture
def saved(tmp_path):
    idx = _prepared("IVF16,Flat", np.arange(1500))
    return idx.save(tmp_path / "index")


def _rewrite_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


def test_truncated_file_is_refused(saved):
    f = saved / "index.faiss"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="truncated or modified"):
        load_index(saved)


def test_tampered_byte_is_refused(saved):
    f = saved / "index.faiss"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 .* does not match .* tampered"):
        load_index(saved)


def test_garbage_with_a_matching_checksum_is_refused_not_crashed(saved):
    f = saved / "index.faiss"
    garbage = np.random.default_rng(0).bytes(f.stat().st_size)
    f.write_bytes(garbage)
    m = json.loads((saved / "manifest.json").read_text())
    m["files"]["index.faiss"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="inconsistent or corrupt"):
        load_index(saved)


def test_mismatched_manifest_is_refused(saved):
    _rewrite_manifest(saved, dim=32)
    with pytest.raises(ArtifactError, match="d=16"):
        load_index(saved)
    _rewrite_manifest(saved, dim=16, count=5)
    with pytest.raises(ArtifactError, match="live items"):
        load_index(saved)
    _rewrite_manifest(saved, format_version=99)
    with pytest.raises(ArtifactError, match="format version 99"):
        load_index(saved)
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_index(saved)


def test_size_limit_and_missing_pieces(saved, tmp_path):
    with pytest.raises(ArtifactError, match="max_bytes"):
        load_index(saved, max_bytes=1000)
    (saved / "alive.npy").unlink()
    with pytest.raises(ArtifactError, match="alive.npy.* missing"):
        load_index(saved)
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_index(tmp_path / "nowhere")


def test_save_is_atomic_and_replaces_an_existing_index(tmp_path):
    path = tmp_path / "index"
    _prepared("Flat", np.arange(1500)).save(path)
    small = FaissIndex(factory="Flat", metric="ip").build(ITEMS[:10], np.arange(10))
    small.save(path)
    assert len(load_index(path)) == 10
    # no temp or old directories left: the path is a symlink to the one current version
    assert sorted(p.name for p in tmp_path.iterdir()) == [".index.versions", "index"]
    assert [p.name for p in (tmp_path / ".index.versions").iterdir()] == [path.resolve().name]
    other = tmp_path / "not-an-index"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        small.save(other)
    assert (other / "precious.txt").read_text() == "keep me"


def test_manifest_has_no_pickle_and_loads_without_faiss_objects(saved):
    names = set(read_manifest(saved)["files"])
    assert names == {"index.faiss", "ids.npy", "alive.npy", "in_stock.npy", "segment_code.npy"}
    for name in names - {"index.faiss"}:
        np.load(saved / name, allow_pickle=False)  # plain arrays only
