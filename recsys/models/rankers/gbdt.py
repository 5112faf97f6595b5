"""Gradient-boosted trees per target (scikit-learn HistGradientBoosting), saved without pickle.

One classifier learns P(click | impression) on all impressions, a second P(purchase | click) on the
clicked rows; raw pCTCVR = pCTR x pCVR, then both are calibrated (see :mod:`.base`). Only numeric
columns are used (id columns are left to the embedding ranker). After ``fit`` the trees are exported
to flat arrays and every prediction — before and after a save/load round trip — walks those arrays,
so loading a GBDT needs neither pickle nor scikit-learn's private classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from recsys.errors import ArtifactError, ConfigError, DataValidationError
from recsys.models.rankers.base import CalibratedRanker, numeric_matrix, resolve_columns

_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf")


class TreeEnsemble:
    """A binary HistGradientBoosting model as flat arrays: baseline + sum of leaf values -> sigmoid."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    @classmethod
    def from_sklearn(cls, model) -> TreeEnsemble:
        """Export a fitted binary ``HistGradientBoostingClassifier`` (or a constant, for one-class data)."""
        if isinstance(model, float):
            return cls({"baseline": np.array([model]), "roots": np.zeros(0, np.int64),
                        **{f: np.zeros(0, np.float64 if f in ("value", "num_threshold") else np.int64) for f in _FIELDS}})
        if getattr(model, "n_trees_per_iteration_", 1) != 1:
            raise ArtifactError("only binary HistGradientBoosting models can be exported.")
        if any(p.nodes["is_categorical"].any() for it in model._predictors for p in it):
            raise ArtifactError("categorical splits are not exportable; give the GBDT numeric columns only.")
        parts, roots, offset = {f: [] for f in _FIELDS}, [], 0
        for iteration in model._predictors:
            nodes = iteration[0].nodes
            roots.append(offset)
            for f in _FIELDS:
                col = nodes[f].astype(np.int64) if f not in ("value", "num_threshold") else nodes[f].astype(np.float64)
                parts[f].append(col + offset if f in ("left", "right") else col)
            offset += len(nodes)
        arrays = {f: np.concatenate(parts[f]) if parts[f] else np.zeros(0) for f in _FIELDS}
        arrays["roots"] = np.asarray(roots, dtype=np.int64)
        arrays["baseline"] = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)[:1]
        return cls(arrays)

    def decision_function(self, X: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Raw log-odds for each row of X (float64, NaN = missing), walking all trees level by level."""
        a = self.arrays
        out = np.full(len(X), float(a["baseline"][0]))
        roots = a["roots"]
        if len(roots) == 0:
            return out
        feat, thr, miss_left = a["feature_idx"], a["num_threshold"], a["missing_go_to_left"].astype(bool)
        left, right, leaf, value = a["left"], a["right"], a["is_leaf"].astype(bool), a["value"]
        for start in range(0, len(X), chunk):
            x = X[start:start + chunk]
            node = np.broadcast_to(roots, (len(x), len(roots))).copy()
            rows = np.arange(len(x))[:, None]
            while True:
                active = ~leaf[node]
                if not active.any():
                    break
                v = x[rows, feat[node]]
                go_left = np.where(np.isnan(v), miss_left[node], v <= thr[node])
                node = np.where(active, np.where(go_left, left[node], right[node]), node)
            out[start:start + chunk] += value[node].sum(axis=1)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1) for each row."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))


class GBDTRanker(CalibratedRanker):
    """HistGradientBoosting per target (click on impressions, purchase on clicks), calibrated.

    Hyperparameters are passed to scikit-learn's ``HistGradientBoostingClassifier`` (``lr`` as its
    ``learning_rate``, ``seed`` as its ``random_state``); ``exclude`` names
    numeric columns not to use (e.g. for an ablation); ``num_threads`` limits OpenMP threads while fitting.
    """

    kind = "gbdt"
    predicts_arrays = True

    def __init__(self, *, max_iter: int = 200, lr: float = 0.1, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 50, l2_regularization: float = 1.0, early_stopping: bool = True,
                 categorical: Sequence[str] | None = None, exclude: Sequence[str] = (),
                 calibration: str = "platt", calibration_fraction: float = 0.2, check_leakage: bool = True,
                 seed: int = 0, num_threads: int | None = None) -> None:
        self.max_iter = max_iter
        self.lr = lr
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.early_stopping = early_stopping
        self.categorical = categorical
        self.exclude = exclude
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.check_leakage = check_leakage
        self.seed = seed
        self.num_threads = num_threads

    def _classifier(self, early_stopping: bool):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.lr, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            early_stopping=early_stopping, validation_fraction=0.1, n_iter_no_change=10,
            random_state=self.seed)

    def _fit_raw(self, frame: pd.DataFrame, click: np.ndarray, purchase: np.ndarray) -> None:
        _, numeric = resolve_columns(frame, self.categorical)
        self.columns_ = [c for c in numeric if c not in set(self.exclude)]
        X = numeric_matrix(frame, self.columns_, np.float64)
        self.ctr_ = self._fit_one(X, click)
        clicked = click > 0
        self.cvr_ = self._fit_one(X[clicked], purchase[clicked])

    def _fit_one(self, X: np.ndarray, y: np.ndarray) -> TreeEnsemble:
        if len(y) == 0 or y.min() == y.max():  # one class only: a constant, smoothed rate
            rate = (y.sum() + 0.5) / (len(y) + 1.0)
            return TreeEnsemble.from_sklearn(float(np.log(rate / (1 - rate))))
        from threadpoolctl import threadpool_limits

        # early stopping holds out 10% stratified: only when the rarer class can spare enough rows
        early = self.early_stopping and min(y.sum(), len(y) - y.sum()) >= 50
        with threadpool_limits(limits=self.num_threads):
            return TreeEnsemble.from_sklearn(self._classifier(early).fit(X, y))

    def _predict_raw(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self._predict_raw_matrix(numeric_matrix(frame, self.columns_, np.float64))

    def _predict_raw_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        forest = getattr(self, "_forest", None)
        if forest is None or forest[0] is not self.ctr_ or forest[1] is not self.cvr_:
            from recsys.models.rankers.forest import CompiledForest

            forest = self._forest = (self.ctr_, self.cvr_, CompiledForest([self.ctr_, self.cvr_], len(self.columns_)))
        ctr, cvr = forest[2].decision_functions(X)
        pctr = 1.0 / (1.0 + np.exp(-ctr))
        return pctr, pctr * (1.0 / (1.0 + np.exp(-cvr)))

    def predict_arrays(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated ``(pctr, pcvr, pctcvr)`` for a matrix whose columns are ``columns_`` (float64 or float32 as
        stored, in either memory order; NaN = missing): :meth:`predict_proba` without the DataFrames, for serving."""
        if not hasattr(self, "calibration_"):
            raise ConfigError("GBDTRanker.predict_arrays called before fit().")
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.columns_):
            raise DataValidationError(f"X has shape {X.shape}; expected (rows, {len(self.columns_)}) with the "
                                      "columns in columns_ order")
        return self.calibration_.apply_arrays(*self._predict_raw_matrix(X))

    def _save_model(self, path: Path) -> dict:
        for name, ens in (("ctr", self.ctr_), ("cvr", self.cvr_)):
            save_file({k: np.ascontiguousarray(v) for k, v in ens.arrays.items()}, str(path / f"gbdt_{name}.safetensors"))
        return {"columns": self.columns_}

    def _load_model(self, path: Path, state: dict) -> None:
        self.columns_ = list(state["columns"])
        try:
            self.ctr_ = TreeEnsemble(load_file(str(path / "gbdt_ctr.safetensors")))
            self.cvr_ = TreeEnsemble(load_file(str(path / "gbdt_cvr.safetensors")))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: GBDT tree arrays are missing or corrupt ({exc}).") from exc
