"""What the ranker benchmark's three datasets share: the model zoo, the timing/memory meter and the scoring.

Used by :mod:`recsys.bench.ranker_synthetic` and :mod:`recsys.bench.ranker_real`; the entry point is
:func:`recsys.bench.ranker.run_ranker_benchmark`.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import ConfigError
from recsys.models.rankers.base import CalibratedRanker, numeric_matrix, resolve_columns

OUT_DIR = Path("experiments/ranker")


class Meter:
    """Wall time and peak resident memory (sampled every 20 ms) of a block of work."""

    def __enter__(self) -> Meter:
        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 2), "peak_rss_mib": round(self.peak / 2**20, 1),
                "rss_growth_mib": round((self.peak - self.base) / 2**20, 1)}


class PopularityPriceRanker(CalibratedRanker):
    """Baseline: the item's smoothed all-time CTR and CTCVR (no personalisation), calibrated; price and
    commission rate enter through the objective."""

    kind = "popularity-price"

    def __init__(self, *, ctr: str = "item_all_ctr", cvr: str = "item_all_cvr", calibration: str = "platt",
                 calibration_fraction: float = 0.2) -> None:
        self.ctr, self.cvr = ctr, cvr
        self.calibration, self.calibration_fraction, self.check_leakage = calibration, calibration_fraction, False

    def _fit_raw(self, frame, click, purchase) -> None:
        pass

    def _predict_raw(self, frame):
        pctr = frame[self.ctr].to_numpy(np.float64)
        return pctr, pctr * frame[self.cvr].to_numpy(np.float64)


class LightGBMRanker(CalibratedRanker):
    """LightGBM per target on the same numeric features as the GBDT ranker (benchmark reference only)."""

    kind = "lightgbm"

    def __init__(self, *, n_estimators: int = 200, exclude=(), calibration_fraction: float = 0.2, seed: int = 0):
        self.n_estimators, self.exclude, self.seed = n_estimators, exclude, seed
        self.calibration, self.calibration_fraction, self.check_leakage = "platt", calibration_fraction, True

    def _fit_one(self, X, y):
        import lightgbm as lgb

        if y.min() == y.max():
            return float(y.mean())
        rng = np.random.default_rng(self.seed)
        val = rng.random(len(y)) < 0.1
        model = lgb.LGBMClassifier(n_estimators=self.n_estimators, learning_rate=0.1, num_leaves=31,
                                   min_child_samples=50, reg_lambda=1.0, n_jobs=1, random_state=self.seed, verbose=-1)
        import inspect

        held = ({"eval_X": (X[val],), "eval_y": (y[val],)} if "eval_X" in inspect.signature(model.fit).parameters
                else {"eval_set": [(X[val], y[val])]})  # lightgbm >= 4.7 renamed eval_set
        model.fit(X[~val], y[~val], callbacks=[lgb.early_stopping(10, verbose=False)], **held)
        return model

    def _fit_raw(self, frame, click, purchase) -> None:
        _, numeric = resolve_columns(frame, None)
        self.columns_ = [c for c in numeric if c not in set(self.exclude)]
        X = numeric_matrix(frame, self.columns_)
        self.ctr_, self.cvr_ = self._fit_one(X, click), self._fit_one(X[click > 0], purchase[click > 0])

    def _predict_raw(self, frame):
        X = numeric_matrix(frame, self.columns_)
        p = [np.full(len(X), m) if isinstance(m, float) else m.predict_proba(X)[:, 1] for m in (self.ctr_, self.cvr_)]
        return p[0], p[0] * p[1]


def _zoo(quick: bool, cvr_columns: list[str], ablation: bool) -> dict[str, Callable[[], CalibratedRanker]]:
    """Model name -> factory. ``quick`` shrinks everything (tests, smoke runs)."""
    from recsys.models.rankers.esmm import ESMMRanker
    from recsys.models.rankers.gbdt import GBDTRanker

    g = {"max_iter": 30, "max_leaf_nodes": 15} if quick else {}
    e = ({"epochs": 1, "hidden": (32,), "dim": 8} if quick else
         {"epochs": 1, "hidden": (128, 64), "dim": 16, "lr": 2e-3})
    zoo: dict[str, Callable[[], CalibratedRanker]] = {
        "popularity-price": PopularityPriceRanker,
        "gbdt": lambda: GBDTRanker(num_threads=1, **g),
        "esmm": lambda: ESMMRanker(num_threads=1, batch_size=2048, **e),
        "esmm+ips": lambda: ESMMRanker(num_threads=1, batch_size=2048, ips_weight=0.5, **e),
    }
    try:
        import lightgbm  # noqa: F401

        zoo["lightgbm"] = lambda: LightGBMRanker(n_estimators=30 if quick else 200)
    except ImportError:
        warnings.warn("lightgbm is not installed (pip install lightgbm); its row is skipped.", stacklevel=2)
    if ablation:
        zoo["gbdt-no-cvr"] = lambda: GBDTRanker(num_threads=1, exclude=cvr_columns, **g)
        zoo["esmm-no-cvr"] = lambda: ESMMRanker(num_threads=1, batch_size=2048, exclude=cvr_columns, **e)
    return zoo


def _score(p: pd.DataFrame, y_te, groups: dict, truth: dict | None) -> dict:
    """AUCs, LogLoss, ECE and mean prediction over observed (and over truth) of pctr / pcvr / pctcvr."""
    from recsys.evaluation import conversion_metrics

    frame = pd.DataFrame({"click": y_te["click"].to_numpy(), "purchase": y_te["purchase"].to_numpy(),
                          "pctr": p["pctr"].to_numpy(), "pcvr": p["pcvr"].to_numpy(), **groups})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = conversion_metrics(frame, group_cols=tuple(groups))
    clicks, buys = max(frame["click"].mean(), 1e-12), max(frame["purchase"].mean(), 1e-12)
    m.update({"ctr_pred_over_observed": float(p["pctr"].mean() / clicks),
              "ctcvr_pred_over_observed": float(p["pctcvr"].mean() / buys),
              "ctcvr_pred_over_observed_95": ratio_interval(float(p["pctcvr"].sum()), int(frame["purchase"].sum()))})
    if truth is not None:  # synthetic: the generating probabilities, free of label noise
        m.update({"ctr_pred_over_truth": float(p["pctr"].mean() / truth["click"].mean()),
                  "ctcvr_pred_over_truth": float(p["pctcvr"].mean() / truth["purchase"].mean())})
    return m


def ratio_interval(predicted: float, observed: int, level: float = 0.95) -> list[float]:
    """Interval for predicted / expected count given ``observed`` events (exact Poisson, Garwood).

    Observed purchases are a Poisson draw around what the test period's true probabilities expect, so
    predicted / observed carries that noise: with 344 purchases the 95% interval spans about +-11%. A
    model is consistent with calibration when its interval covers 1.
    """
    from scipy.stats import chi2

    if observed < 0 or predicted < 0:
        raise ConfigError(f"ratio_interval needs non-negative counts, got predicted={predicted}, observed={observed}.")
    tail = (1.0 - level) / 2
    lo = chi2.ppf(tail, 2 * observed) / 2 if observed > 0 else 0.0
    hi = chi2.ppf(1 - tail, 2 * observed + 2) / 2
    return [round(float(predicted / hi), 4), round(float(predicted / lo), 4) if lo > 0 else float("inf")]


def _oracle_row(truth: dict, y_te, groups: dict) -> dict:
    """The generating probabilities scored like a model: the AUC ceiling, and the label noise of pred/obs."""
    p = pd.DataFrame({"pctr": truth["click"], "pcvr": truth["cvr"], "pctcvr": truth["purchase"]})
    m = _score(p, y_te, groups, truth)
    print(f"  {'oracle':18s} CTR AUC {m['ctr_auc']:.4f}  CVR AUC {m['cvr_auc']:.4f}  CTCVR AUC {m['ctcvr_auc']:.4f}  "
          f"pCTCVR/obs {m['ctcvr_pred_over_observed']:.3f}", flush=True)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in m.items()}


def _fit_and_score(name, factory, X_tr, y_tr, X_te, y_te, groups, truth=None) -> tuple[dict, CalibratedRanker]:
    with Meter() as fit:
        model = factory().fit(X_tr, y_tr)
    with Meter() as pred:
        p = model.predict_proba(X_te)
    m = _score(p, y_te, groups, truth)
    m.update({"train": fit.as_dict(), "predict": pred.as_dict(),
              "params": model.get_params()})
    print(f"  {name:18s} CTR AUC {m['ctr_auc']:.4f}  CVR AUC {m['cvr_auc']:.4f}  CTCVR AUC {m['ctcvr_auc']:.4f}  "
          f"pCTCVR/obs {m['ctcvr_pred_over_observed']:.3f}  fit {fit.seconds:.1f}s", flush=True)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in m.items()}, model

