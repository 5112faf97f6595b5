"""Point-in-time, empirically-Bayes-smoothed click-through and conversion-rate statistics.

For every scored row (user, item, time) and every key it belongs to — item, category, brand, shop,
media partner, user, user x category — :class:`ConversionRateStats` counts the impressions, clicks
and purchases logged *strictly before* the row's time in several windows, and turns them into
smoothed rates::

    CTR = (clicks + m_g * parent_ctr) / (impressions + m_g)
    CVR = (purchases + m_g * parent_cvr) / (clicks + m_g)

``parent_*`` is the parent key's own point-in-time smoothed rate in the same window (item -> its
category, user x category -> category, category/brand/shop/media/user -> the global rate), so a
1-of-1 item is pulled towards its category.  ``m_g`` (the Beta prior's strength) is fitted by the
method of moments among the children of each parent group (``m`` per category for items, ...), on
the events given to :meth:`fit`; only these scalars and the global prior mean are taken from
``fit``'s whole period, every count is point-in-time.

With ``conversion_delay`` a purchase is assumed known only ``delay`` after it happened: the CVR of a
row at time t uses purchases and clicks before ``t - delay`` (matured clicks), so recent clicks whose
purchase may still come do not drag the rate down.  The same object serves training and inference:
``fit`` on the log, ``update`` with new events as they arrive, ``transform`` any rows.

Counts are returned as ``log1p`` beside the rates: ``{key}_{window}_{log_imp|log_clk|log_buy|ctr|cvr}``.
The counting itself (:class:`EventIndex`) lives in :mod:`recsys.features.event_index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError
from recsys.features.event_index import (  # noqa: F401  (re-exported: the counts' public names)
    COUNTS_ENGINE,
    EventIndex,
    point_in_time_counts,
)
from recsys.features.parted import PartedFrame

#: key -> parent key used for smoothing ("global" is the root).
DEFAULT_HIERARCHY: dict[str, str] = {
    "category": "global", "brand": "global", "shop": "global", "media": "global", "user": "global",
    "item": "category", "user_category": "category",
}
KEY_ORDER = ("category", "brand", "shop", "media", "user", "item", "user_category")
_TYPES = ("impression", "click", "purchase")


def beta_strength(successes: np.ndarray, trials: np.ndarray, *, bounds: tuple[float, float]) -> float:
    """Method-of-moments strength m = a + b of a Beta prior from children's (successes, trials).

    Between-child variance = weighted variance of the rates minus the binomial noise expected from
    the trials; m = p(1-p)/var - 1, clipped to ``bounds`` (no excess variance -> the upper bound).
    """
    keep = trials > 0
    s, n = successes[keep].astype(float), trials[keep].astype(float)
    if len(n) < 2 or s.sum() <= 0:
        return float(bounds[1])
    total = n.sum()
    p = s.sum() / total
    spread = (n * (s / n - p) ** 2).sum() / total
    var_between = spread - len(n) * p * (1 - p) / total
    if var_between <= 0:
        return float(bounds[1])
    return float(np.clip(p * (1 - p) / var_between - 1.0, *bounds))


@dataclass(frozen=True)
class _Window:
    name: str
    ns: int | None


def _parse_windows(windows: Sequence[str | None]) -> list[_Window]:
    out = []
    for w in windows:
        if w is None or str(w).lower() == "all":
            out.append(_Window("all", None))
            continue
        try:
            td = pd.Timedelta(w)
        except ValueError as exc:
            raise ConfigError(f"window {w!r} is not a duration; use e.g. '1D', '7D', '12h' or None for all time.") from exc
        out.append(_Window(str(w).lower(), int(td.value)))
    if len({w.name for w in out}) != len(out):
        raise ConfigError(f"windows {list(windows)} repeat a name; give each window once.")
    return out


class ConversionRateStats:
    """Smoothed point-in-time CTR/CVR statistics per item, category, brand, shop, media, user, user x category.

    ``keys`` picks which of :data:`KEY_ORDER` to compute (their parents are added when needed);
    ``windows`` are pandas durations or None for all time; ``conversion_delay`` a duration or None;
    ``strength_bounds`` clip the fitted Beta prior strengths; ``min_children`` is the number of
    children a parent group needs for its own strength (otherwise the key's pooled strength).
    """

    def __init__(self, *, keys: Sequence[str] = KEY_ORDER, windows: Sequence[str | None] = ("7D", None),
                 conversion_delay: str | None = None, strength_bounds: tuple[float, float] = (2.0, 5000.0),
                 min_children: int = 5) -> None:
        self.keys = tuple(keys)
        self.windows = tuple(windows)
        self.conversion_delay = conversion_delay
        self.strength_bounds = strength_bounds
        self.min_children = min_children

    # ------------------------------------------------------------------ fit / update
    def fit(self, events: pd.DataFrame, items: pd.DataFrame) -> ConversionRateStats:
        """Index the event log and fit the Beta prior strengths on it; ``items`` maps item -> category/brand/shop."""
        unknown = set(self.keys) - set(KEY_ORDER)
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}; choose from {list(KEY_ORDER)}.")
        self._windows = _parse_windows(self.windows)
        self._delay = 0 if self.conversion_delay is None else int(pd.Timedelta(self.conversion_delay).value)
        self._items = items.set_index("item_id")[["category", "brand", "shop"]]
        self._vocab: dict[str, pd.Index] = {}
        self._events = self._slim(events)
        needed = set(self.keys)
        for k in self.keys:
            while DEFAULT_HIERARCHY.get(k, "global") != "global":
                k = DEFAULT_HIERARCHY[k]
                needed.add(k)
        if "user_category" in needed:
            needed.add("user")
        if "media_id" not in self._events.columns:
            needed.discard("media")
        self._active = [k for k in KEY_ORDER if k in needed]
        self._build_indexes()
        self._fit_priors()
        return self

    _events = PartedFrame("_event_parts")  # the indexed events; live batches are appended as parts

    def update(self, events: pd.DataFrame) -> ConversionRateStats:
        """Append newly logged events to the index (prior strengths stay as fitted)."""
        self._events = pd.concat([self._events, self._slim(events)], ignore_index=True)
        self._build_indexes()
        return self

    def _slim(self, events: pd.DataFrame) -> pd.DataFrame:
        missing = {"user_id", "item_id", "timestamp", "event_type"} - set(events.columns)
        if missing:
            raise DataValidationError(f"events lack column(s) {sorted(missing)}; validate them with "
                                      "recsys.features.schema.validate_events first.")
        kind = events["event_type"].astype(str)
        ev = events.loc[kind.isin(_TYPES).to_numpy()]
        cols = ["user_id", "item_id", "timestamp", "event_type"] + (["media_id"] if "media_id" in ev.columns else [])
        out = ev[cols].copy()
        out["event_type"] = out["event_type"].astype(str)
        out["timestamp"] = _ns(out["timestamp"])
        return out

    def _codes(self, frame: pd.DataFrame, key: str, grow: bool) -> np.ndarray:
        """Integer code of each row's key; rows whose key is unseen get a code with no events."""
        if key == "user_category":
            u = self._codes(frame, "user", False)
            c = self._codes(frame, "category", False)
            return u * np.int64(len(self._vocab["category"]) + 1) + c
        if key in ("category", "brand", "shop"):
            values = self._items[key].reindex(frame["item_id"].to_numpy()).to_numpy()
        else:
            col = {"item": "item_id", "user": "user_id", "media": "media_id"}[key]
            values = frame[col].to_numpy()
        if grow:  # an item attribute's vocabulary holds every catalogue value: live events never grow it, so the
            # user x category codes (user * (categories + 1) + category) stay put (recsys/features/live_counts.py)
            seen = np.concatenate([values, self._items[key].to_numpy()]) if key in ("category", "brand", "shop") \
                else values
            self._vocab[key] = pd.Index(pd.unique(seen))
        idx = self._vocab[key].get_indexer(values)
        return np.where(idx < 0, len(self._vocab[key]), idx).astype(np.int64)

    def _build_indexes(self) -> None:
        ev = self._events
        kinds = ev["event_type"].to_numpy()
        times = ev["timestamp"].to_numpy()
        self._index: dict[tuple[str, str], EventIndex] = {}
        for key in [k for k in self._active if k != "user_category"] + (
                ["user_category"] if "user_category" in self._active else []):
            codes = self._codes(ev, key, grow=True)
            for t in _TYPES:
                m = kinds == t
                self._index[(key, t)] = EventIndex(codes[m], times[m])
        self._global = {t: np.sort(times[kinds == t]) for t in _TYPES}

    def _fit_priors(self) -> None:
        """Global prior means and, per key and parent group, the Beta strengths for CTR and CVR."""
        ev = self._events
        end = np.array([ev["timestamp"].max() + 1], dtype=np.int64)
        n_imp, n_clk, n_buy = (len(self._global[t]) for t in _TYPES)
        self.global_ctr_ = (n_clk + 1.0) / (n_imp + 30.0)
        self.global_cvr_ = (n_buy + 1.0) / (n_clk + 30.0)
        self.strength_: dict[str, dict[str, dict]] = {}
        for key in self._active:
            codes = np.arange(len(self._vocab.get(key, [])) if key != "user_category" else 0, dtype=np.int64)
            if key == "user_category":
                pairs = pd.DataFrame({"user_id": ev["user_id"].to_numpy(), "item_id": ev["item_id"].to_numpy()})
                pairs = pairs.drop_duplicates()
                codes = self._codes(pairs, key, grow=False)
                parent_codes = self._codes(pairs, "category", grow=False)
            elif DEFAULT_HIERARCHY[key] == "category":
                frame = pd.DataFrame({"item_id": self._vocab["item"]})
                parent_codes = self._codes(frame, "category", grow=False)
            else:
                parent_codes = np.zeros(len(codes), dtype=np.int64)
            tt = np.full(len(codes), end[0])
            imp, clk, buy = (self._index[(key, t)].count(codes, tt) for t in _TYPES)
            self.strength_[key] = {"ctr": self._group_strengths(clk, imp, parent_codes),
                                   "cvr": self._group_strengths(buy, clk, parent_codes)}

    def _group_strengths(self, succ: np.ndarray, trials: np.ndarray, parent: np.ndarray) -> dict:
        pooled = beta_strength(succ, trials, bounds=self.strength_bounds)
        groups = {}
        df = pd.DataFrame({"s": succ, "n": trials, "g": parent})
        df = df.loc[df["n"] > 0]
        for g, part in df.groupby("g", sort=True):
            if len(part) >= self.min_children:
                groups[int(g)] = beta_strength(part["s"].to_numpy(), part["n"].to_numpy(), bounds=self.strength_bounds)
        return {"pooled": pooled, "groups": groups}

    # ------------------------------------------------------------------ transform
    def transform(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Features for each row (user_id, item_id, timestamp[, media_id]) from events strictly before it."""
        if not hasattr(self, "_index"):
            raise ConfigError("ConversionRateStats.transform called before fit(events, items).")
        missing = {"user_id", "item_id", "timestamp"} - set(rows.columns)
        if "media" in self._active and "media_id" not in rows.columns:
            missing.add("media_id")
        if missing:
            raise DataValidationError(f"rows to featurise lack column(s) {sorted(missing)}; each row needs the "
                                      "user, item, time (and media partner when the log has one).")
        t = _ns(rows["timestamp"])
        codes = {k: self._codes(rows, k, grow=False) for k in self._active}
        out: dict[str, np.ndarray] = {}
        for w in self._windows:
            g_ctr, g_cvr = self._global_rates(t, w)
            rates: dict[str, tuple[np.ndarray, np.ndarray]] = {"global": (g_ctr, g_cvr)}
            for key in self._active:
                imp = self._index[(key, "impression")].count(codes[key], t, w.ns)
                clk = self._index[(key, "click")].count(codes[key], t, w.ns)
                m_clk = self._index[(key, "click")].count(codes[key], t - self._delay, w.ns) if self._delay else clk
                buy = self._index[(key, "purchase")].count(codes[key], t - self._delay, w.ns)
                parent = DEFAULT_HIERARCHY[key]
                p_ctr, p_cvr = rates[parent]
                group = codes[parent] if parent != "global" else None
                ctr = _smooth(clk, imp, p_ctr, self._strengths(key, "ctr", group))
                cvr = _smooth(buy, m_clk, p_cvr, self._strengths(key, "cvr", group))
                rates[key] = (ctr, cvr)
                if key in self.keys:
                    p = f"{key}_{w.name}_"
                    out[p + "log_imp"], out[p + "log_clk"], out[p + "log_buy"] = np.log1p(imp), np.log1p(clk), np.log1p(buy)
                    out[p + "ctr"], out[p + "cvr"] = ctr, cvr
        return pd.DataFrame({k: v.astype(np.float32) for k, v in out.items()}, index=rows.index)

    def _global_rates(self, t: np.ndarray, w: _Window) -> tuple[np.ndarray, np.ndarray]:
        def n(kind: str, at: np.ndarray) -> np.ndarray:
            arr = self._global[kind]
            hi = np.searchsorted(arr, at, "left")
            return hi - (np.searchsorted(arr, at - w.ns, "left") if w.ns is not None else 0)
        td = t - self._delay
        ctr = (n("click", t) + 100.0 * self.global_ctr_) / (n("impression", t) + 100.0)
        cvr = (n("purchase", td) + 100.0 * self.global_cvr_) / (n("click", td) + 100.0)
        return ctr, cvr

    def _strengths(self, key: str, rate: str, group: np.ndarray | None) -> np.ndarray | float:
        fitted = self.strength_[key][rate]
        if group is None or not fitted["groups"]:
            return fitted["pooled"]
        g = np.fromiter(fitted["groups"].keys(), dtype=np.int64)
        m = np.fromiter(fitted["groups"].values(), dtype=float)
        order = np.argsort(g)
        g, m = g[order], m[order]
        pos = np.clip(np.searchsorted(g, group), 0, len(g) - 1)
        return np.where(g[pos] == group, m[pos], fitted["pooled"])

    def feature_names(self) -> list[str]:
        """Output column names, in order."""
        names = []
        for w in _parse_windows(self.windows):
            for key in [k for k in KEY_ORDER if k in self._active and k in self.keys]:
                names += [f"{key}_{w.name}_{s}" for s in ("log_imp", "log_clk", "log_buy", "ctr", "cvr")]
        return names


def _smooth(succ: np.ndarray, trials: np.ndarray, prior_mean: np.ndarray, strength) -> np.ndarray:
    return (succ + strength * prior_mean) / (trials + strength)


def _ns(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds (datetime64 or integer seconds)."""
    if pd.api.types.is_datetime64_any_dtype(ts.dtype):
        return ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if pd.api.types.is_integer_dtype(ts.dtype):
        return ts.to_numpy(dtype=np.int64) * 1_000_000_000
    raise DataValidationError(f"timestamp has dtype {ts.dtype}; expected datetime64 or integer Unix seconds.")
