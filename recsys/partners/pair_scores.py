"""The ranker's pCTR and pCVR for every (user, item) pair of a small grid, as a feed request would score them.

Products to carry and partners to recruit (:mod:`recsys.partners.selection`) ask "what if this partner showed
that item to its users?" for items a feed never retrieves for them (not in the partner's pool). This module
scores such pairs with the serving ranker: each user becomes one request on the given partner, the two-tower
score of every pair comes from the user tower and the item embeddings, and the two-tower rank from where the
item would fall among the user's ``n_candidates`` best items of the partner's pool (items past them get rank
``n_candidates + 1``, where a served candidate never is; a feed also leaves out what the user bought, which this
does not). The rows then go through :func:`recsys.feed.ranking.rank`, so the array
and frame paths give what a feed would. Work is vectorised per chunk of users; the grid is bounded by its
callers (an audience sample times a shortlist of items).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.errors import ConfigError

if TYPE_CHECKING:
    from recsys.feed.state import ServingState

__all__ = ["pair_probabilities", "two_tower_scores", "user_vectors"]

CHUNK_ROWS = 65_536  # (user, item) rows ranked per call
RANK_CELLS = 8_000_000  # comparisons per slice when counting two-tower ranks


class _NoClock:
    """The engine's stage timer, timing nothing."""

    def lap(self, stage: str) -> None:  # noqa: D102
        return None


def _requests(state: ServingState, users: np.ndarray, media: np.ndarray) -> list[Any]:
    from recsys.feed.engine import _resolve
    from recsys.feed.request import Request

    reqs = [Request(user_id=u, media_id=m, k=1) for u, m in zip(users.tolist(), media.tolist(), strict=True)]
    _resolve(state, reqs)
    return reqs


def user_vectors(state: ServingState, users: np.ndarray, media: np.ndarray) -> np.ndarray:
    """User-tower vectors of ``users``, each as a request on its partner in ``media`` (same length)."""
    from recsys.feed.engine import _tower

    return _tower(state, _requests(state, users, media))


def two_tower_scores(state: ServingState, users: np.ndarray, media: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(len(users), len(positions)) two-tower scores: what retrieval ranks items by for each user."""
    vecs = user_vectors(state, users, media)
    return vecs @ state.item_emb[positions].T


def _rankable(state: ServingState, media: str | None) -> np.ndarray:
    """Catalogue positions a request on ``media`` retrieves from: live, in stock, open to everyone, in its pool."""
    from recsys.feed.partners import partner_pool

    cat = state.catalogue
    ok = cat.alive & cat.in_stock & ~cat.restricted
    pool = partner_pool(state, media)
    if pool is not None:
        ok[: len(pool)] &= pool[: len(ok)]
        ok[len(pool):] = False
    return np.flatnonzero(ok)


def _ranks(state: ServingState, media: np.ndarray, vecs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Two-tower rank of each scored pair among the user's ``n_candidates`` best items of the partner's pool, as if
    the scored item were in it (1 + the pool items scoring above it; one past ``n_candidates`` beyond them)."""
    out = np.empty(scores.shape, dtype=np.float64)
    n = state.config.n_candidates
    for m in dict.fromkeys(media.tolist()):
        rows = np.flatnonzero(media == m)
        pool = _rankable(state, m)
        k = min(n, len(pool))
        if k == 0:
            out[rows] = 1.0
            continue
        full = vecs[rows] @ state.item_emb[pool].T
        top = np.sort(-np.partition(-full, k - 1, axis=1)[:, :k] if k < full.shape[1] else full, axis=1)
        step = max(1, RANK_CELLS // max(1, k * scores.shape[1]))
        for s in range(0, len(rows), step):
            r = rows[s:s + step]
            out[r] = 1 + (top[s:s + step, None, :] > scores[r, :, None]).sum(axis=2)
        out[rows] = np.minimum(out[rows], n + 1)
    return out


def pair_probabilities(state: ServingState, users: np.ndarray, media: np.ndarray, positions: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(pCTR, pCVR) arrays of shape (len(users), len(positions)): user ``users[r]`` on partner ``media[r]``
    shown catalogue position ``positions[j]``. Needs a fitted ranker (ConfigError otherwise)."""
    from recsys.feed.engine import _tower
    from recsys.feed.item_score import attach_scores
    from recsys.feed.ranking import Candidates, rank

    if state.ranker is None or state.builder is None:
        raise ConfigError("products to carry and partners to recruit need the Recommender's ranker (pCTR and pCVR); "
                          "this one ranks by the two-tower score only: fit it with TrainSettings(ranker='gbdt') "
                          "and enough logged purchases for a ranker to be trained")
    users, media = np.asarray(users, dtype=object), np.asarray(media, dtype=object)
    positions = np.asarray(positions, dtype=np.int64)
    n_u, n_i = len(users), len(positions)
    pctr, pcvr = np.zeros((n_u, n_i)), np.zeros((n_u, n_i))
    if not n_u or not n_i:
        return pctr, pcvr
    per = max(1, CHUNK_ROWS // n_i)
    for s in range(0, n_u, per):
        reqs = _requests(state, users[s:s + per], media[s:s + per])
        vecs = _tower(state, reqs)
        scores = (vecs @ state.item_emb[positions].T).astype(np.float64)
        ranks = _ranks(state, media[s:s + per], vecs, scores)
        c = len(reqs)
        cand = Candidates(req=np.repeat(np.arange(c), n_i), tier=np.zeros(c * n_i, np.int64),
                          pos=np.tile(positions, c), base=scores.ravel(), two_tower=scores.ravel(),
                          rank=ranks.ravel())
        attach_scores(state, reqs, cand)  # the item-to-item score, when the ranker reads it (as feeds do)
        ranked = rank(state, reqs, cand, _NoClock())
        pctr[s:s + c] = np.asarray(ranked.pctr, np.float64).reshape(c, n_i)
        pcvr[s:s + c] = np.asarray(ranked.pcvr, np.float64).reshape(c, n_i)
    return pctr, pcvr
