"""The index benchmark runs end to end on small given embeddings and writes JSON, table and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.bench.index import run_index_benchmark
from recsys.bench.index_data import ClusteredGenerator, catalogue
from tests.test_index_recall import clustered


def test_generator_keeps_cluster_structure_and_norms():
    real = clustered(4000, d=16, n_clusters=12, seed=3)
    gen = ClusteredGenerator(n_clusters=12, seed=0).fit(real)
    fake = gen.sample(4000, seed=1)
    assert fake.shape == real.shape and np.isfinite(fake).all()
    rn, fn = np.linalg.norm(real, axis=1), np.linalg.norm(fake, axis=1)
    assert abs(rn.mean() - fn.mean()) < 0.1 * rn.mean() and abs(rn.std() - fn.std()) < 0.25 * rn.std()
    # clustered, not isotropic: directions concentrate like the real ones (mean |cos| to the top direction)
    top = np.linalg.svd(real - real.mean(0), full_matrices=False)[2][0]
    cos = lambda x: np.abs(x @ top / np.linalg.norm(x, axis=1)).mean()  # noqa: E731
    assert abs(cos(real) - cos(fake)) < 0.1
    big = catalogue(5000, real, gen, seed=0)
    np.testing.assert_array_equal(big[:4000], real)  # the real items come first, then generated ones


@pytest.mark.filterwarnings("ignore:.*below the target")  # HNSW16 on harsh inner-product data: reported, not hidden
def test_benchmark_writes_figures(tmp_path):
    items, users = clustered(3000, d=16, n_clusters=12, seed=4, n_queries=400)
    result = run_index_benchmark(6000, out_dir=tmp_path, factories=["Flat", "HNSW16", "IVF32,Flat"], n_eval=100,
                                 n_tune=100, n_latency=20, n_filtered=50, embeddings=(users, items))
    rows = {r["factory"]: r for r in result["indexes"]}
    assert set(rows) == {"Flat", "HNSW16", "IVF32,Flat"}
    # exactly 1: unfiltered Flat search and the faiss.knn oracle are one computation (the same BLAS inner
    # products of the same float32 arrays and queries, no selector), so even near-ties come out alike
    assert rows["Flat"]["recall@100"] == 1.0 and rows["IVF32,Flat"]["recall@100"] >= 0.9
    assert rows["HNSW16"]["recall@100"] == pytest.approx(rows["HNSW16"]["tuned_recall"], abs=0.1)
    for r in rows.values():
        for f in r["filtered"].values():
            assert f["always_k"] and f["recall@100"] >= 0.9
        assert r["p50_ms"] > 0 and r["batch_qps"] > 0 and r["memory_mb"] > 0 and r["speedup_vs_exact_p50"] > 0
    saved = json.loads((tmp_path / "index_6000.json").read_text())
    assert saved["n_items"] == 6000 and saved["indexes"][0]["factory"] == "Flat"
    readme = (tmp_path / "README.md").read_text()
    assert "| 6,000 | HNSW16 |" in readme and "recsys benchmark index --items 6000" in readme
    assert (tmp_path / "growth.png").stat().st_size > 10_000
