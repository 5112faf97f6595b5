"""Ranking metrics for pCTR / pCVR models: AUC, GAUC, LogLoss, calibration and a reliability plot.

- ``auc``: probability that a random positive outscores a random negative (ties count one half),
  computed from average ranks (Mann-Whitney U); equals scikit-learn's ``roc_auc_score``.
- ``gauc``: the AUC of each group (a user, a media partner) averaged with weights (by default the
  group's number of rows, i.e. impressions). Groups whose rows are all one class have no AUC and are
  skipped; ``gauc_details`` says how many were skipped and what share of rows the average covers.
- ``logloss``: mean binary cross-entropy, predictions clipped to [eps, 1 - eps].
- ``calibration``: predicted vs observed rate per bin and ECE = sum_b (n_b / N) * |mean_pred_b - rate_b|.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from recsys.errors import ConfigError, DataValidationError


def _binary(labels, scores, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(labels).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise DataValidationError(f"{name} and scores differ in length: {y.size} vs {s.size}.")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise DataValidationError(f"{name} must be 0/1; found {bad.tolist()}.\nFix: binarise the label column.")
    if not np.isfinite(s).all():
        raise DataValidationError(f"scores hold {int((~np.isfinite(s)).sum())} NaN/inf values.")
    return y.astype(np.int8), s


def auc(labels, scores) -> float:
    """ROC AUC from average ranks (ties count one half); raises DataValidationError with a single class."""
    y, s = _binary(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataValidationError(
            f"AUC needs both classes; got {n_pos} positives and {n_neg} negatives among {y.size} rows."
        )
    from scipy.stats import rankdata

    ranks = rankdata(s)
    value = float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    if value == 1.0 and y.size >= 1000:
        warnings.warn(f"AUC is exactly 1.0 on {y.size:,} rows: check that no label (or a function of it) "
                      "is among the features.", stacklevel=2)
    return value


def gauc_details(labels, scores, groups, weights: str = "impressions") -> dict[str, float]:
    """Grouped AUC with counts: ``gauc``, ``n_groups``, ``n_groups_used``, ``n_groups_skipped``, ``row_share_used``.

    ``weights``: ``"impressions"`` (rows of the group), ``"clicks"`` (positives of the group) or
    ``"uniform"``. Groups whose labels are all 0 or all 1 are skipped (no AUC is defined for them).
    """
    import pandas as pd

    if weights not in ("impressions", "clicks", "uniform"):
        raise ConfigError(f"gauc weights={weights!r}; choose 'impressions', 'clicks' or 'uniform'.")
    y, s = _binary(labels, scores)
    g = np.asarray(groups).ravel()
    if g.size != y.size:
        raise DataValidationError(f"groups has {g.size} rows but labels has {y.size}.")
    frame = pd.DataFrame({"g": g, "y": y.astype(np.float64), "s": s})
    frame["r"] = frame.groupby("g", sort=False)["s"].rank(method="average")
    frame["rp"] = frame["r"] * frame["y"]
    per = frame.groupby("g", sort=False).agg(n=("y", "size"), pos=("y", "sum"), rpos=("rp", "sum"))
    neg = per["n"] - per["pos"]
    used = per[(per["pos"] > 0) & (neg > 0)]
    n_used_neg = used["n"] - used["pos"]
    group_auc = (used["rpos"] - used["pos"] * (used["pos"] + 1) / 2) / (used["pos"] * n_used_neg)
    w = {"impressions": used["n"], "clicks": used["pos"], "uniform": pd.Series(1.0, index=used.index)}[weights]
    value = float((group_auc * w).sum() / w.sum()) if len(used) else float("nan")
    if not len(used):
        warnings.warn("GAUC: no group holds both classes; the result is NaN.", stacklevel=2)
    return {"gauc": value, "n_groups": float(len(per)), "n_groups_used": float(len(used)),
            "n_groups_skipped": float(len(per) - len(used)), "row_share_used": float(used["n"].sum() / max(y.size, 1))}


def gauc(labels, scores, groups, weights: str = "impressions") -> float:
    """Group AUC (by user or by media partner), weighted by impressions; single-class groups are skipped."""
    return gauc_details(labels, scores, groups, weights)["gauc"]


def logloss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of predicted probabilities, clipped to [eps, 1 - eps]."""
    y, p = _binary(labels, probs)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


@dataclass
class Calibration:
    """Predicted vs observed rate per bin (empty bins dropped) and the expected calibration error."""

    bin_lower: np.ndarray
    bin_upper: np.ndarray
    mean_predicted: np.ndarray
    observed_rate: np.ndarray
    counts: np.ndarray
    ece: float
    mean_prediction: float
    observed: float

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def calibration(labels, probs, n_bins: int = 10, strategy: str = "uniform") -> Calibration:
    """Bin predictions (``"uniform"`` on [0, 1] or ``"quantile"``) and compare mean prediction with observed rate."""
    y, p = _binary(labels, probs)
    if y.size == 0:
        raise DataValidationError("calibration needs at least one row.")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    else:
        raise ConfigError(f"calibration strategy={strategy!r}; choose 'uniform' or 'quantile'.")
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1)
    keep = counts > 0
    sum_p = np.bincount(which, weights=p, minlength=len(edges) - 1)[keep]
    sum_y = np.bincount(which, weights=y, minlength=len(edges) - 1)[keep]
    mean_p, rate = sum_p / counts[keep], sum_y / counts[keep]
    ece = float(np.sum(counts[keep] / y.size * np.abs(mean_p - rate)))
    return Calibration(edges[:-1][keep], edges[1:][keep], mean_p, rate, counts[keep], ece,
                       float(p.mean()), float(y.mean()))


def reliability_plot(cal: Calibration, path: str | Path, *, title: str = "Reliability") -> Path:
    """Write a reliability diagram (observed vs predicted rate per bin, with the diagonal) as a PNG."""
    try:
        import matplotlib
    except ImportError as e:
        from recsys.errors import MissingDependencyError

        raise MissingDependencyError("reliability_plot needs matplotlib: pip install matplotlib") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    top = float(max(cal.mean_predicted.max(initial=0), cal.observed_rate.max(initial=0), 1e-6)) * 1.05
    ax.plot([0, top], [0, top], "--", color="grey", label="perfectly calibrated")
    ax.plot(cal.mean_predicted, cal.observed_rate, "o-", label=f"model (ECE {cal.ece:.4f})")
    ax.set(xlabel="mean predicted rate", ylabel="observed rate", title=title, xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _task_metrics(prefix: str, y, p, groups: dict[str, np.ndarray], out: dict) -> None:
    y = np.asarray(y)
    if y.size == 0 or y.min() == y.max():
        warnings.warn(f"{prefix}: {y.size} rows with a single class; its AUC/GAUC are NaN.", stacklevel=3)
        out[f"{prefix}_auc"] = float("nan")
    else:
        out[f"{prefix}_auc"] = auc(y, p)
        for name, g in groups.items():
            out[f"{prefix}_gauc_{name}"] = gauc(y, p, g)
    if y.size:
        out[f"{prefix}_logloss"] = logloss(y, p)
        out[f"{prefix}_ece"] = calibration(y, p).ece
    out[f"{prefix}_rows"] = int(y.size)


def conversion_metrics(
    frame: pd.DataFrame, *, click: str = "click", purchase: str = "purchase", pctr: str = "pctr",
    pcvr: str = "pcvr", group_cols: tuple[str, ...] = ("user_id", "media_id"),
) -> dict[str, float]:
    """CTR AUC on impressions, CVR AUC on clicks, CTCVR AUC on impressions (score pctr * pcvr), with LogLoss,
    ECE and GAUC per column of ``group_cols`` present (keys ``ctr_gauc_user_id``, ...).

    One row is one impression; the CTCVR label is ``click & purchase``.
    """
    missing = [c for c in (click, purchase, pctr, pcvr) if c not in frame.columns]
    if missing:
        raise DataValidationError(f"conversion_metrics: columns {missing} are missing (have {list(frame.columns)}).")
    c, b = frame[click].to_numpy().astype(np.int8), frame[purchase].to_numpy().astype(np.int8)
    pc, pv = frame[pctr].to_numpy(np.float64), frame[pcvr].to_numpy(np.float64)
    groups = {col: frame[col].to_numpy() for col in group_cols if col in frame.columns}
    clicked = c == 1
    out: dict[str, float] = {}
    _task_metrics("ctr", c, pc, groups, out)
    _task_metrics("cvr", b[clicked], pv[clicked], {k: v[clicked] for k, v in groups.items()}, out)
    _task_metrics("ctcvr", c & b, pc * pv, groups, out)
    return out
