"""The ranker's feature matrix for serving candidates, from arrays: the pandas-free twin of
:meth:`~recsys.features.ranking_features.RankingFeatureBuilder.transform` for rows at one time.

A live request scores a few hundred candidates for one user on one partner, all at the same time
(the end of the serving log). Everything that depends on the item alone -- its attributes, its key
codes, the item / category / brand / shop statistics at that time -- is computed once for every
catalogue position by :meth:`CandidateFeatures.build`; a request then gathers rows and counts only
what involves its user (the user's and partner's statistics, user x category, the user's own and
friends' history with each candidate, the brand lifecycle stage). The values are bit for bit those
``transform`` gives (``tests/test_candidate_features.py``); rows at any other time go through
``transform``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.features.cvr_stats import DEFAULT_HIERARCHY, _smooth

__all__ = ["CandidateFeatures"]

_ITEM_KEYS = ("category", "brand", "shop", "item")
_STATS = ("log_imp", "log_clk", "log_buy", "ctr", "cvr")


def _codes(index: pd.Index, values: np.ndarray) -> np.ndarray:
    idx = index.get_indexer(values)
    return np.where(idx < 0, len(index), idx).astype(np.int64)


class CandidateFeatures:
    """Per-position arrays and per-code statistics of a fitted builder at time ``as_of``; see the module docstring.

    Build with :meth:`build`; :meth:`matrix` gives the feature matrix of (request, candidate) rows.
    """

    def __init__(self, builder: Any, t: int, item: dict, tables: dict, names: frozenset) -> None:
        self.builder = builder
        self.t = t
        self.item = item
        self.tables = tables
        self.names = names
        self._memo: dict[str, dict] = {}

    @classmethod
    def build(cls, builder: Any, item_ids: np.ndarray, as_of: pd.Timestamp) -> CandidateFeatures:
        """Arrays for catalogue positions ``item_ids`` (row i = position i) at time ``as_of``."""
        t = int(np.array([pd.Timestamp(as_of).to_datetime64()], dtype="datetime64[ns]").astype(np.int64)[0])
        items = builder.items_.reindex(item_ids)
        price = items["price"].to_numpy(dtype=np.float64)
        item = {"price": price, "rate": items["commission_rate"].to_numpy(dtype=np.float64),
                "coupon": items["coupon"].to_numpy(dtype=np.float64) if "coupon" in items.columns
                else np.zeros(len(price)),
                "item_ix": _codes(builder._items_ix, np.asarray(item_ids)),
                "brand_ix": _codes(builder._brands, items["brand"].to_numpy())}
        names = {"price", "log_price", "commission_rate", "log_commission_value", "coupon", "coupon_share",
                 "two_tower_score", "two_tower_rank", "brand_stage", "user_brand_log_seen"}
        names |= {f"friends_{n}" for n in builder._friends} | {f"user_item_log_{n}" for n in builder._own}
        tables: dict = {}
        if builder.include_cvr:
            st = builder.stats_
            frame = pd.DataFrame({"item_id": item_ids})
            for key in _ITEM_KEYS:
                if key in st._active:
                    item[f"code_{key}"] = st._codes(frame, key, grow=False)
            tables = cls._item_tables(st, t)
            names |= {f"{k}_{w.name}_{s}" for w in st._windows for k in st._active if k in st.keys for s in _STATS}
        return cls(builder, t, item, tables, frozenset(names))

    @staticmethod
    def _item_tables(st: Any, t: int) -> dict:
        """Per window: the global rates and, per item-side key, counts (and rates where the parent is global)
        of every code at time ``t`` (codes include the one for unseen values)."""
        out: dict = {}
        for w in st._windows:
            g_ctr, g_cvr = st._global_rates(np.array([t], dtype=np.int64), w)
            per: dict = {"global": (g_ctr, g_cvr)}
            for key in _ITEM_KEYS:
                if key not in st._active:
                    continue
                codes = np.arange(len(st._vocab[key]) + 1, dtype=np.int64)
                counts = _counts(st, key, codes, np.full(len(codes), t, np.int64))[w.name]
                if DEFAULT_HIERARCHY[key] == "global":
                    imp, clk, m_clk, buy = counts
                    counts = counts + (_smooth(clk, imp, g_ctr, st._strengths(key, "ctr", None)),
                                       _smooth(buy, m_clk, g_cvr, st._strengths(key, "cvr", None)))
                per[key] = counts
            if "category" in st._active:
                n_cat = np.arange(len(st._vocab["category"]) + 1, dtype=np.int64)
                per["strength"] = {(k, r): st._strengths(k, r, n_cat) for k in ("item", "user_category")
                                   if k in st._active for r in ("ctr", "cvr")}
            out[w.name] = per
        return out

    def supports(self, columns) -> bool:
        """Whether every one of ``columns`` can be computed here."""
        return set(columns) <= self.names

    def matrix(self, user_ids: np.ndarray, media_ids: np.ndarray, req: np.ndarray, pos: np.ndarray,
               two_tower_score: np.ndarray, two_tower_rank: np.ndarray, columns) -> np.ndarray:
        """Feature matrix (float64, one column per name in ``columns``) of rows (request ``req``, position ``pos``).

        ``user_ids`` and ``media_ids`` (object arrays, None for no partner) hold one value per request.
        """
        cols = _Columns(len(pos), req)
        item, b = self.item, self.builder
        price, rate, coupon = item["price"][pos], item["rate"][pos], item["coupon"][pos]
        cols.row.update({"price": price, "log_price": np.log1p(price), "commission_rate": rate,
                         "log_commission_value": np.log1p(price * rate), "coupon": coupon,
                         "coupon_share": np.where(price > 0, coupon / np.maximum(price, 1e-9), 0.0),
                         "two_tower_score": two_tower_score, "two_tower_rank": two_tower_rank})
        t = np.array([self.t], dtype=np.int64)
        u = self._lookup("builder_user", b._users, user_ids)[req]
        ui = u * np.int64(len(b._items_ix) + 1) + item["item_ix"][pos]
        for name, index in b._friends.items():
            window = None if b.friend_window is None else int(pd.Timedelta(b.friend_window).value)
            cols.row[f"friends_{name}"] = np.log1p(index.count(ui, t, window))
        for name, index in b._own.items():
            cols.row[f"user_item_log_{name}"] = np.log1p(index.count(ui, t))
        ub = u * np.int64(len(b._brands) + 1) + item["brand_ix"][pos]
        seen, engaged, bought = (b._stage[s].count(ub, t) for s in ("seen", "engaged", "bought"))
        cols.row["brand_stage"] = np.select([bought >= 2, bought == 1, engaged > 0, seen > 0], [4, 3, 2, 1], 0)
        cols.row["user_brand_log_seen"] = np.log1p(seen)
        if self.tables:
            self._stats(cols, user_ids, media_ids, req, pos)
        return cols.matrix(columns)

    def _lookup(self, name: str, index: pd.Index, values) -> np.ndarray:
        """Codes of ``values`` in ``index`` (len(index) when absent), as ``index.get_indexer`` gives them;
        each distinct value is looked up once and remembered (ids and partners recur from request to request)."""
        memo = self._memo.setdefault(name, {})
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values):
            try:
                out[i] = memo[v]
            except (KeyError, TypeError):
                code = int(_codes(index, np.asarray([v], dtype=object))[0])
                try:
                    if len(memo) > 1_000_000:
                        memo.clear()
                    memo[v] = code
                except TypeError:  # unhashable: just not remembered
                    pass
                out[i] = code
        return out

    def _stats(self, cols: _Columns, users, media, req: np.ndarray, pos: np.ndarray) -> None:
        st, item = self.builder.stats_, self.item
        t_req = np.full(len(users), self.t, np.int64)
        req_codes = {}
        if "user" in st._active:
            req_codes["user"] = self._lookup("user", st._vocab["user"], users)
        if "media" in st._active:
            req_codes["media"] = self._lookup("media", st._vocab["media"], media)
        cat = item["code_category"][pos] if "code_category" in item else None
        counts = {k: _counts(st, k, c, t_req) for k, c in req_codes.items()}
        uc_inv = None
        if "user_category" in st._active:
            keys = req_codes["user"][req] * np.int64(len(st._vocab["category"]) + 1) + cat
            uniq, uc_inv = np.unique(keys, return_inverse=True)
            counts["user_category"] = _counts(st, "user_category", uniq, t_req[:1])
        for w in st._windows:
            per = self.tables[w.name]
            g_ctr, g_cvr = per["global"]
            rates: dict[str, tuple] = {}
            for key in st._active:
                if key in req_codes:
                    imp, clk, m_clk, buy = counts[key][w.name]
                    ctr = _smooth(clk, imp, g_ctr, st._strengths(key, "ctr", None))
                    cvr = _smooth(buy, m_clk, g_cvr, st._strengths(key, "cvr", None))
                    target = cols.req
                elif key == "user_category":
                    imp, clk, m_clk, buy = (c[uc_inv] for c in counts[key][w.name])
                    ctr, cvr = self._child_rates(per, rates, key, cat, imp, clk, m_clk, buy)
                    target = cols.row
                else:
                    code = item[f"code_{key}"][pos]
                    imp, clk, m_clk, buy = (c[code] for c in per[key][:4])
                    if key == "item":
                        ctr, cvr = self._child_rates(per, rates, key, cat, imp, clk, m_clk, buy)
                    else:
                        ctr, cvr = per[key][4][code], per[key][5][code]
                    target = cols.row
                rates[key] = (ctr, cvr)
                if key in st.keys:
                    p = f"{key}_{w.name}_"
                    target.update({p + "log_imp": np.log1p(imp), p + "log_clk": np.log1p(clk),
                                   p + "log_buy": np.log1p(buy), p + "ctr": ctr, p + "cvr": cvr})

    @staticmethod
    def _child_rates(per: dict, rates: dict, key: str, cat: np.ndarray, imp, clk, m_clk, buy) -> tuple:
        """Rates of a key whose parent is the category (item, user x category), smoothed as in transform."""
        p_ctr, p_cvr = rates["category"]
        s_ctr, s_cvr = per["strength"][(key, "ctr")], per["strength"][(key, "cvr")]
        s_ctr = s_ctr[cat] if isinstance(s_ctr, np.ndarray) else s_ctr
        s_cvr = s_cvr[cat] if isinstance(s_cvr, np.ndarray) else s_cvr
        return _smooth(clk, imp, p_ctr, s_ctr), _smooth(buy, m_clk, p_cvr, s_cvr)


def _counts(st: Any, key: str, codes: np.ndarray, t: np.ndarray) -> dict[str, tuple]:
    """Per window name: (impressions, clicks, matured clicks, purchases) of ``codes`` before ``t``, as transform
    counts them."""
    ns = [w.ns for w in st._windows]
    imp = st._index[(key, "impression")].count_windows(codes, t, ns)
    clk = st._index[(key, "click")].count_windows(codes, t, ns)
    m_clk = st._index[(key, "click")].count_windows(codes, t - st._delay, ns) if st._delay else clk
    buy = st._index[(key, "purchase")].count_windows(codes, t - st._delay, ns)
    return {w.name: (imp[i], clk[i], m_clk[i], buy[i]) for i, w in enumerate(st._windows)}


class _Columns:
    """Named columns of a matrix being built: per row (``row``) or per request (``req``, spread to its rows)."""

    def __init__(self, n: int, req_of_row: np.ndarray) -> None:
        self.n, self.req_of_row = n, req_of_row
        self.row: dict[str, np.ndarray] = {}
        self.req: dict[str, np.ndarray] = {}

    def matrix(self, columns) -> np.ndarray:
        # the builder stores every feature as float32; the ranker reads them as float64
        out = np.empty((self.n, len(columns)), dtype=np.float32)
        for j, name in enumerate(columns):
            if name in self.row:
                out[:, j] = self.row[name]
            else:
                out[:, j] = np.asarray(self.req[name], dtype=np.float64).astype(np.float32)[self.req_of_row]
        return out.astype(np.float64)
