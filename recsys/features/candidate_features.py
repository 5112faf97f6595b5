"""The ranker's feature matrix for serving candidates, from arrays: the pandas-free twin of
:meth:`~recsys.features.ranking_features.RankingFeatureBuilder.transform` for rows at one time.

A live request scores a few hundred candidates for one user on one partner, all at the same time
(the end of the serving log). Everything that depends on one key alone -- an item's attributes and
codes, the item / category / brand / shop / user / partner statistics at that time -- is computed
once by :meth:`CandidateFeatures.build` (per catalogue position, or per key code); a request then
gathers rows and counts only what involves a pair: user x category, the user's own and friends'
history with each candidate, the user's lifecycle stage with each brand (searching only that user's
block of each event index). The values are bit for bit those ``transform`` gives
(``tests/test_candidate_features.py``); rows at any other time go through ``transform``. The arrays
belong to the builder as fitted: a refitted or updated builder needs new ones (a new serving state).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.features.benefits import with_benefits
from recsys.features.candidate_blocks import _block, _codes, _counts, _rates, child_rates, item_blocks

__all__ = ["CandidateFeatures"]

# up to this many rows, a block's columns are gathered in one 2-D fancy index (a few hundred rows: the per-call cost
# of one take per column dominates); above it, one np.take per column (large batches: no temporary block)
_ONE_GATHER_ROWS = 4096
_STATS = ("log_imp", "log_clk", "log_buy", "ctr", "cvr")
_ROW_COLUMNS = ("price", "log_price", "commission_rate", "log_commission_value", "coupon", "coupon_share", "log_price_paid",
                "two_tower_score", "two_tower_rank", "brand_stage", "user_brand_log_seen", "item_to_item_score")


class CandidateFeatures:
    """Per-position arrays and per-code feature blocks of a fitted builder at time ``t`` (int64 ns); see the
    module docstring. Build with :meth:`build`; :meth:`matrix` gives the matrix of (request, candidate) rows."""

    def __init__(self, builder: Any, t: int, item: dict, blocks: dict, parents: dict, names: frozenset) -> None:
        self.builder = builder
        self.t = t
        # one gather per candidate: attributes and codes packed row by row (a cache line, not one per array)
        self.attrs = np.stack([item.pop("price"), item.pop("rate"), item.pop("coupon")], axis=1)
        self.benefits = getattr(builder, "benefits_", None)  # partner benefits (on the builder's item order)
        self.builder_pos = item.pop("builder_pos", None)  # each position's row in the builder's items
        self.code_names = list(item)
        self.codes = np.stack([item[k] for k in self.code_names], axis=1)
        self.blocks = blocks
        self.parents = parents
        self.names = names
        self._memo: dict = {}  # name -> {value: code}; (name, None) -> the code of None
        self.friend_window = None if builder.friend_window is None else int(pd.Timedelta(builder.friend_window).value)
        self._plans: dict[tuple, tuple] = {}
        self._columns: dict[str, np.ndarray] = {}  # key -> its block, column by column

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
        if getattr(builder, "benefits_", None) is not None:
            item["builder_pos"] = builder.items_.index.get_indexer(np.asarray(item_ids))
        names = set(_ROW_COLUMNS) | {f"friends_{n}" for n in builder._friends}
        names |= {f"user_item_log_{n}" for n in builder._own}
        blocks: dict = {}
        parents: dict = {}
        if builder.include_cvr:
            st = builder.stats_
            frame = pd.DataFrame({"item_id": item_ids})
            for key in ("category", "brand", "shop", "item"):
                if key in st._active:
                    item[f"code_{key}"] = st._codes(frame, key, grow=False)
            blocks, parents = item_blocks(st, t)
            names |= {f"{k}_{w.name}_{s}" for w in st._windows for k in st._active if k in st.keys for s in _STATS}
        return cls(builder, t, item, blocks, parents, frozenset(names))

    _child_rates = staticmethod(child_rates)  # (parents, key, category codes, counts) -> (ctr, cvr)

    def supports(self, columns) -> bool:
        """Whether every one of ``columns`` can be computed here."""
        return set(columns) <= self.names

    def matrix(self, user_ids: np.ndarray, media_ids: np.ndarray, req: np.ndarray, pos: np.ndarray,
               two_tower_score: np.ndarray, two_tower_rank: np.ndarray, columns, friends: list | None = None,
               *, item_score: np.ndarray | None = None) -> np.ndarray:
        """Feature matrix (float32, column-major; one column per name in ``columns``) of rows (request ``req``,
        position ``pos``).

        ``user_ids`` and ``media_ids`` (object arrays, None for no partner) hold one value per request;
        ``friends`` (optional) one list of friends per request, or None to keep the social graph's (as
        ``transform(rows, friends=...)``); ``item_score`` (optional) the rows' ``item_to_item_score`` (0 without).
        """
        row_dest, block_dest = self._plan(tuple(columns))
        row, item = self._item_columns(pos, two_tower_score, two_tower_rank)
        row["item_to_item_score"] = np.zeros(len(pos)) if item_score is None else item_score
        if self.benefits is not None:
            row = with_benefits(row, self.benefits, self.builder_pos[pos], np.asarray(media_ids, dtype=object)[req],
                                self.t)
        row.update(self._user_item_columns(user_ids, req, item, friends))
        # the builder stores every feature as float32, and so does this matrix: the ranker's walk reads float32 as
        # the float64 it converts to exactly, so a float64 copy (8 bytes a value) would only cost time
        out = np.empty((len(columns), len(pos)), dtype=np.float32)  # column by column: contiguous writes
        for name, j in row_dest:
            out[j] = row[name]
        if block_dest:
            blocks = self._request_blocks(user_ids, media_ids, req, item)
            for key, dest, src in block_dest:
                block = blocks[key]
                if isinstance(block, tuple):  # (a table by column, the table row of each candidate row)
                    table, at = block
                    if len(at) <= _ONE_GATHER_ROWS:  # a request's rows: one 2-D gather, not a call per column
                        out[dest] = table[src[:, None], at[None, :]]
                    else:
                        for d, j in zip(dest.tolist(), src.tolist(), strict=True):
                            np.take(table[j], at, out=out[d])
                else:
                    out[dest] = block.T[src]
        return out.T

    def _by_column(self, key: str) -> np.ndarray:
        """The block of ``key`` stored column by column (read by :meth:`matrix`; the item's with its unseen rows
        after the seen ones)."""
        hit = self._columns.get(key)
        if hit is None:
            table = np.concatenate([self.blocks["item"], self.blocks["item_unseen"]]) if key == "item" else \
                self.blocks[key]
            hit = self._columns[key] = np.ascontiguousarray(table.T)
        return hit

    def _item_columns(self, pos: np.ndarray, two_tower_score: np.ndarray, two_tower_rank: np.ndarray
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The row columns read off the candidate item alone (and the two-tower's score and rank), and the
        item's codes by name."""
        attrs, codes = self.attrs[pos], self.codes[pos]
        price, rate, coupon = attrs[:, 0], attrs[:, 1], attrs[:, 2]
        item = {k: codes[:, j] for j, k in enumerate(self.code_names)}
        row = {"price": price, "log_price": np.log1p(price), "commission_rate": rate,
               "log_commission_value": np.log1p(price * rate), "coupon": coupon,
               "coupon_share": np.where(price > 0, coupon / np.maximum(price, 1e-9), 0.0),
               "log_price_paid": np.log1p(np.maximum(price - coupon, 0.0)),
               "two_tower_score": two_tower_score, "two_tower_rank": two_tower_rank}
        return row, item

    def _user_item_columns(self, user_ids: np.ndarray, req: np.ndarray, item: dict[str, np.ndarray],
                           friends: list | None) -> dict[str, np.ndarray]:
        """The row columns of the (user, item) and (user, brand) pair: friends' and the user's own events on the
        item, and the user's stage with the brand."""
        b = self.builder
        row = {}
        t = np.array([self.t], dtype=np.int64)
        u = self._lookup("builder_user", b._users, user_ids)
        n_items, n_brands = np.int64(len(b._items_ix) + 1), np.int64(len(b._brands) + 1)
        ui = u[req] * n_items + item["item_ix"]
        ub = u[req] * n_brands + item["brand_ix"]
        one = len(u) == 1  # one user: search only that user's block of each index
        ui_range = (int(u[0] * n_items), int((u[0] + 1) * n_items)) if one else None
        ub_range = (int(u[0] * n_brands), int((u[0] + 1) * n_brands)) if one else None
        window = self.friend_window
        for name, index in b._friends.items():
            row[f"friends_{name}"] = np.log1p(index.count_windows(ui, t, [window], ui_range)[0])
        if friends is not None and b._friends:  # the request lists its friends: those, not the graph's
            listed = np.flatnonzero(np.asarray([f is not None for f in friends], bool)[req])
            counts = b.listed_friends_counts([friends[r] for r in req[listed]], item["item_ix"][listed], t)
            for name, c in counts.items():
                row[f"friends_{name}"][listed] = np.log1p(c)
        for name, index in b._own.items():
            row[f"user_item_log_{name}"] = np.log1p(index.count_windows(ui, t, [None], ui_range)[0])
        seen, engaged, bought = (b._stage[s].count_windows(ub, t, [None], ub_range)[0]
                                 for s in ("seen", "engaged", "bought"))
        # np.select([bought >= 2, bought == 1, engaged > 0, seen > 0], [4, 3, 2, 1], 0), without its overhead
        row["brand_stage"] = np.where(bought >= 2, 4, np.where(bought == 1, 3, np.where(engaged > 0, 2,
                                                                                        (seen > 0).astype(np.int64))))
        row["user_brand_log_seen"] = np.log1p(seen)
        return row

    def _plan(self, columns: tuple) -> tuple[list, list]:
        """Where each column comes from: a row column, or column j of a key's block."""
        hit = self._plans.get(columns)
        if hit is not None:
            return hit
        row_dest, by_key = [], {}
        windows = [w.name for w in self.builder.stats_._windows] if self.blocks or self.parents else []
        for j, name in enumerate(columns):
            if not name.endswith(tuple(f"_{s}" for s in _STATS)) or name in _ROW_COLUMNS or \
                    name.startswith(("friends_", "user_item_log_")):
                row_dest.append((name, j))
                continue
            for key in ("user_category", "category", "brand", "shop", "media", "user", "item"):
                prefix = f"{key}_"
                rest = name[len(prefix):] if name.startswith(prefix) else None
                w = next((w for w in windows if rest is not None and rest.startswith(f"{w}_")), None)
                if w is not None and rest[len(w) + 1:] in _STATS:
                    src = windows.index(w) * len(_STATS) + _STATS.index(rest[len(w) + 1:])
                    by_key.setdefault(key, ([], []))
                    by_key[key][0].append(j)
                    by_key[key][1].append(src)
                    break
            else:
                raise KeyError(f"no candidate feature named {name!r}")
        block_dest = [(k, np.asarray(d), np.asarray(s)) for k, (d, s) in by_key.items()]
        self._plans[columns] = (row_dest, block_dest)
        return row_dest, block_dest

    def _request_blocks(self, users, media, req: np.ndarray, item: dict) -> dict[str, np.ndarray]:
        """Every statistics block gathered for the rows (``item``: the rows' codes): item-side keys from the
        tables, the user's and the partner's counted per request, user x category per distinct pair."""
        st, parents = self.builder.stats_, self.parents
        # item-side and per-request blocks as (table by column, row of each candidate): matrix() gathers each column
        out: dict = {k: (self._by_column(k), item[f"code_{k}"]) for k in ("category", "brand", "shop")
                     if k in self.blocks}
        if "item" in self.blocks:  # an unseen item (code n_items or more) reads its category's unseen-item row
            n_items = len(self.blocks["item"])
            code = item["code_item"]
            out["item"] = (self._by_column("item"), np.where(code < n_items, code, n_items + item["code_category"]))
        t_req = np.full(len(users), self.t, np.int64)
        g_ctr, g_cvr = parents["global"]
        codes = {}
        for key, values in (("user", users), ("media", media)):
            if key in st._active:
                codes[key] = self._lookup(key, st._vocab[key], values)
                if key in self.blocks:  # the user's and the partner's statistics, computed at load
                    out[key] = (self._by_column(key), codes[key][req])
                elif key in st.keys:
                    counts = _counts(st, key, codes[key], t_req)
                    rates = _rates(counts, g_ctr, g_cvr, st._strengths(key, "ctr", None),
                                   st._strengths(key, "cvr", None))
                    out[key] = _block(counts, *rates)[req]
        if "user_category" in st.keys:
            cat = item["code_category"]
            n_cat = np.int64(len(st._vocab["category"]) + 1)
            keys = codes["user"][req] * n_cat + cat
            uniq, inv = np.unique(keys, return_inverse=True)
            u = codes["user"]
            key_range = (int(u[0] * n_cat), int((u[0] + 1) * n_cat)) if len(u) == 1 else None
            # one block row per distinct (user, category) pair, then gathered: a feed spans a few categories
            counts = _counts(st, "user_category", uniq, t_req[:1], key_range)
            block = _block(counts, *self._child_rates(parents, "user_category", uniq % n_cat, counts))
            out["user_category"] = block[inv.reshape(-1)]
        return out

    def _lookup(self, name: str, index: pd.Index, values) -> np.ndarray:
        """Codes of ``values`` in ``index`` (len(index) when absent), as ``index.get_indexer`` gives them: ints
        and strings from a dict of the index (built on first use), anything else from the index itself."""
        memo = self._memo.get(name)
        if memo is None:  # every value of the index: an int or str query matches what the index's hash table would
            memo = self._memo[name] = {}
            for i, v in enumerate(index.tolist()):
                try:
                    memo.setdefault(v, i)
                except TypeError:
                    pass
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values):
            if isinstance(v, (int, str, np.integer)) and not isinstance(v, (bool, np.bool_)):
                out[i] = memo.get(v, len(index))
            elif v is None:  # no partner: the index's answer for None, asked once
                hit = self._memo.get((name, None))
                if hit is None:
                    hit = self._memo[(name, None)] = int(_codes(index, np.asarray([None], dtype=object))[0])
                out[i] = hit
            else:  # floats, other types: the index itself decides
                out[i] = int(_codes(index, np.asarray([v], dtype=object))[0])
        return out
