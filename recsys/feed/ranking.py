"""Ranking a batch's candidates: one row per (request, candidate), scored by the partner's objective.

Requests at the end of the serving log with a ranker that scores matrices (the GBDT) take the array
path: features from :class:`~recsys.features.candidate_features.CandidateFeatures`, trees through
``predict_arrays``, reasons by ablation on matrix rows. Anything else (another request time, a ranker
that reads frames) goes through the feature builder's frame and ``predict_proba``; both give the same
scores (``tests/test_candidate_features.py``). ``clock`` arguments are the engine's stage timer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.feed.reasons import matrix_contributions, reason_contributions
from recsys.feed.state import ServingState, objective_scores_by_partner
from recsys.models.rankers.objectives import objective_arrays

if TYPE_CHECKING:
    from recsys.feed.request import Request

__all__ = ["Candidates", "Ranked", "candidates", "rank", "MATRIX_ROWS"]


@dataclass
class Candidates:
    """One row per (request, candidate), as arrays grouped by request then tier: request number, tier,
    catalogue position, the score to use without a ranker, the two-tower score and rank within the block, and
    the channel that brought the row (``channel``: 0 the request's own path, 1 the item-to-item channel, whose
    rows also carry ``anchor``, the viewed item lending them the most weight (-1 elsewhere), 2 the friends
    channel)."""

    req: np.ndarray
    tier: np.ndarray
    pos: np.ndarray
    base: np.ndarray
    two_tower: np.ndarray
    rank: np.ndarray
    channel: np.ndarray | None = None
    anchor: np.ndarray | None = None
    item_score: np.ndarray | None = None  # item_to_item_score per row, when the ranker reads it (feed.item_score)

    def __len__(self) -> int:
        return len(self.pos)


@dataclass
class Ranked:
    """Objective scores, pctr and pcvr per candidate row, and how to explain a subset of rows:
    ``contributions(rows, scores) -> (evidence kinds, score lost per row and kind)``."""

    scores: np.ndarray
    pctr: np.ndarray
    pcvr: np.ndarray
    contributions: Callable[[np.ndarray, np.ndarray], tuple[list[str], np.ndarray]] | None = None


def candidates(state: ServingState, blocks: list[tuple[int, int, np.ndarray, np.ndarray]], vectors: np.ndarray,
               vector_of: np.ndarray, channels: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
               ) -> Candidates:
    """Candidate rows from ``blocks`` (request, tier, positions, scores), kept in that order
    (``vector_of[i]``: the row of request i in ``vectors``, -1 for none). ``channels`` (optional): per block
    number, each row's channel and anchor (see :class:`Candidates`); other blocks' rows are channel 0."""
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    sizes = np.asarray([len(p) for _, _, p, _ in blocks], np.int64)
    req = np.repeat(np.asarray([i for i, _, _, _ in blocks], np.int64), sizes)
    tier = np.repeat(np.asarray([t for _, t, _, _ in blocks], np.int64), sizes)
    pos = cat([p for _, _, p, _ in blocks], np.int64)
    base = cat([s for _, _, _, s in blocks], np.float64)
    starts = np.cumsum(sizes) - sizes  # each block's first row: rank = 1 + the row's place in its block
    rank = (np.arange(len(pos)) - np.repeat(starts, sizes) + 1).astype(np.float64)
    two_tower = np.full(len(pos), np.nan)
    q_row = vector_of[req] if len(req) else np.zeros(0, np.int64)
    has_q = q_row >= 0
    if has_q.any():
        two_tower[has_q] = np.einsum("ij,ij->i", vectors[q_row[has_q]], state.item_emb[pos[has_q]]).astype(np.float64)
    channel = anchor = None
    if channels:
        channel, anchor = np.zeros(len(pos), np.int8), np.full(len(pos), -1, np.int64)
        for b, (ch, an) in channels.items():
            channel[starts[b]:starts[b] + sizes[b]], anchor[starts[b]:starts[b] + sizes[b]] = ch, an
    return Candidates(req, tier, pos, np.where(np.isnan(two_tower), base, two_tower), two_tower, rank, channel, anchor)


def _timestamps(state: ServingState, reqs: list[Request]) -> np.ndarray:
    return np.array([pd.Timestamp((r.context or {}).get("timestamp", state.as_of)).to_datetime64() for r in reqs],
                    dtype="datetime64[ns]")


def _friends(reqs: list[Request]) -> list | None:
    """The friends each request lists in ``context['friends']`` (None where it lists none), or None for none."""
    out = [(r.context or {}).get("friends") for r in reqs]
    return out if any(f is not None for f in out) else None


def _rows_frame(state: ServingState, reqs: list[Request], cand: Candidates) -> pd.DataFrame:
    """The feature builder's input rows (user, item, time, partner, two-tower score and rank, rate, and the price
    paid after the item's coupon and the partner's benefits at the row's time: what objectives count)."""
    req = cand.req
    at = _timestamps(state, reqs)[req] if len(req) else np.zeros(0, "datetime64[ns]")
    media = np.asarray([r.media_id for r in reqs], dtype=object)[req] if len(req) else np.zeros(0, dtype=object)
    frame = pd.DataFrame({
        "user_id": np.asarray([r.user_id for r in reqs], dtype=object)[req] if len(req) else [],
        "item_id": state.catalogue.ids[cand.pos], "timestamp": at, "media_id": media,
        "two_tower_score": cand.two_tower, "two_tower_rank": cand.rank,
        "price": state.objective_price(cand.pos, media, at.astype(np.int64)),
        "commission_rate": state.catalogue.commission_rate[cand.pos]})
    if cand.item_score is not None:
        frame["item_to_item_score"] = cand.item_score
    return frame


def rank(state: ServingState, reqs: list[Request], cand: Candidates, clock: Any) -> Ranked:
    """Objective scores (and pctr, pcvr) of every candidate row; arrays only when the state allows it."""
    if state.ranker is None or state.builder is None or not len(cand):
        nan = np.full(len(cand), np.nan)
        return Ranked(cand.base, nan, nan)
    features = state.candidate_features()
    at_as_of = all((r.context or {}).get("timestamp") is None for r in reqs) or \
        all(t == state.as_of_ns for t in _timestamps(state, reqs).astype(np.int64))  # no timestamp given: as_of
    if features is not None and at_as_of:
        return _rank_arrays(state, reqs, cand, features, clock)
    rows = _rows_frame(state, reqs, cand)
    friends = _friends(reqs)
    frame = state.builder.transform(rows, friends=None if friends is None else [friends[i] for i in cand.req])
    clock.lap("features")
    preds = state.ranker.predict_proba(frame)
    scores = objective_scores_by_partner(preds, rows, state.objectives, state.config.default_objective)
    clock.lap("ranker")

    def contributions(idx: np.ndarray, base: np.ndarray) -> tuple[list[str], np.ndarray]:
        sub_rows, sub = rows.iloc[idx].reset_index(drop=True), frame.iloc[idx].reset_index(drop=True)

        def scorer(f: pd.DataFrame, source_rows: np.ndarray) -> np.ndarray:
            return objective_scores_by_partner(state.ranker.predict_proba(f.reset_index(drop=True)),
                                               sub_rows.iloc[source_rows].reset_index(drop=True),
                                               state.objectives, state.config.default_objective)

        part = reason_contributions(sub, scorer, base)
        return list(part.columns), part.to_numpy(dtype=np.float64)

    return Ranked(scores, preds["pctr"].to_numpy(), preds["pcvr"].to_numpy(), contributions)


MATRIX_ROWS = 32_768  # rows of the feature matrix held at once (a batch chunk is ranked in slices of this)


def _rank_arrays(state: ServingState, reqs: list[Request], cand: Candidates, features: Any, clock: Any) -> Ranked:
    """:func:`rank` on arrays: the feature matrix from :class:`~recsys.features.candidate_features.CandidateFeatures`
    (the same values as the builder's frame) and the ranker's ``predict_arrays``. Large batches are ranked in
    slices of rows, and the rows to explain get their features again (rows are independent)."""
    ranker = state.ranker
    n_rank = len(ranker.columns_)
    columns = state.ranking_columns()
    users = np.asarray([r.user_id for r in reqs], dtype=object)
    media = np.asarray([r.media_id for r in reqs], dtype=object)
    objective = np.asarray([state.objectives.get(m, state.config.default_objective) for m in media],
                           dtype=object)[cand.req]
    # objectives count the price paid after the item's coupon and the partner's benefits at as_of
    price = state.objective_price(cand.pos, media[cand.req], state.as_of_ns)
    rate = state.catalogue.commission_rate[cand.pos]

    friends = _friends(reqs)

    def matrix(rows: np.ndarray | slice, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Features of ``rows``, whose requests are all within ``lo:hi`` (only those requests are looked up)."""
        sub = slice(lo, hi)
        return features.matrix(users[sub], media[sub], cand.req[rows] - lo, cand.pos[rows], cand.two_tower[rows],
                               cand.rank[rows], columns, None if friends is None else friends[sub],
                               item_score=None if cand.item_score is None else cand.item_score[rows])

    def score(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pctr, pcvr, pctcvr = ranker.predict_arrays(x[:, :n_rank])
        return objective_arrays(pctr, pctcvr, objective[rows], price[rows], rate[rows]), pctr, pcvr

    if len(cand) <= MATRIX_ROWS:
        X = matrix(slice(None))
        clock.lap("features")
        scores, pctr, pcvr = score(X, np.arange(len(cand)))
        clock.lap("ranker")
    else:
        X = None
        parts = []
        for start in range(0, len(cand), MATRIX_ROWS):
            rows = np.arange(start, min(start + MATRIX_ROWS, len(cand)))
            x = matrix(rows, int(cand.req[rows[0]]), int(cand.req[rows[-1]]) + 1)  # rows are grouped by request
            clock.lap("features")
            parts.append(score(x, rows))
            clock.lap("ranker")
        scores, pctr, pcvr = (np.concatenate([p[j] for p in parts]) for j in range(3))

    def contributions(idx: np.ndarray, base: np.ndarray) -> tuple[list[str], np.ndarray]:
        x = X[idx] if X is not None else matrix(idx)
        return matrix_contributions(x, columns, lambda xs, rows: score(xs, idx[rows])[0], base)

    return Ranked(scores, pctr, pcvr, contributions)
