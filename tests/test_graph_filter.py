"""The graph-filter channel on a tiny graph with a dense numpy reference, its save/load, bad input, and a small
run of ``recsys benchmark graph-filter``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ArtifactError, ConfigError, DataValidationError
from recsys.models.graph_filter import GraphFilter

# 4 users x 5 items; item 4 has no interaction (a zero-degree item), user 3 saw every other item.
R = np.array([[1, 1, 0, 0, 0],
              [0, 1, 1, 0, 0],
              [1, 0, 1, 1, 0],
              [1, 1, 1, 1, 0]], dtype=np.float64)
# float32 sums of at most a few dozen terms of size <= ~2: the rounding error is a few float32 eps (1.2e-7)
# times the largest value, far below 1e-6; the polynomial (RK4) responses reach ~2, so 1e-5 there.
TOL, TOL_RK4 = 1e-6, 1e-5


def dense_filter(ideal_weight: float = 0.0, rank: int = 2, sharpen: float = 0.0, method: str = "euler") -> np.ndarray:
    """The item x item filter written out with dense float64 numpy: the formula of the module docstring."""
    du, di = R.sum(1), R.sum(0)
    inv = np.where(di > 0, 1 / np.sqrt(np.maximum(di, 1)), 0)
    norm = R / np.sqrt(du)[:, None] * inv[None, :]
    p = norm.T @ norm
    h = p.copy()
    if ideal_weight:
        v = np.linalg.svd(norm)[2][:rank].T
        h += ideal_weight * np.diag(inv) @ v @ v.T @ np.diag(np.sqrt(di))
    if sharpen:
        hp = sharpen * p
        eye = np.eye(p.shape[0])
        h = h @ (eye - hp if method == "euler" else eye - hp + hp @ hp / 2 - hp @ hp @ hp / 6 + hp @ hp @ hp @ hp / 24)
    return h


def dense_reference(*args, **kwargs) -> np.ndarray:
    """Every user's scores: their row of R times the filter."""
    return R @ dense_filter(*args, **kwargs)


@pytest.mark.parametrize("chunk", [1, 3, 100])
@pytest.mark.parametrize("params", [{"ideal_weight": 0.0}, {"ideal_weight": 0.3, "ideal_rank": 2},
                                    {"ideal_weight": 0.3, "ideal_rank": 2, "sharpen": 0.5},
                                    {"ideal_weight": 0.2, "ideal_rank": 2, "sharpen": 2.5, "sharpen_method": "rk4"}])
def test_chunked_scores_equal_the_dense_formula(params, chunk):
    model = GraphFilter(**params, chunk_size=chunk).fit(sp.csr_matrix(R))
    got = model.scores(np.arange(4))
    ref = dense_reference(params["ideal_weight"], params.get("ideal_rank", 2), params.get("sharpen", 0.0),
                          params.get("sharpen_method", "euler"))
    assert got.dtype == np.float32 and got.shape == (4, 5)
    np.testing.assert_allclose(got, ref, atol=TOL_RK4 if "sharpen_method" in params else TOL, rtol=0)
    np.testing.assert_allclose(model.scores([2, 0]), ref[[2, 0]], atol=TOL_RK4, rtol=0)  # any order, any subset


def test_linear_filter_by_hand():
    # user 0 (items 0, 1): r P~ at item 2 = sum over users u of R~[u,0..1] R~[u,2], worked out by hand:
    # degrees: users (2, 2, 3, 4), items (3, 3, 3, 2, 0); user 1 gives 1/(sqrt2 sqrt3) * 1/(sqrt2 sqrt3) = 1/6,
    # user 2: 1/(sqrt3 sqrt3)^2 = 1/9, user 3: 2 * (1/(2 sqrt3))^2 = 1/6 (items 0 and 1 both reach item 2 there).
    got = GraphFilter(ideal_weight=0.0).fit(sp.csr_matrix(R)).scores([0])[0, 2]
    assert got == pytest.approx(1 / 6 + 1 / 9 + 1 / 6, abs=TOL)


def test_index_arrays_fit_the_same_filter_as_a_matrix():
    users, items = np.nonzero(R)
    a = GraphFilter(ideal_weight=0.3, ideal_rank=2).fit((users, items), n_items=5)  # item 4: no pair
    b = GraphFilter(ideal_weight=0.3, ideal_rank=2).fit(sp.csr_matrix(R))
    # two inputs built into the graph by different paths (pairs -> COO -> CSR, or CSR as given): the sparse
    # products may add in another order, so float32 scores (about 1 in size) agree to rounding, not bit for bit
    np.testing.assert_allclose(a.scores(np.arange(4)), b.scores(np.arange(4)), rtol=0, atol=1e-6)


def test_top_k_excludes_seen_items_and_pads():
    model = GraphFilter(ideal_weight=0.3, ideal_rank=2).fit(sp.csr_matrix(R))
    ref = dense_reference(0.3, 2)
    ids, vals = model.top_k(np.arange(4), k=3)
    for u in range(4):
        seen = set(np.flatnonzero(R[u]))
        kept = [i for i in ids[u] if i >= 0]
        assert not seen & set(kept)
        unseen = [i for i in np.argsort(-ref[u], kind="stable") if i not in seen][:3]
        assert sorted(kept) == sorted(unseen)  # the best unseen items (ties on exact zero broken either way)
    assert list(ids[3]) == [4, -1, -1] and np.isneginf(vals[3, 1:]).all()  # user 3 saw 4 of the 5 items
    ids_all, _ = model.top_k([3], k=2, exclude_seen=False)
    assert set(ids_all[0]) <= {0, 1, 2, 3}


def test_item_neighbours_never_self_and_follow_the_filter():
    model = GraphFilter(ideal_weight=0.3, ideal_rank=2).fit(sp.csr_matrix(R))
    ids, vals = model.item_neighbours(2)
    h = dense_filter(0.3, 2)  # row i: the response to a user who saw item i alone
    for i in range(4):
        assert i not in ids[i]
        row = h[i].copy()
        row[i] = -np.inf
        np.testing.assert_allclose(vals[i], np.sort(row)[::-1][:2], atol=TOL)
        np.testing.assert_allclose(h[i, ids[i]], vals[i], atol=TOL)
    assert list(ids[4]) == [-1, -1]  # no one interacted with item 4: no neighbours


def test_save_load_round_trip_is_exact(tmp_path):
    model = GraphFilter(ideal_weight=0.3, ideal_rank=2, sharpen=0.5, chunk_size=2).fit(sp.csr_matrix(R))
    model.save(tmp_path / "gf")
    back = GraphFilter.load(tmp_path / "gf")
    assert back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.singular_vectors_, model.singular_vectors_)
    # the same stored arrays through the same code: bit-identical scores
    np.testing.assert_array_equal(back.scores(np.arange(4)), model.scores(np.arange(4)))
    model.save(tmp_path / "gf")  # overwriting a saved filter is allowed (atomic switch)
    assert GraphFilter.load(tmp_path / "gf").n_items_ == 5


def test_load_refuses_corrupt_or_missing(tmp_path):
    with pytest.raises(ArtifactError, match="no saved graph filter"):
        GraphFilter.load(tmp_path / "nothing")
    path = GraphFilter(ideal_weight=0.0).fit(sp.csr_matrix(R)).save(tmp_path / "gf")
    tensors = path / "graph_filter.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 1
    tensors.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        GraphFilter.load(path)
    (path / "graph_filter.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        GraphFilter.load(path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        GraphFilter(ideal_weight=0.0).fit(sp.csr_matrix(R)).save(tmp_path / "other")


@pytest.mark.parametrize("bad", [
    (np.array([0, 1]), np.array([0])),           # lengths differ
    (np.array([0, -1]), np.array([0, 1])),        # negative index
    (np.array([0.5, 1.0]), np.array([0, 1])),     # not integers
    (np.array([], dtype=int), np.array([], dtype=int)),  # empty
    sp.csr_matrix(np.array([[np.nan, 1.0]])),     # NaN
    sp.csr_matrix(np.array([[-1.0, 1.0]])),       # negative value
    sp.csr_matrix((3, 4)),                        # no interaction
    [[0, 1, 2]],                                  # neither a matrix nor two arrays
])
def test_bad_interactions_are_data_validation_errors(bad):
    with pytest.raises(DataValidationError):
        GraphFilter(ideal_weight=0.0).fit(bad)


def test_bad_rows_and_parameters():
    model = GraphFilter(ideal_weight=0.0).fit(sp.csr_matrix(R))
    with pytest.raises(DataValidationError, match="user_rows"):
        model.scores([4])
    with pytest.raises(DataValidationError, match="user_rows"):
        model.top_k([-1], 2)
    with pytest.raises(ConfigError):
        model.top_k([0], 0)
    for params in ({"ideal_weight": -1.0}, {"ideal_rank": 0}, {"sharpen_method": "rk5"}, {"chunk_size": 1.5}):
        with pytest.raises(ConfigError):
            GraphFilter(**params)
    with pytest.raises(ConfigError, match="fit a new one"):
        model.with_params(ideal_weight=0.3)


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "retrieval" / "gowalla"


@pytest.mark.skipif(not (SHARED / "train.txt").is_file(), reason=f"{SHARED} is absent (the public splits live outside "
                    "the repository)")
def test_benchmark_command_on_a_slice_of_gowalla(tmp_path):
    from typer.testing import CliRunner

    from recsys.cli import app

    # the first 120 users of Gowalla, items renumbered among those they trained on (test items outside dropped)
    train = [list(map(int, line.split())) for line in (SHARED / "train.txt").read_text().splitlines()[:120]]
    test = [list(map(int, line.split())) for line in (SHARED / "test.txt").read_text().splitlines()[:120]]
    items = {i: n for n, i in enumerate(sorted({i for row in train for i in row[1:]}))}
    out = tmp_path / "slice"
    out.mkdir()
    (out / "train.txt").write_text("\n".join(" ".join(map(str, [r[0], *[items[i] for i in r[1:]]])) for r in train))
    (out / "test.txt").write_text("\n".join(" ".join(map(str, [r[0], *[items[i] for i in r[1:] if i in items]]))
                                            for r in test))
    js, md = tmp_path / "gf.json", tmp_path / "gf.md"
    res = CliRunner().invoke(app, ["benchmark", "graph-filter", "--data-dir", str(out), "--json", str(js),
                                   "--md", str(md)])
    assert res.exit_code == 0, res.output
    entry = json.loads(js.read_text())["datasets"]["slice"]
    assert set(entry["variants"]) == {"linear", "gf-cf", "bspm"}
    for row in entry["variants"].values():
        assert 0 < row["recall@20"] <= 1 and row["fit_seconds"] >= 0 and row["score_seconds"] > 0
    assert entry["variants"]["gf-cf"]["params"]["ideal_weight"] in (0.1, 0.2, 0.3, 0.5)  # chosen on validation
    assert "recall@20" in entry["implicit-als"] or "error" in entry["implicit-als"]
    text = md.read_text()
    assert "quoted from issue 20, not rerun" in text and "| gf-cf |" in text
    bad = CliRunner().invoke(app, ["benchmark", "graph-filter", "--data-dir", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "error:" in bad.output
