"""The item-to-item channel's score as a ranker feature, ``item_to_item_score``, the same at serving and in training.

A (user, item) row on a partner scores the summed weight the item gets from the neighbour lists
(:class:`~recsys.feed.item_table.ItemTable`) of the user's recent items there: the distinct items among the last
:data:`~recsys.feed.item_table.SEED_ITEMS` of the user's history that the user engaged with on that partner (the
items a reason on it may cite, :func:`recsys.feed.partners.citable_history`), exactly what the item-to-item channel
ranks its candidates by; 0 for an item none of them reaches. At serving every candidate row gets it, whichever
channel brought the row.

Training rows get it **point in time**, never from the events they are labelled by: the training impressions are
cut by time into :data:`SNAPSHOTS` slices, and a row of slice ``k`` is scored as a Recommender built from the
events strictly before the slice's start would score it (its table, the users' histories and their partner
items then). A click on an impression therefore never adds weight to its own row. The served table is built from
the whole serving log, the latest such snapshot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ConfigError, DataValidationError
from recsys.feed.item_table import SEED_ITEMS, ItemTable, history_table

__all__ = ["FEATURE", "SNAPSHOTS", "seed_scores", "point_in_time_scores", "ranker_uses", "request_reach",
           "candidate_scores", "attach_scores"]

FEATURE = "item_to_item_score"
SNAPSHOTS = 4  # time slices of the training impressions, each scored from the events before its start


def seed_scores(table: ItemTable, seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Summed weights that ``items`` (positions) get from the neighbour lists of ``seeds`` (a history's citable
    positions, oldest first: its last :data:`SEED_ITEMS`, distinct, are used); 0 where none reaches."""
    reached, sums, _ = table.reach(_seed_set(np.asarray(seeds, np.int64)))
    return _lookup(reached, sums, np.asarray(items, np.int64))


def _seed_set(citable: np.ndarray) -> np.ndarray:
    """The seeds of a citable history (positions, oldest first): its last :data:`SEED_ITEMS`, distinct."""
    return np.unique(citable[-SEED_ITEMS:])


def attach_scores(state: Any, reqs: list, cand: Any) -> None:
    """Set ``cand.item_score`` (:class:`recsys.feed.ranking.Candidates`) when the state's ranker reads the feature."""
    if state.item_table is not None and ranker_uses(state.ranker):
        cand.item_score = candidate_scores(state, reqs, cand.req, cand.pos)


def _lookup(reached: np.ndarray, sums: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``sums`` at ``items`` among ``reached`` (ascending), 0 where absent."""
    if not len(reached) or not len(items):
        return np.zeros(len(items))
    at = np.minimum(np.searchsorted(reached, items), len(reached) - 1)
    return np.where(reached[at] == items, sums[at], 0.0)


def ranker_uses(ranker: Any) -> bool:
    """Whether ``ranker`` was trained with the feature (its columns name it)."""
    return ranker is not None and FEATURE in list(getattr(ranker, "columns_", None) or ())


def request_reach(state: Any, req: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``state.item_table.reach`` of the request's seeds (its citable history's last :data:`SEED_ITEMS`, distinct),
    computed once per request (kept on ``req``): the item-to-item channel and the feature read the same."""
    if req.reached is None:
        from recsys.feed.partners import citable_history

        req.reached = state.item_table.reach(_seed_set(citable_history(state, req)))
    return req.reached


def candidate_scores(state: Any, reqs: list, req_of_row: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The feature of candidate rows (request number ``req_of_row``, grouped by request; position ``pos``)."""
    out = np.zeros(len(pos))
    if not len(pos):
        return out
    bounds = np.flatnonzero(np.diff(req_of_row)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(pos)], strict=True):
        reached, sums, _ = request_reach(state, reqs[int(req_of_row[lo])])
        out[lo:hi] = _lookup(reached, sums, pos[lo:hi])
    return out


def _citable(history: sp.csr_matrix, row: int, vocab_to_pos: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """Positions of one history row, oldest first, held to ``allowed`` (sorted positions) when given."""
    hist = vocab_to_pos[history.indices[history.indptr[row]:history.indptr[row + 1]].astype(np.int64)]
    hist = hist[hist >= 0]
    return hist if allowed is None else hist[np.isin(hist, allowed)]


def _snapshot_scores(pipeline: Any, events: pd.DataFrame, rows: pd.DataFrame, catalogue: Any,
                     vocab_to_pos: np.ndarray) -> np.ndarray:
    """The feature of ``rows`` from ``events`` alone (one snapshot): its table, histories and partner items."""
    users = pd.unique(rows["user_id"].to_numpy(dtype=object))
    out = np.zeros(len(rows))
    positives = events
    if "event_type" in events.columns:  # the pipeline's engagement events, as its histories count them
        positives = events[events["event_type"].astype(str).isin(list(pipeline.positive_events))]
    if not len(positives) or not len(users):
        return out
    # one history matrix: every user with engagement (by id: users the vocabulary lacks too) builds the table, the
    # rows' users (those without engagement add empty rows, which change no co-occurrence) are read from it
    everyone = pd.unique(np.concatenate([positives["user_id"].to_numpy(dtype=object), users]))
    history = pipeline.history_matrix(events, row_ids=everyone)
    table = history_table(history, vocab_to_pos, len(catalogue))
    row_of = {u: i for i, u in enumerate(everyone)}
    by_partner = "media_id" in rows.columns and "media_id" in positives.columns and \
        bool(positives["media_id"].notna().any())  # a log without partner ids: every event may be cited
    engaged: dict[tuple, np.ndarray] = {}
    if by_partner:  # the items each user engaged with on each partner: what a reason there may cite
        p = positives[positives["media_id"].notna()]
        pos = catalogue.positions(p["item_id"].to_numpy())
        frame = pd.DataFrame({"u": p["user_id"].to_numpy(dtype=object), "m": p["media_id"].astype(str).to_numpy(),
                              "pos": pos})
        frame = frame[frame["pos"] >= 0]
        engaged = {k: np.unique(g.to_numpy(np.int64)) for k, g in frame.groupby(["u", "m"], sort=False)["pos"]}
    item = catalogue.positions(rows["item_id"].to_numpy())
    media = rows["media_id"].to_numpy(dtype=object) if by_partner else np.full(len(rows), None, dtype=object)
    keys = pd.DataFrame({"u": rows["user_id"].to_numpy(dtype=object),
                         "m": ["" if m is None or m != m else str(m) for m in media]})  # "": no partner
    for (u, m), at in keys.groupby(["u", "m"], sort=False).indices.items():
        allowed = engaged.get((u, m), np.zeros(0, np.int64)) if by_partner and m else None
        seeds = _citable(history, row_of[u], vocab_to_pos, allowed)
        if len(seeds):
            out[at] = seed_scores(table, seeds, item[at])
    return out


def point_in_time_scores(pipeline: Any, events: pd.DataFrame, items: pd.DataFrame, rows: pd.DataFrame, *,
                         snapshots: int = SNAPSHOTS) -> np.ndarray:
    """``item_to_item_score`` of training ``rows`` (user_id, item_id, timestamp[, media_id]), each from the events
    strictly before the start of its time slice (module docstring); ``pipeline``: the fitted feature pipeline
    (its positive events, history length and item vocabulary), ``items``: the catalogue in position order."""
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in rows.columns]
    if missing or "timestamp" not in events.columns:
        raise DataValidationError(f"item-to-item scores need rows with user_id, item_id and timestamp (missing "
                                  f"{missing}) and events with timestamps; pass validated tables.")
    if isinstance(snapshots, bool) or not isinstance(snapshots, int | np.integer) or snapshots < 1:
        raise ConfigError(f"snapshots must be a positive integer; got {snapshots!r}.")
    from recsys.feed.catalogue import Catalogue
    from recsys.feed.state import vocab_positions

    catalogue = Catalogue.from_items(items)  # the positions and vocabulary mapping serving uses
    vocab_to_pos = vocab_positions(pipeline, catalogue)
    t = pd.to_datetime(rows["timestamp"]).to_numpy("datetime64[ns]").astype(np.int64)
    out = np.zeros(len(rows))
    if not len(rows):
        return out
    cuts = np.unique(np.quantile(t, np.arange(snapshots) / snapshots, method="lower").astype(np.int64))
    slice_of = np.searchsorted(cuts, t, side="right") - 1  # the latest cut at or before each row
    event_t = pd.to_datetime(events["timestamp"]).to_numpy("datetime64[ns]").astype(np.int64)
    for k, cut in enumerate(cuts):
        at = np.flatnonzero(slice_of == k)
        if len(at):
            out[at] = _snapshot_scores(pipeline, events[event_t < cut], rows.iloc[at], catalogue, vocab_to_pos)
    return out
