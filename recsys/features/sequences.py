"""Behaviour sequences: each user's last N items, oldest to newest, as a CSR matrix or lists.

The CSR layout (row = user index, the row's column indices in time order) is what the two-tower
trainer and the user tower consume: ``indptr`` gives each user's slice, EmbeddingBag style.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import DataValidationError

__all__ = ["sequence_matrix", "last_n_items", "append_to_history", "history_tensors", "history_arrays", "row_slices"]


def sequence_matrix(user_idx: np.ndarray, item_idx: np.ndarray, order: np.ndarray | None, *, n_users: int,
                    n_items: int, max_len: int | None = 50, dedupe: bool = True) -> sp.csr_matrix:
    """Users x items CSR whose row ``u`` lists u's last ``max_len`` items, oldest first.

    ``order`` (timestamps or any sortable key; ``None`` = input order) sets the time order; with
    ``dedupe`` an item seen twice keeps only its latest position. ``data`` holds 1-based positions.
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    if user_idx.shape != item_idx.shape:
        raise DataValidationError(f"user_idx and item_idx must have the same length, got {user_idx.shape} "
                                  f"and {item_idx.shape}")
    if len(user_idx) and (user_idx.min() < 0 or user_idx.max() >= n_users or item_idx.min() < 0
                          or item_idx.max() >= n_items):
        raise DataValidationError(f"indices out of range: users must lie in [0, {n_users}) and items in "
                                  f"[0, {n_items}); encode raw ids with a fitted Vocabulary first")
    seq = np.arange(len(user_idx)) if order is None else np.asarray(order)
    df = pd.DataFrame({"u": user_idx, "i": item_idx, "t": seq, "k": np.arange(len(user_idx))})
    df = df.sort_values(["u", "t", "k"], kind="stable")
    if dedupe:
        df = df.drop_duplicates(["u", "i"], keep="last")
    if max_len is not None:
        df = df.groupby("u", sort=False).tail(max_len)
    counts = np.bincount(df["u"].to_numpy(), minlength=n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    pos = df.groupby("u", sort=False).cumcount().to_numpy() + 1
    return sp.csr_matrix((pos.astype(np.float32), df["i"].to_numpy(), indptr), shape=(n_users, n_items))


def last_n_items(csr: sp.csr_matrix, users: np.ndarray, n: int) -> list[np.ndarray]:
    """The last ``n`` items (oldest first) of each user in ``users`` from a :func:`sequence_matrix`."""
    out = []
    for u in np.asarray(users, dtype=np.int64):
        row = csr.indices[csr.indptr[u]:csr.indptr[u + 1]]
        out.append(row[-n:] if n > 0 else row[:0])
    return out


def append_to_history(csr: sp.csr_matrix, user: int, items: np.ndarray, max_len: int | None = 50) -> sp.csr_matrix:
    """A copy of ``csr`` with ``items`` appended to ``user``'s sequence (newest last), trimmed to ``max_len``."""
    rows = [csr.indices[csr.indptr[u]:csr.indptr[u + 1]] for u in range(csr.shape[0])]
    merged = [i for i in rows[user] if i not in set(np.asarray(items).tolist())] + list(np.asarray(items))
    rows[user] = np.asarray(merged[-max_len:] if max_len else merged, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    data = np.concatenate([np.arange(1, len(r) + 1) for r in rows]).astype(np.float32) if indptr[-1] else np.zeros(0)
    ind = np.concatenate(rows) if indptr[-1] else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((data, ind, indptr), shape=csr.shape)


def history_tensors(csr: sp.csr_matrix, users: np.ndarray, drop: np.ndarray | None = None) -> dict:
    """``history`` (flat item indices) and ``history_offsets`` tensors for rows ``users`` of ``csr``.

    The one place both training and inference turn sequences into tower inputs. ``drop`` (bool,
    one per flat entry) removes entries, e.g. for history dropout during training.
    """
    import torch

    return {k: torch.from_numpy(v) for k, v in history_arrays(csr, users, drop).items()}


def history_arrays(csr: sp.csr_matrix, users: np.ndarray, drop: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`history_tensors` as int64 NumPy arrays."""
    users = np.asarray(users, dtype=np.int64)
    if len(users) == 1 and drop is None:  # one user (the serving path): a slice of the CSR
        r = int(users[0])
        return {"history": csr.indices[csr.indptr[r]:csr.indptr[r + 1]].astype(np.int64),
                "history_offsets": np.zeros(1, np.int64)}
    starts, ends = csr.indptr[users], csr.indptr[users + 1]
    lens = ends - starts
    rows = np.repeat(np.arange(len(users)), lens)
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    cols = csr.indices[pos].astype(np.int64)
    if drop is not None:
        rows, cols = rows[~drop], cols[~drop]
    offsets = np.searchsorted(rows, np.arange(len(users))).astype(np.int64)
    return {"history": cols, "history_offsets": offsets}


def row_slices(csr: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and column indices of ``csr`` restricted to ``users`` (rows 0..len-1)."""
    starts, ends = csr.indptr[users], csr.indptr[users + 1]
    lens = ends - starts
    rows = np.repeat(np.arange(len(users)), lens)
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    return rows, csr.indices[pos]
