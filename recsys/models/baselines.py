"""Baselines every model is compared with on the same protocol: most popular, random, implicit's ALS.

Each follows the Scorer interface of :mod:`recsys.evaluation` (``score(user_indices)`` returns a
(len(users), n_items) float32 block); constructors store hyperparameters and ``fit(train)`` learns.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.errors import DataValidationError, MissingDependencyError, RecsysError
from recsys.params import hyperparameters


def _check_train(train) -> sp.csr_matrix:
    if not sp.issparse(train) or train.ndim != 2:
        raise DataValidationError(
            f"fit expects a scipy.sparse users x items matrix; got {type(train).__name__}.\n"
            "Fix: pass LightGCNDataset.train_matrix()."
        )
    return sp.csr_matrix(train)


class _Fitted:
    def get_params(self) -> dict:
        """The constructor's hyperparameters as a plain dict (:func:`recsys.params.hyperparameters`; for reports)."""
        return hyperparameters(self)

    def _require_fit(self) -> None:
        if not hasattr(self, "n_items_"):
            raise RecsysError(f"{type(self).__name__} is not fitted yet.\nFix: call .fit(train) first.")

    def scorer(self):
        """The Scorer that evaluates this model (the model itself unless it has a faster one)."""
        self._require_fit()
        return self


class MostPopular(_Fitted):
    """Scores every item by the number of training users who interacted with it (same list for everyone)."""

    thread_safe = True  # score() only reads fitted state

    def fit(self, train: sp.spmatrix) -> MostPopular:
        train = _check_train(train)
        self.item_popularity_ = np.asarray((train != 0).sum(axis=0)).ravel().astype(np.float32)
        self.n_items_ = train.shape[1]
        return self

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        self._require_fit()
        return np.tile(self.item_popularity_, (len(np.atleast_1d(user_indices)), 1))


class RandomRecommender(_Fitted):
    """Uniform random scores; the same user gets the same scores on every call for a given ``seed``."""

    thread_safe = True  # one generator per user and call, no shared state

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: sp.spmatrix) -> RandomRecommender:
        self.n_items_ = _check_train(train).shape[1]
        return self

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        self._require_fit()
        users = np.atleast_1d(np.asarray(user_indices, dtype=np.int64))
        out = np.empty((users.size, self.n_items_), dtype=np.float32)
        for row, user in enumerate(users):
            out[row] = np.random.default_rng((self.seed, int(user))).random(self.n_items_, dtype=np.float32)
        return out


class ImplicitALS(_Fitted):
    """Weighted matrix factorisation by alternating least squares, from the ``implicit`` package (CPU).

    Observed entries r get preference 1 and confidence ``alpha * r``, unobserved ones preference 0 and
    confidence 1 (implicit >= 0.5's convention; Hu, Koren & Volinsky 2008 use ``1 + alpha * r``).
    ``num_threads=0`` uses every core. Scores are inner products of the learned factors.
    """

    thread_safe = True

    def __init__(self, *, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0,
                 iterations: int = 15, num_threads: int = 0, seed: int = 0) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.num_threads = num_threads
        self.seed = seed

    def fit(self, train: sp.spmatrix, *, show_progress: bool = False) -> ImplicitALS:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as e:
            raise MissingDependencyError(
                "ImplicitALS needs the `implicit` package: pip install 'implicit>=0.7' "
                "(or pip install 'recsys[bench]')."
            ) from e
        from threadpoolctl import threadpool_limits

        train = _check_train(train).astype(np.float32)
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it down
            model = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, num_threads=self.num_threads, random_state=self.seed,
            )
            model.fit(train, show_progress=show_progress)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.n_items_ = train.shape[1]
        return self

    def scorer(self):
        """An EmbeddingScorer over the learned factors (usable with an ANN index)."""
        from recsys.evaluation.topk import EmbeddingScorer

        self._require_fit()
        return EmbeddingScorer(self.user_factors_, self.item_factors_)

    def score(self, user_indices: np.ndarray) -> np.ndarray:
        return self.scorer().score(user_indices)
