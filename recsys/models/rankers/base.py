"""The ranker interface, documented once, and the machinery every ranker shares.

A **ranker** scores (user, candidate, context) rows — one row per impression, the columns a
feature frame from :mod:`recsys.features.ranking_features` — and returns calibrated probabilities:

``fit(frame, labels) -> self``
    ``frame``: a DataFrame, one row per impression, in time order (the last
    ``calibration_fraction`` of rows is held out to fit the calibration). Numeric columns are
    features; categorical id columns (``categorical=``, or by default the object/category/string
    columns) are embedded by rankers that use ids. ``labels``: a DataFrame or mapping with 0/1
    ``click`` and ``purchase`` per row (a purchase implies a click). Before training the frame goes
    through :func:`recsys.features.ranking_features.check_feature_leakage`: a label or a post-event
    column among the features raises :class:`recsys.errors.LeakageError`.
``predict_proba(frame) -> DataFrame``
    columns ``pctr`` = P(click | impression), ``pcvr`` = P(purchase | click) and
    ``pctcvr`` = P(click and purchase | impression) = pctr x pcvr, each in [0, 1] and calibrated
    (Platt or isotonic on the held-out slice; see :mod:`.calibration`); ``calibrated=False`` gives
    the raw model outputs.
``predict_arrays(X) -> (pctr, pcvr, pctcvr)``
    only where the class declares ``predicts_arrays = True`` (GBDT): the calibrated outputs for a plain
    float64 matrix whose columns are ``columns_``, without DataFrames (the serving fast path).
``save(path)`` / ``load(path)``
    a directory with ``ranker.json`` (kind, format version, hyperparameters, columns),
    ``calibration.json`` and the model's arrays as safetensors; loading runs no pickle and
    :func:`recsys.models.rankers.registry.load_ranker` picks the right class from ``ranker.json``.

Fixed seeds make ``fit`` deterministic: the same frame and seed give the same predictions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from recsys.errors import ArtifactError, ConfigError, DataValidationError
from recsys.models.rankers.calibration import RankerCalibration
from recsys.params import hyperparameters

FORMAT_VERSION = 1
OUTPUTS = ("pctr", "pcvr", "pctcvr")
# hyperparameters renamed after format 1 was first written (old name -> name now): read on load
RENAMED_PARAMS = {"learning_rate": "lr", "random_state": "seed", "embedding_dim": "dim"}


@runtime_checkable
class Ranker(Protocol):
    """See the module docstring: fit(frame, labels), predict_proba(frame) -> pctr/pcvr/pctcvr, save, load;
    ``kind`` names it in :mod:`.registry` and ``predicts_arrays`` says whether it has ``predict_arrays``."""

    kind: str
    predicts_arrays: bool

    def fit(self, frame: pd.DataFrame, labels: pd.DataFrame | Mapping[str, Any]) -> Ranker: ...

    def predict_proba(self, frame: pd.DataFrame, *, calibrated: bool = True) -> pd.DataFrame: ...

    def save(self, path: str | Path) -> Path: ...


def check_labels(frame: pd.DataFrame, labels: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """0/1 ``click`` and ``purchase`` arrays aligned with ``frame``; clear errors otherwise."""
    if not isinstance(frame, pd.DataFrame) or len(frame) == 0:
        raise DataValidationError(f"rankers take a non-empty pandas DataFrame of features, got "
                                  f"{type(frame).__name__} with {len(frame) if hasattr(frame, '__len__') else '?'} rows.")
    out = []
    for name in ("click", "purchase"):
        if name not in labels:
            raise DataValidationError(f"labels lack '{name}'; pass a DataFrame or dict with 0/1 'click' and "
                                      "'purchase' per impression row.")
        y = np.asarray(labels[name], dtype=np.float64)
        if y.shape != (len(frame),):
            raise DataValidationError(f"labels['{name}'] has shape {y.shape}; expected ({len(frame)},), one per row.")
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataValidationError(f"labels['{name}'] holds values other than 0/1, e.g. "
                                      f"{np.unique(y[~np.isin(y, (0.0, 1.0))])[:5].tolist()}.")
        out.append(y.astype(np.float32))
    click, purchase = out
    bad = (purchase > click)
    if bad.any():
        raise DataValidationError(f"{int(bad.sum())} row(s) have purchase=1 but click=0 (first rows "
                                  f"{np.flatnonzero(bad)[:5].tolist()}); a purchase must follow a click on the "
                                  "impression — attribute it to its click or set click=1.")
    return click, purchase


def resolve_columns(frame: pd.DataFrame, categorical: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(categorical, numeric) feature columns of a frame."""
    if categorical is None:
        categorical = [c for c in frame.columns if not (pd.api.types.is_numeric_dtype(frame[c].dtype)
                                                        or pd.api.types.is_bool_dtype(frame[c].dtype))]
    missing = [c for c in categorical if c not in frame.columns]
    if missing:
        raise DataValidationError(f"categorical column(s) {missing} are not in the frame (columns: {list(frame.columns)}).")
    numeric = [c for c in frame.columns if c not in categorical]
    bad = [c for c in numeric if not (pd.api.types.is_numeric_dtype(frame[c].dtype)
                                      or pd.api.types.is_bool_dtype(frame[c].dtype))]
    if bad:
        raise DataValidationError(f"column(s) {bad} are neither numeric nor declared categorical; pass "
                                  "categorical=[...] or convert them.")
    return list(categorical), numeric


def numeric_matrix(frame: pd.DataFrame, numeric: Sequence[str], dtype=np.float32) -> np.ndarray:
    """The numeric feature columns as a dense matrix; a column the ranker was fitted with must be present."""
    missing = [c for c in numeric if c not in frame.columns]
    if missing:
        raise DataValidationError(f"frame lacks feature column(s) {missing[:10]} the ranker was fitted with; build "
                                  "it with the same feature builder settings.")
    return frame[list(numeric)].to_numpy(dtype=dtype, na_value=np.nan)


class CalibratedRanker:
    """Shared fit / predict_proba / save skeleton: subclasses implement ``_fit_raw``, ``_predict_raw``,
    ``_save_model`` and ``_load_model``; constructors take keyword-only hyperparameters and store them as
    public attributes of the same names (:meth:`get_params` reads them back)."""

    kind = "abstract"
    predicts_arrays = False  # True where the subclass implements predict_arrays(X) (see the module docstring)
    calibration: str
    calibration_fraction: float
    check_leakage: bool

    def get_params(self) -> dict[str, Any]:
        """The constructor's hyperparameters (:func:`recsys.params.hyperparameters`): what ``ranker.json``
        stores and ``cls(**params)`` rebuilds."""
        return hyperparameters(self)

    def fit(self, frame: pd.DataFrame, labels: pd.DataFrame | Mapping[str, Any]) -> CalibratedRanker:
        """Train on the first rows and calibrate on the last ``calibration_fraction`` (time order)."""
        click, purchase = check_labels(frame, labels)
        if self.check_leakage:
            from recsys.features.ranking_features import check_feature_leakage

            check_feature_leakage(frame, {"click": click, "purchase": purchase})
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ConfigError(f"calibration_fraction must be in [0, 1), got {self.calibration_fraction}.")
        n_cal = int(round(len(frame) * self.calibration_fraction))
        n_fit = len(frame) - n_cal
        self._fit_raw(frame.iloc[:n_fit], click[:n_fit], purchase[:n_fit])
        self.calibration_ = RankerCalibration(self.calibration if n_cal else "none")
        cal = frame.iloc[n_fit:] if n_cal else frame.iloc[:0]
        raw = self._predict_raw(cal) if n_cal else (np.zeros(0), np.zeros(0))
        self.calibration_.fit(raw[0], raw[1], click[n_fit:], purchase[n_fit:])
        return self

    def predict_proba(self, frame: pd.DataFrame, *, calibrated: bool = True) -> pd.DataFrame:
        """``pctr``, ``pcvr``, ``pctcvr`` per row (index aligned with ``frame``)."""
        if not hasattr(self, "calibration_"):
            raise ConfigError(f"{type(self).__name__}.predict_proba called before fit().")
        pctr, pctcvr = self._predict_raw(frame)
        if calibrated:
            out = self.calibration_.apply(pctr, pctcvr)
        else:
            pcvr = np.clip(pctcvr / np.maximum(pctr, 1e-12), 0, 1)
            out = pd.DataFrame({"pctr": pctr, "pcvr": pcvr, "pctcvr": pctcvr})
        out.index = frame.index
        return out

    def save(self, path: str | Path) -> Path:
        """Write the ranker to directory ``path`` (created); returns it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "format_version": FORMAT_VERSION, "params": self.get_params(),
                "state": self._save_model(path)}
        (path / "ranker.json").write_text(json.dumps(meta, indent=1))
        (path / "calibration.json").write_text(json.dumps(self.calibration_.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> CalibratedRanker:
        """Read a ranker saved by :meth:`save` (no pickle)."""
        meta = _read_meta(path)
        if meta["kind"] != cls.kind:
            raise ArtifactError(f"{path} holds a '{meta['kind']}' ranker, not '{cls.kind}'; use load_ranker(path).")
        obj = cls(**current_param_names(meta["params"]))
        obj._load_model(Path(path), meta["state"])
        obj.calibration_ = RankerCalibration.from_dict(json.loads((Path(path) / "calibration.json").read_text()))
        return obj


def current_param_names(params: Mapping[str, Any]) -> dict:
    """``params`` with the names of :data:`RENAMED_PARAMS` brought up to date (saved rankers keep loading)."""
    return {RENAMED_PARAMS.get(k, k): v for k, v in params.items()}


def _read_meta(path: str | Path) -> dict:
    f = Path(path) / "ranker.json"
    if not f.is_file():
        raise ArtifactError(f"{f} not found: {path} is not a saved ranker directory (expected ranker.json, "
                            "calibration.json and model arrays).")
    meta = json.loads(f.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{f} has format_version {meta.get('format_version')}; this library reads "
                            f"{FORMAT_VERSION}. Re-train and save with this version.")
    return meta

