"""Per-user serving state: the user tower's inputs, behaviour history, purchases and segments.

Everything is computed once from the serving log with the fitted feature pipeline (the same
encoders as training), so a request only gathers rows: no pass over the event log per request.
Unknown users get tower inputs from the pipeline too (their id maps to the out-of-vocabulary row,
their profile comes from the request, their history is empty).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.feed.catalogue import Catalogue
from recsys.ids import shared_index

__all__ = ["UserState", "HISTORY_KEYS"]

HISTORY_KEYS = ("history", "history_offsets")


def _lookup(index: pd.Index, values) -> np.ndarray:
    arr = np.asarray(values, dtype=object).reshape(-1)
    if not len(arr):
        return np.zeros(0, np.int64)
    try:
        return index.get_indexer(arr).astype(np.int64)
    except (TypeError, ValueError):
        return index.get_indexer(pd.Index(arr, dtype=object)).astype(np.int64)


def _dominant_media(events: pd.DataFrame, user_ids: np.ndarray, column: str) -> np.ndarray | None:
    """Each user's most frequent partner in the log (ties: first in sorted order), None when absent."""
    if column not in events.columns:
        return None
    ev = events[["user_id", column]].dropna()
    counts = ev.groupby(["user_id", ev[column].astype(str)], sort=True).size().rename("n").reset_index()
    counts = counts.sort_values(["user_id", "n"], ascending=[True, False], kind="stable")
    top = counts.drop_duplicates("user_id").set_index("user_id")[column]
    return top.reindex(user_ids).to_numpy(dtype=object)


class UserState:
    """Tower inputs (without media override), history CSR, purchase lists and segments of known users."""

    def __init__(self, pipeline: Any, events: pd.DataFrame, users: pd.DataFrame | None, catalogue: Catalogue, *,
                 segment_column: str = "segment") -> None:
        self.pipeline = pipeline
        self.segment_column = segment_column
        ids = [events["user_id"]] if users is None else [users["user_id"], events["user_id"]]
        self.ids = shared_index(pd.unique(pd.concat(ids, ignore_index=True)))
        uid = self.ids.to_numpy()
        ctx = pipeline.context_column if pipeline.context_ is not None else None
        self.context_key = ctx
        media = _dominant_media(events, uid, ctx) if ctx else None
        feats = pipeline.encode_users(uid, users=users, media_ids=media)
        self.feats = {k: v for k, v in feats.items() if k not in HISTORY_KEYS}
        hist = pipeline.history_matrix(events, row_ids=uid)
        # one extra empty row: the history of every unknown user
        self.history = sp.vstack([hist, sp.csr_matrix((1, hist.shape[1]), dtype=hist.dtype)]).tocsr()
        self.has_history = np.diff(self.history.indptr)[:-1] > 0
        self.purchases = self._purchases(events, catalogue)
        seg = None
        if users is not None and segment_column in users.columns:
            s = users.drop_duplicates("user_id").set_index("user_id")[segment_column]
            seg = s.reindex(uid).astype(object)
            seg = seg.where(seg.notna(), "").astype(str).to_numpy(dtype=object)
        self.segments = seg if seg is not None else np.full(len(uid), "", dtype=object)
        self.profile_keys = tuple(getattr(pipeline, "user_vocabs_", {}).keys())

    def _purchases(self, events: pd.DataFrame, catalogue: Catalogue) -> sp.csr_matrix:
        bought = events[events["event_type"].astype(str) == "purchase"]
        rows = _lookup(self.ids, bought["user_id"].to_numpy())
        cols = catalogue.positions(bought["item_id"].to_numpy())
        ok = (rows >= 0) & (cols >= 0)
        m = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (rows[ok], cols[ok])),
                          shape=(len(self.ids), max(len(catalogue), 1)))
        m.sum_duplicates()
        return m

    def rows(self, user_ids) -> np.ndarray:
        """Row of each user id (-1: unknown)."""
        ids = list(user_ids) if not isinstance(user_ids, (str, bytes)) else [user_ids]
        if len(ids) <= 64 and all(isinstance(u, (int, str, np.integer)) and not isinstance(u, bool) for u in ids):
            # the serving path: a few ids as Python values, answered from a dict (same rows as get_indexer)
            row_of = self.__dict__.get("_row_of")
            if row_of is None:
                row_of = self._row_of = {u: i for i, u in enumerate(self.ids.tolist())}
            return np.array([row_of.get(u, -1) for u in ids], dtype=np.int64)
        return _lookup(self.ids, user_ids)

    def bought(self, row: int) -> np.ndarray:
        """Catalogue positions the user bought (empty for unknown users)."""
        if row < 0:
            return np.zeros(0, np.int64)
        return self.purchases.indices[self.purchases.indptr[row]:self.purchases.indptr[row + 1]].astype(np.int64)

    def history_items(self, row: int) -> np.ndarray:
        """Pipeline item indices of the user's history, oldest first (empty for unknown users)."""
        r = len(self.ids) if row < 0 else row
        return self.history.indices[self.history.indptr[r]:self.history.indptr[r + 1]].astype(np.int64)

    def segment_of(self, row: int, context: dict | None) -> str:
        """The user's segment: the request's ``context['segment']`` wins, then the users table."""
        if context and context.get("segment") not in (None, ""):
            return str(context["segment"])
        return self.segments[row] if row >= 0 else ""

    def _context_codes(self, media_ids: list) -> np.ndarray:
        """The pipeline's context codes of partners (each distinct partner encoded once, then remembered)."""
        memo = self.__dict__.setdefault("_context_memo", {})
        missing = [m for m in dict.fromkeys(media_ids) if m not in memo]
        if missing:
            codes = np.asarray(self.pipeline.context_.transform(np.asarray(missing, dtype=object)))
            if len(memo) > 100_000:
                memo.clear()
            memo.update(zip(missing, codes.tolist(), strict=True))
            self._context_dtype = codes.dtype
        return np.array([memo[m] for m in media_ids], dtype=self._context_dtype)

    def tower_inputs(self, user_ids: np.ndarray, rows: np.ndarray, media_ids: list, contexts: list) -> dict:
        """User-tower input tensors for a batch (known rows gathered, unknown users encoded from the request)."""
        import torch

        return {k: torch.from_numpy(v) for k, v in self.tower_arrays(user_ids, rows, media_ids, contexts).items()}

    def tower_arrays(self, user_ids: np.ndarray, rows: np.ndarray, media_ids: list, contexts: list
                     ) -> dict[str, np.ndarray]:
        """:meth:`tower_inputs` as NumPy arrays (what :class:`~recsys.models.folded_tower.FoldedUserTower` reads)."""
        arrays = self.__dict__.get("_feat_arrays")
        if arrays is None:  # NumPy views of the feature tensors (shared memory)
            arrays = self._feat_arrays = {k: v.numpy() for k, v in self.feats.items()}
        known = rows >= 0
        idx = np.where(known, rows, 0)
        out = {k: v[idx] for k, v in arrays.items()}
        unknown = np.flatnonzero(~known)
        if len(unknown):
            prof = pd.DataFrame({"user_id": np.asarray(user_ids, dtype=object)[unknown]})
            for c in self.profile_keys:
                prof[c] = [(ctx or {}).get(c) for ctx in (contexts[i] for i in unknown)]
            enc = self.pipeline.encode_users(prof["user_id"].to_numpy(), users=prof if self.profile_keys else None,
                                             media_ids=None)
            for k in out:
                out[k][unknown] = np.asarray(enc[k])
        if self.context_key is not None:
            given = np.array([m is not None for m in media_ids])
            if given.any():
                out[self.context_key][np.flatnonzero(given)] = self._context_codes([m for m in media_ids
                                                                                    if m is not None])
        from recsys.features.sequences import history_arrays

        hist_rows = np.where(known, rows, len(self.ids))
        out.update(history_arrays(self.history, hist_rows))
        return out
