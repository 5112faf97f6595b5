"""Live events added to fitted ranking features at a cost in proportion to the events, not to the log.

:func:`extend_builder` (a fitted ``RankingFeatureBuilder``) and :func:`extend_stats` (a fitted
``ConversionRateStats``) return NEW objects, copy-on-write (the fitted ones are never changed, so a
request in flight keeps reading them), equal to a fresh ``fit`` on the fitted events plus the new ones:

* every count index grows by the new (key, time) pairs only (:meth:`EventIndex.extended`: a small delta
  beside the shared sorted array, merged now and then);
* vocabularies grow at their end (a value's code never changes; the item attribute vocabularies and the
  builder's item codes hold the whole catalogue from ``fit`` on, so the pair keys user x category, user x
  brand and user x item keep their meaning);
* the CVR priors (global rates, Beta strengths per key and parent group) are refitted from all-time counts
  per code kept beside the indexes and grown by the new events (``_Totals``): the same numbers ``fit``
  computes, summed in another order (equal within float rounding). This step reads one count per code
  (items, users, user x category codes: vectorised NumPy), the only part not in proportion to the events.

Returns None when the events need what only a refit can give (an item the fitted catalogue lacks, a category
never seen): the caller refits then.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.features.cvr_stats import _TYPES, DEFAULT_HIERARCHY, _ns

__all__ = ["extend_builder", "extend_stats"]

_PAIR = np.int64(2**32)  # (user code, item code) as one int64: codes stay below 2**31


def _grow(vocab: pd.Index, values: np.ndarray) -> pd.Index:
    """``vocab`` with the values it lacks appended in order of first appearance (old codes unchanged)."""
    missing = vocab.get_indexer(values) < 0
    if not missing.any():
        return vocab
    return vocab.append(pd.Index(pd.unique(values[missing])))


def _add(counts: np.ndarray, codes: np.ndarray, size: int) -> np.ndarray:
    """A new array: ``counts`` padded to ``size`` plus one per code."""
    out = np.zeros(size, np.int64)
    out[:len(counts)] = counts
    return out + np.bincount(codes, minlength=size)[:size]


def _member(sorted_arr: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which ``values`` ``sorted_arr`` holds (binary search: the cost of ``values``, not of the array)."""
    if not len(sorted_arr):
        return np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_arr, values), len(sorted_arr) - 1)
    return sorted_arr[pos] == values


def _merge_sorted(arr: np.ndarray, new: np.ndarray) -> np.ndarray:
    new = np.sort(new)
    return np.insert(arr, np.searchsorted(arr, new, "right"), new)


@dataclass(frozen=True)
class _Totals:
    """All-time counts per code (what ``fit``'s priors read), kept so that they grow with the events. The user x
    category children of ``fit`` are the log's distinct (user, item) pairs, each with its user x category's
    counts: kept here as each user x category code's counts and number of distinct pairs (``uc_mult``)."""

    per_key: dict        # key -> {event type: counts per code}
    pairs: np.ndarray    # sorted distinct (user, item) pairs of the log (user code * 2**32 + item code)
    uc_keys: np.ndarray  # sorted user x category codes with events
    uc_counts: dict      # event type -> counts aligned with uc_keys
    uc_mult: np.ndarray  # distinct (user, item) pairs of each user x category code
    item_cat: np.ndarray  # category code of each item code

    @classmethod
    def of(cls, st: Any) -> _Totals:
        """The totals of a fitted ``ConversionRateStats`` (one pass over its events; cached on it)."""
        hit = st.__dict__.get("_totals")
        if hit is not None:
            return hit
        ev = st._events
        codes = {k: st._codes(ev, k, grow=False) for k in st._active}
        empty = np.zeros(0, np.int64)
        out = cls({k: {t: empty for t in _TYPES} for k in st._active if k != "user_category"}, empty, empty,
                  {t: empty for t in _TYPES}, empty, empty)
        out = out.grown(st, ev, codes)  # from nothing: every event once
        st.__dict__["_totals"] = out
        return out

    def grown(self, st: Any, ev: pd.DataFrame, codes: dict) -> _Totals:
        """These totals plus the events ``ev`` (``codes``: their codes per key in ``st``'s vocabularies)."""
        kinds = ev["event_type"].to_numpy()
        per_key = {k: {t: _add(c, codes[k][kinds == t], len(st._vocab[k])) for t, c in v.items()}
                   for k, v in self.per_key.items()}
        item_cat = _item_cat(st, self.item_cat)
        if "user_category" not in st._active:
            return _Totals(per_key, self.pairs, self.uc_keys, self.uc_counts, self.uc_mult, item_cat)
        uc = codes["user_category"]
        fresh = np.unique(uc)
        fresh = fresh[~_member(self.uc_keys, fresh)]
        at = np.searchsorted(self.uc_keys, fresh)
        keys = np.insert(self.uc_keys, at, fresh)
        counts = {}
        for t in _TYPES:
            c = np.insert(self.uc_counts[t], at, 0)
            np.add.at(c, np.searchsorted(keys, uc[kinds == t]), 1)
            counts[t] = c
        pair, first = np.unique(codes["user"] * _PAIR + codes["item"], return_index=True)
        new = ~_member(self.pairs, pair)
        mult = np.insert(self.uc_mult, at, 0)
        np.add.at(mult, np.searchsorted(keys, uc[first[new]]), 1)
        pairs = np.insert(self.pairs, np.searchsorted(self.pairs, pair[new]), pair[new])
        return _Totals(per_key, pairs, keys, counts, mult, item_cat)


def _item_cat(st: Any, old: np.ndarray) -> np.ndarray:
    """Category code of every item code: ``old``'s, then those of the items the vocabulary gained since."""
    if "item" not in st._vocab or "category" not in st._vocab or len(old) == len(st._vocab["item"]):
        return old
    frame = pd.DataFrame({"item_id": st._vocab["item"][len(old):]})
    return np.concatenate([old, st._codes(frame, "category", grow=False)])


def _strengths(st: Any, s: np.ndarray, n: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    """``beta_strength`` of each group ``g`` of children (successes ``s``, trials ``n``, each counted ``w``
    times), vectorised; returns (strength, children) per group code. Children without trials are left out."""
    lo, hi = st.strength_bounds
    keep = n > 0
    s, n, w, g = s[keep].astype(float), n[keep].astype(float), w[keep].astype(float), g[keep]
    k = np.bincount(g, w)
    s_sum, n_sum = np.bincount(g, w * s, minlength=len(k)), np.bincount(g, w * n, minlength=len(k))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s_sum / n_sum
        spread = np.bincount(g, w * n * (s / n - p[g]) ** 2, minlength=len(k)) / n_sum
        var = spread - k * p * (1 - p) / n_sum
        m = np.where((k < 2) | ~(s_sum > 0) | ~(var > 0), float(hi), np.clip(p * (1 - p) / var - 1.0, lo, hi))
    return m, k


def _group_strengths(st: Any, succ: np.ndarray, trials: np.ndarray, parent: np.ndarray,
                     weight: np.ndarray | None = None) -> dict:
    """``ConversionRateStats._group_strengths`` vectorised over the parent groups (same formula; ``weight``:
    how many children each entry stands for)."""
    w = np.ones(len(succ)) if weight is None else weight
    if not (trials > 0).any():
        return {"pooled": float(st.strength_bounds[1]), "groups": {}}
    pooled = float(_strengths(st, succ, trials, w, np.zeros(len(succ), np.int64))[0][0])
    m, k = _strengths(st, succ, trials, w, parent.astype(np.int64))
    return {"pooled": pooled, "groups": {int(c): float(m[c]) for c in np.flatnonzero(k >= st.min_children)}}


def _refit_priors(st: Any, tot: _Totals) -> None:
    """``fit``'s priors from the all-time totals (see ``ConversionRateStats._fit_priors``)."""
    n_imp, n_clk, n_buy = (len(st._global[t]) for t in _TYPES)
    st.global_ctr_ = (n_clk + 1.0) / (n_imp + 30.0)
    st.global_cvr_ = (n_buy + 1.0) / (n_clk + 30.0)
    strength = {}
    for key in st._active:
        weight = None
        if key == "user_category":
            imp, clk, buy = (tot.uc_counts[t] for t in _TYPES)
            parent, weight = tot.uc_keys % np.int64(len(st._vocab["category"]) + 1), tot.uc_mult
        else:
            imp, clk, buy = (tot.per_key[key][t] for t in _TYPES)
            parent = tot.item_cat if DEFAULT_HIERARCHY[key] == "category" else np.zeros(len(imp), np.int64)
        strength[key] = {"ctr": _group_strengths(st, clk, imp, parent, weight),
                         "cvr": _group_strengths(st, buy, clk, parent, weight)}
    st.strength_ = strength


def extend_stats(st: Any, events: pd.DataFrame) -> Any:
    """``st`` (a fitted ConversionRateStats) with ``events`` added, as a new object (module docstring); None
    when only a refit can add them."""
    ev = st._slim(events)
    if "media" in st._active and "media_id" not in ev.columns:
        ev = ev.assign(media_id=None)
    tot = _Totals.of(st)
    new = copy.copy(st)
    type(st)._events.extended(new, st, ev)
    new.__dict__.pop("_totals", None)
    if not len(ev):
        new.__dict__["_totals"] = tot
        return new
    new._vocab = dict(st._vocab)
    codes = {}
    for key in [k for k in st._active if k != "user_category"]:
        codes[key] = new._codes(ev, key, grow=False)
        if key in ("category", "brand", "shop"):  # hold the whole catalogue: a new value needs a refit
            if (codes[key] >= len(st._vocab[key])).any():
                return None
        elif (codes[key] >= len(st._vocab[key])).any():  # values new to the vocabulary: appended
            column = {"item": "item_id", "user": "user_id", "media": "media_id"}[key]
            new._vocab[key] = _grow(st._vocab[key], ev[column].to_numpy())
            codes[key] = new._codes(ev, key, grow=False)
    if "user_category" in st._active:
        codes["user_category"] = new._codes(ev, "user_category", grow=False)
    kinds, times = ev["event_type"].to_numpy(), ev["timestamp"].to_numpy()
    new._index = {(key, t): index.extended(codes[key][kinds == t], times[kinds == t])
                  for (key, t), index in st._index.items()}
    new._global = {t: _merge_sorted(arr, times[kinds == t]) for t, arr in st._global.items()}
    grown = tot.grown(new, ev, codes)
    new.__dict__["_totals"] = grown
    _refit_priors(new, grown)
    return new


def extend_builder(b: Any, events: pd.DataFrame) -> Any:
    """``b`` (a fitted RankingFeatureBuilder) with ``events`` added, as a new builder (module docstring); None
    when only a refit can add them."""
    ev = events[["user_id", "item_id", "timestamp", "event_type"]]
    if (b._items_ix.get_indexer(ev["item_id"].to_numpy()) < 0).any():
        return None  # an item the fitted catalogue lacks
    stats = extend_stats(b.stats_, events)
    if stats is None:
        return None
    new = copy.copy(b)
    new.stats_ = stats
    type(b)._events.extended(new, b, ev)
    new._users = _grow(b._users, ev["user_id"].to_numpy())
    kind = ev["event_type"].astype(str).to_numpy()
    t = _ns(ev["timestamp"])
    t_buy = t + b._delay
    ub, ui = new._user_brand(ev), new._user_item(ev)
    engaged = np.isin(kind, ("click", "cart", "fav"))
    imp, buy, clk = kind == "impression", kind == "purchase", kind == "click"
    new._stage = {"seen": b._stage["seen"].extended(ub[imp], t[imp]),
                  "engaged": b._stage["engaged"].extended(ub[engaged], t[engaged]),
                  "bought": b._stage["bought"].extended(ub[buy], t_buy[buy])}
    new._own = {"clicks": b._own["clicks"].extended(ui[clk], t[clk]),
                "purchases": b._own["purchases"].extended(ui[buy], t_buy[buy])}
    if b._friends:
        new._friends = {}
        for name, m, times in (("clicks", clk, t), ("purchases", buy, t_buy)):
            acts = pd.DataFrame({"friend_id": ev["user_id"].to_numpy()[m], "item_id": ev["item_id"].to_numpy()[m],
                                 "t": times[m]})
            joined = acts.merge(b.social_, on="friend_id", how="inner")
            new._friends[name] = b._friends[name].extended(new._user_item(joined), joined["t"].to_numpy())
    return new
