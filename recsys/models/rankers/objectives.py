"""What to rank by, chosen per media partner: clicks, purchases, GMV or expected commission.

==============  ==========================================  ==========================
objective       score of a candidate                        a partner that wants ...
==============  ==========================================  ==========================
``clicks``      pCTR                                        traffic (content apps)
``purchases``   pCTCVR = pCTR x pCVR                        orders
``gmv``         pCTCVR x price                              sales volume
``commission``  pCTCVR x price x commission_rate            what it is paid (default)
==============  ==========================================  ==========================

Only calibrated probabilities make the money objectives mean money (see :mod:`.calibration`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.features.objective_names import OBJECTIVES, normalise_objective  # noqa: F401 (re-exported)


def objective_scores(preds: pd.DataFrame, objective: str, *, price=None, commission_rate=None) -> np.ndarray:
    """Score per row for one objective from a ranker's ``predict_proba`` output (and price/rate columns)."""
    objective = normalise_objective(objective)
    if objective == "clicks":
        return preds["pctr"].to_numpy(dtype=np.float64)
    score = preds["pctcvr"].to_numpy(dtype=np.float64)
    if objective in ("gmv", "commission"):
        if price is None:
            raise DataValidationError(f"objective '{objective}' needs the item price per row; pass price=...")
        score = score * np.asarray(price, dtype=np.float64)
    if objective == "commission":
        if commission_rate is None:
            raise DataValidationError("objective 'commission' needs commission_rate per row; pass commission_rate=...")
        score = score * np.asarray(commission_rate, dtype=np.float64)
    return score


def objective_arrays(pctr: np.ndarray, pctcvr: np.ndarray, objective: np.ndarray, price: np.ndarray,
                     commission_rate: np.ndarray) -> np.ndarray:
    """:func:`objective_scores` on arrays (the same arithmetic), with an objective name per row."""
    objective = np.asarray(objective, dtype=object)
    out = np.zeros(len(pctr))
    for name in dict.fromkeys(objective.tolist()):
        canonical = normalise_objective(name)
        m = objective == name
        sel = slice(None) if m.all() else m
        score = np.asarray(pctr if canonical == "clicks" else pctcvr, dtype=np.float64)[sel]
        if canonical in ("gmv", "commission"):
            score = score * np.asarray(price, dtype=np.float64)[sel]
        if canonical == "commission":
            score = score * np.asarray(commission_rate, dtype=np.float64)[sel]
        out[sel] = score
    return out


def partner_objectives(media: pd.DataFrame, column: str = "objective") -> dict:
    """media_id -> canonical objective, from a media-partner table with an objective column."""
    if "media_id" not in media.columns or column not in media.columns:
        raise DataValidationError(f"media table needs 'media_id' and '{column}' columns; got {list(media.columns)}.")
    return {m: normalise_objective(o) for m, o in zip(media["media_id"], media[column], strict=True)}


def score_rows(preds: pd.DataFrame, rows: pd.DataFrame, objective: str | Mapping, *,
               default: str = "commission") -> np.ndarray:
    """Scores when each row's partner may want something different.

    ``objective`` is one name for every row, or a mapping media_id -> objective (partners missing from
    it get ``default``). ``rows`` supplies ``price``/``commission_rate`` (and ``media_id`` for a mapping).
    """
    price = rows["price"].to_numpy() if "price" in rows.columns else None
    rate = rows["commission_rate"].to_numpy() if "commission_rate" in rows.columns else None
    if isinstance(objective, str):
        return objective_scores(preds, objective, price=price, commission_rate=rate)
    per_row = rows["media_id"].map(lambda m: objective.get(m, default)).map(normalise_objective).to_numpy()
    out = np.zeros(len(rows))
    for name in np.unique(per_row):
        mask = per_row == name
        sub_price = price[mask] if price is not None else None
        sub_rate = rate[mask] if rate is not None else None
        out[mask] = objective_scores(preds.loc[preds.index[mask]], name, price=sub_price, commission_rate=sub_rate)
    return out


def top_k_per_group(groups: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` best-scored rows within each group (ties broken by row order)."""
    groups = np.asarray(groups)
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64), groups))
    g_sorted = groups[order]
    starts = np.r_[0, np.flatnonzero(g_sorted[1:] != g_sorted[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[rank < k]] = True
    return mask
