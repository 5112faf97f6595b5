"""Embeddings with realistic structure for the index benchmark.

Item and user vectors are implicit-ALS factors (dimension 64) of a public split (Gowalla, the
LightGCN train file); a two-tower model's embeddings can replace them later. Larger catalogues
add items drawn from a clustered generator fitted once to the real item factors: k-means centres,
a shrunk full covariance per cluster and the cluster sizes as weights (isotropic Gaussian noise
would make every index look better than it is on real data). Queries are the real ALS user factors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def als_factors(data_dir: str | Path, *, dim: int = 64, iterations: int = 15, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of implicit ALS on the split's training interactions, float32."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from recsys.datasets.lightgcn import load_lightgcn

    matrix = load_lightgcn(data_dir).train_matrix().tocsr()
    with threadpool_limits(1, "blas"), warnings.catch_warnings():  # implicit's advice: one BLAS thread
        warnings.simplefilter("ignore", RuntimeWarning)
        # regularization/alpha: the values tuned on a validation split for the baseline table (bench/baselines.py)
        model = AlternatingLeastSquares(factors=dim, iterations=iterations, regularization=10.0, alpha=50.0,
                                        random_state=seed, num_threads=2, calculate_training_loss=False)
        model.fit(matrix, show_progress=False)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    return users[np.linalg.norm(users, axis=1) > 0], items


@dataclass
class ClusteredGenerator:
    """A mixture fitted to real vectors: directions from a Gaussian per k-means cluster (centre + shrunk
    full covariance, on unit vectors), lengths resampled from the cluster members' own norms, so
    the heavy tail of popular items' norms (which decides inner-product top lists) is kept."""

    n_clusters: int = 256
    seed: int = 0
    weights_: np.ndarray = field(default=None, repr=False)
    means_: np.ndarray = field(default=None, repr=False)
    chol_: np.ndarray = field(default=None, repr=False)
    norms_: list = field(default=None, repr=False)

    def fit(self, x: np.ndarray) -> ClusteredGenerator:
        from recsys.index._faiss import import_faiss

        faiss = import_faiss()

        x = np.ascontiguousarray(x, dtype=np.float32)
        norms = np.linalg.norm(x, axis=1)
        keep_rows = norms > 0
        x, norms = x[keep_rows], norms[keep_rows]
        unit = x / norms[:, None]
        n, d = unit.shape
        km = faiss.Kmeans(d, self.n_clusters, niter=20, seed=self.seed, max_points_per_centroid=10_000)
        km.train(unit)
        _, assign = km.index.search(unit, 1)
        assign = assign[:, 0]
        counts = np.bincount(assign, minlength=self.n_clusters)
        keep = np.flatnonzero(counts >= 2)
        self.weights_ = counts[keep] / counts[keep].sum()
        self.means_ = np.zeros((len(keep), d), np.float32)
        self.chol_ = np.zeros((len(keep), d, d), np.float32)
        self.norms_ = []
        for j, c in enumerate(keep):
            members = unit[assign == c].astype(np.float64)
            mu = members.mean(axis=0)
            cov = np.cov(members - mu, rowvar=False)
            shrink = float(np.clip(d / len(members), 0.1, 1.0))  # few members: lean on the diagonal
            cov = (1 - shrink) * cov + shrink * np.diag(np.diag(cov)) + 1e-10 * np.eye(d)
            self.means_[j], self.chol_[j] = mu, np.linalg.cholesky(cov)
            self.norms_.append(norms[assign == c].astype(np.float32))
        return self

    def sample(self, n: int, seed: int = 0, chunk: int = 1_000_000, out: np.ndarray | None = None) -> np.ndarray:
        """``n`` vectors (float32), cluster by cluster weights, generated chunk by chunk (into ``out`` if given)."""
        rng = np.random.default_rng(seed)
        d = self.means_.shape[1]
        out = np.empty((n, d), np.float32) if out is None else out
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            comp = rng.choice(len(self.weights_), size=m, p=self.weights_)
            order = np.argsort(comp, kind="stable")
            bounds = np.searchsorted(comp[order], np.arange(len(self.weights_) + 1))
            block = out[start:start + m]
            for j in range(len(self.weights_)):
                rows = order[bounds[j]:bounds[j + 1]]
                if not len(rows):
                    continue
                z = rng.standard_normal((len(rows), d), dtype=np.float32)
                v = self.means_[j] + z @ self.chol_[j].T
                v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                r = rng.choice(self.norms_[j], size=len(rows)) * np.exp(0.05 * rng.standard_normal(len(rows)))
                block[rows] = v * r[:, None].astype(np.float32)
        return out


def catalogue(n: int, real_items: np.ndarray, generator: ClusteredGenerator, seed: int = 0) -> np.ndarray:
    """``n`` item vectors: the real ones (a random subset when ``n`` is smaller) plus generated ones."""
    rng = np.random.default_rng(seed)
    if n <= len(real_items):
        return np.ascontiguousarray(real_items[np.sort(rng.choice(len(real_items), n, replace=False))])
    out = np.empty((n, real_items.shape[1]), np.float32)
    out[:len(real_items)] = real_items
    generator.sample(n - len(real_items), seed=seed + 1, out=out[len(real_items):])  # in place: no 2nd copy
    return out


def fidelity(real_items: np.ndarray, generator: ClusteredGenerator, queries: np.ndarray, seed: int = 0) -> dict:
    """How the generator compares with the real items: norms and the queries' top-100 scores."""
    from recsys.index._faiss import import_faiss

    faiss = import_faiss()

    fake = generator.sample(len(real_items), seed=seed + 7)
    out = {}
    for name, x in (("real", real_items), ("generated", fake)):
        scores, _ = faiss.knn(queries, x, 100, metric=faiss.METRIC_INNER_PRODUCT)
        norms = np.linalg.norm(x, axis=1)
        out[name] = {"norm_mean": float(norms.mean()), "norm_std": float(norms.std()),
                     "top1_score_mean": float(scores[:, 0].mean()), "top100_score_mean": float(scores[:, 99].mean())}
    return out
