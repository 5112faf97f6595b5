"""Live events grow the per-user serving state in proportion to the users they touch (recsys/feed/live.py).

:func:`grown_users` returns a NEW :class:`~recsys.feed.users.UserState` equal to one built from the grown
serving log: the rows of the users in the batch (history, purchases, tower inputs with their dominant
partner) recomputed from their own events, every other row kept, new users appended in the order a rebuild
gives them. :func:`grown_partner_log` does the same for the per-partner histories of
:mod:`recsys.feed.partners`. Both need the batch to sit at the end of the log (events in time order); the
caller rebuilds otherwise. What they still read in full: one pass over the log's user ids to find the batch
users' events, and a copy of the row arrays (NumPy, no per-row Python).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.feed.users import UserState, _dominant_media, _lookup
from recsys.ids import shared_index

__all__ = ["grown_users", "grown_partner_log"]


def _splice(old: sp.csr_matrix, n_rows: int, rows: np.ndarray, sub: sp.csr_matrix) -> sp.csr_matrix:
    """A CSR of ``n_rows`` rows: row ``rows[i]`` is ``sub``'s row i, every other row below ``old``'s count is
    ``old``'s (entries kept in their order), the rest empty."""
    n_old = old.shape[0]
    old_len = np.diff(old.indptr).astype(np.int64)
    sub_len = np.diff(sub.indptr).astype(np.int64)
    lengths = np.zeros(n_rows, np.int64)
    lengths[:n_old] = old_len
    lengths[rows] = sub_len
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.empty(int(indptr[-1]), old.indices.dtype)
    data = np.empty(int(indptr[-1]), old.data.dtype)
    keep = np.ones(n_old, bool)
    keep[rows[rows < n_old]] = False
    row_of = np.repeat(np.arange(n_old), old_len)
    m = keep[row_of]
    dest = indptr[row_of[m]] + (np.flatnonzero(m) - old.indptr[row_of[m]])
    indices[dest], data[dest] = old.indices[m], old.data[m]
    srow = np.repeat(rows, sub_len)
    dest = indptr[srow] + (np.arange(len(srow)) - np.repeat(sub.indptr[:-1], sub_len))
    indices[dest], data[dest] = sub.indices, sub.data.astype(data.dtype)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, old.shape[1]))


def _segments(users: pd.DataFrame | None, column: str, uid: np.ndarray) -> np.ndarray:
    """The users table's segment of each id ('' when absent), as UserState reads it."""
    if users is None or column not in users.columns:
        return np.full(len(uid), "", dtype=object)
    s = users.drop_duplicates("user_id").set_index("user_id")[column].reindex(uid).astype(object)
    return s.where(s.notna(), "").astype(str).to_numpy(dtype=object)


def grown_users(old: UserState, log: pd.DataFrame, add: pd.DataFrame, users: pd.DataFrame | None,
                catalogue: Any) -> UserState:
    """``old`` with the batch ``add`` (the last rows of ``log``) applied (module docstring)."""
    import torch

    batch = add["user_id"].drop_duplicates()
    new_users = batch[_lookup(old.ids, batch.to_numpy()) < 0]
    ids = shared_index(pd.unique(pd.concat([old.ids.to_series(), new_users], ignore_index=True)))
    uid = batch.to_numpy()
    rows = ids.get_indexer(uid).astype(np.int64)
    n_old, n = len(old.ids), len(ids)
    mine = log[log["user_id"].isin(uid).to_numpy()]  # the batch users' whole history
    pipeline = old.pipeline
    media = _dominant_media(mine, uid, old.context_key) if old.context_key else None
    enc = pipeline.encode_users(uid, users=users, media_ids=media)
    at = torch.from_numpy(rows)
    feats = {}
    for k, v in old.feats.items():
        grown = torch.cat([v, v.new_zeros((n - n_old, *v.shape[1:]))])
        grown[at] = enc[k].to(v.dtype)
        feats[k] = grown
    out = UserState.__new__(UserState)
    out.pipeline, out.segment_column, out.ids, out.context_key = pipeline, old.segment_column, ids, old.context_key
    out.feats = feats
    out.history = _splice(old.history[:n_old], n + 1, rows, pipeline.history_matrix(mine, row_ids=uid))
    out.has_history = np.diff(out.history.indptr)[:-1] > 0
    bought = mine[mine["event_type"].astype(str) == "purchase"]
    r = pd.Index(uid).get_indexer(bought["user_id"].to_numpy())
    c = catalogue.positions(bought["item_id"].to_numpy())
    ok = (r >= 0) & (c >= 0)
    sub = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (r[ok], c[ok])),
                        shape=(len(uid), old.purchases.shape[1]))
    sub.sum_duplicates()
    out.purchases = _splice(old.purchases, n, rows, sub)
    out.segments = np.concatenate([old.segments, _segments(users, old.segment_column, ids.to_numpy()[n_old:])])
    out.profile_keys = old.profile_keys
    return out


def grown_partner_log(old_state: Any, log: pd.DataFrame, users: UserState, add: pd.DataFrame) -> Any:
    """The ``partner_log`` of the state serving ``log`` and ``users``, from the old state's and the batch
    ``add`` (the last rows of ``log``); None (rebuilt on first use) when the old one was never built or the
    batch names a partner the log did not have."""
    hit = old_state.partner_log
    if hit is None or hit[0] is not old_state.tables["events"] or hit[1] is not old_state.users:
        return None
    partners, index = hit[2]
    if "media_id" not in add.columns or index is None:
        return None
    media = add["media_id"]
    if not set(media.dropna().astype(str).unique().tolist()) <= partners:
        return None
    keep = media.notna().to_numpy(dtype=bool, copy=True)
    if "event_type" in add.columns:
        keep &= add["event_type"].astype(str).isin(list(old_state.pipeline.positive_events)).to_numpy()
    rows = users.rows(add["user_id"].to_numpy()[keep]) if keep.any() else np.zeros(0, np.int64)
    codes = np.array([index["codes"][m] for m in media[keep].astype(str).tolist()], dtype=np.int64)
    key = rows.astype(np.int64) * len(index["codes"]) + codes
    ok = rows >= 0
    order = np.argsort(key[ok], kind="stable")
    new_keys, new_items = key[ok][order], add["item_id"].to_numpy()[keep][ok][order]
    at = np.searchsorted(index["keys"], new_keys, "right")  # after equal keys: the batch comes last in the log
    grown = {"codes": index["codes"], "keys": np.insert(index["keys"], at, new_keys),
             "items": np.insert(index["items"], at, new_items)}
    return (log, users, (partners, grown))
