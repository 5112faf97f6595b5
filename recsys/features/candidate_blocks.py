"""Per-code statistics blocks of :class:`~recsys.features.candidate_features.CandidateFeatures`, computed once at
load, and the counting helpers it shares with them (the same arithmetic as ``ConversionRateStats.transform``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.features.cvr_stats import _smooth

__all__ = ["item_blocks", "child_rates", "MAX_REQUEST_CODES"]

MAX_REQUEST_CODES = 5_000_000  # users (partners) with statistics precomputed; beyond, counted per request


def _codes(index: pd.Index, values: np.ndarray) -> np.ndarray:
    idx = index.get_indexer(values)
    return np.where(idx < 0, len(index), idx).astype(np.int64)


def _counts(st: Any, key: str, codes: np.ndarray, t: np.ndarray, key_range: tuple[int, int] | None = None
            ) -> tuple[np.ndarray, ...]:
    """(impressions, clicks, matured clicks, purchases) of ``codes`` before ``t``, each (windows, codes), counted
    as ``ConversionRateStats.transform`` counts them (``key_range``: see ``EventIndex.count_windows``)."""
    ns = [w.ns for w in st._windows]
    index = st._index
    imp = np.stack(index[(key, "impression")].count_windows(codes, t, ns, key_range))
    clk = np.stack(index[(key, "click")].count_windows(codes, t, ns, key_range))
    m_clk = np.stack(index[(key, "click")].count_windows(codes, t - st._delay, ns, key_range)) if st._delay else clk
    buy = np.stack(index[(key, "purchase")].count_windows(codes, t - st._delay, ns, key_range))
    return imp, clk, m_clk, buy


def _rates(counts: tuple, p_ctr, p_cvr, s_ctr, s_cvr) -> tuple[np.ndarray, np.ndarray]:
    imp, clk, m_clk, buy = counts
    return _smooth(clk, imp, p_ctr, s_ctr), _smooth(buy, m_clk, p_cvr, s_cvr)


def _block(counts: tuple, ctr: np.ndarray, cvr: np.ndarray) -> np.ndarray:
    """float32 (codes, windows x 5): per window log_imp, log_clk, log_buy, ctr, cvr (the builder's column order)."""
    imp, clk, _, buy = (np.broadcast_to(c, ctr.shape) for c in counts)
    stacked = np.stack([np.log1p(imp), np.log1p(clk), np.log1p(buy), ctr, cvr], axis=-1)  # (W, m, 5)
    return np.ascontiguousarray(stacked.transpose(1, 0, 2).reshape(ctr.shape[1], -1), dtype=np.float32)


def item_blocks(st: Any, t: int) -> tuple[dict, dict]:
    """Feature blocks per code of the single-key statistics at time ``t`` (item, category, brand, shop, and
    user and partner unless there are too many) and what child keys need (global and category rates per
    window, strengths per category code)."""
    t1 = np.array([t], dtype=np.int64)
    glob = [st._global_rates(t1, w) for w in st._windows]
    parents = {"global": (np.stack([g[0] for g in glob]), np.stack([g[1] for g in glob]))}  # (W, 1)
    blocks: dict = {}
    g_ctr, g_cvr = parents["global"]
    for key in ("category", "brand", "shop", "user", "media"):
        if key not in st._active or (key in ("user", "media") and (key not in st.keys or
                                                                  len(st._vocab[key]) > MAX_REQUEST_CODES)):
            continue
        codes = np.arange(len(st._vocab[key]) + 1, dtype=np.int64)
        counts = _counts(st, key, codes, np.full(len(codes), t, np.int64))
        ctr, cvr = _rates(counts, g_ctr, g_cvr, st._strengths(key, "ctr", None), st._strengths(key, "cvr", None))
        if key == "category":
            parents["category"] = (ctr, cvr)  # (W, categories)
            cat_codes = codes
            parents["strength"] = {(k, r): st._strengths(k, r, codes) for k in ("item", "user_category")
                                   if k in st._active for r in ("ctr", "cvr")}
        if key in st.keys:
            blocks[key] = _block(counts, ctr, cvr)
    if "item" in st._active:
        n_items = len(st._vocab["item"])
        codes = np.arange(n_items + 1, dtype=np.int64)
        counts = _counts(st, "item", codes, np.full(len(codes), t, np.int64))
        # a seen item has its own category; the unseen-item code takes the candidate's category
        cat_of = st._codes(pd.DataFrame({"item_id": st._vocab["item"]}), "category", grow=False)
        seen = tuple(c[:, :n_items] for c in counts)
        unseen = tuple(c[:, n_items:] for c in counts)
        blocks["item"] = _block(seen, *child_rates(parents, "item", cat_of, seen))
        blocks["item_unseen"] = _block(unseen, *child_rates(parents, "item", cat_codes, unseen))
    return blocks, parents


def child_rates(parents: dict, key: str, cat: np.ndarray, counts: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Rates of a key whose parent is the category (item, user x category), smoothed as in transform."""
    p_ctr, p_cvr = parents["category"]
    s = [parents["strength"][(key, r)] for r in ("ctr", "cvr")]
    s = [v[cat] if isinstance(v, np.ndarray) else v for v in s]
    return _rates(counts, p_ctr[:, cat], p_cvr[:, cat], s[0], s[1])
