"""The output of a batch of feeds: its columns, each row's score kind, reason code and reason text.

:func:`run_batch` (:mod:`recsys.feed.engine`) selects the items; :func:`_assemble` turns the selections
into the :data:`OUTPUT_COLUMNS` arrays, naming for each row why it is there (:mod:`recsys.feed.reasons`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.feed.partners import citable_history
from recsys.feed.ranking import Candidates, Ranked
from recsys.feed.reasons import choose_reasons, reason_text
from recsys.feed.request import Request
from recsys.feed.state import ServingState

__all__ = ["OUTPUT_COLUMNS", "score_kind"]

OUTPUT_COLUMNS = ("user_id", "media_id", "rank", "item_id", "score", "pctr", "pcvr", "reason", "reason_code",
                  "source", "fallback", "score_kind")
SOURCES = ("retrieval", "item_to_item", "friends", "popular", "backfill")


def score_kind(state: ServingState, req: Request) -> str:
    """What a resolved request's scores measure (:data:`recsys.feed.result.SCORE_KINDS`): a ranker scores every
    candidate of every path ("objective"); without one, retrieval's "two_tower" or the popular path's "popularity"."""
    if state.ranker is not None and state.builder is not None:
        return "objective"
    return "popularity" if req.path == "popular" else "two_tower"


def _assemble(state: ServingState, reqs: list[Request], cand: Candidates, ranked: Ranked, picked,
              with_request: bool = False, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Output columns for the selections, with reasons (arrays; the caller makes the DataFrame)."""
    stride = np.int64(len(state.catalogue) + 1)
    keys = cand.req * stride + cand.pos
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    req_i = cat([np.full(len(sel.positions), i, np.int64) for i, sel in picked], np.int64)
    pos = cat([sel.positions for _, sel in picked], np.int64)
    tier = cat([sel.tiers for _, sel in picked], np.int64)
    score = cat([sel.scores for _, sel in picked], np.float64)
    want = req_i * stride + pos
    hit = np.clip(np.searchsorted(sorted_keys, want), 0, max(len(sorted_keys) - 1, 0))
    has_row = sorted_keys[hit] == want if len(sorted_keys) else np.zeros(len(want), bool)
    safe = np.where(has_row, order[hit] if len(order) else 0, 0)
    popular_path = np.array([r.path == "popular" for r in reqs], bool)[req_i] if len(req_i) else np.zeros(0, bool)
    source = np.where(tier == 0, np.where(popular_path, "popular", "retrieval"),
                      np.where(tier == 1, "popular", "backfill")).astype(object)
    i2i = np.zeros(len(pos), bool)
    if cand.channel is not None and len(pos):
        i2i = has_row & (cand.channel[safe] == 1)
        source[i2i] = "item_to_item"
        source[has_row & (cand.channel[safe] == 2)] = "friends"
    empty = not len(cand)
    pctr = np.full(len(pos), np.nan) if empty else np.where(has_row, ranked.pctr.astype(np.float64)[safe], np.nan)
    pcvr = np.full(len(pos), np.nan) if empty else np.where(has_row, ranked.pcvr.astype(np.float64)[safe], np.nan)
    codes, anchor = _reason_codes(state, reqs, ranked, req_i, pos, score, source, safe, has_row,
                                  (i2i, cand.anchor[safe] if i2i.any() else None))
    memo: dict = {}  # the same sentence for the same (partner, code, item's category, named item): built once
    reasons = [_text(state, reqs[i], code, p, a, memo) for i, code, p, a in zip(req_i, codes, pos, anchor, strict=True)]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(req_i)) + 1)) if len(req_i) else np.zeros(0, np.int64)
    rank = np.arange(len(req_i)) - np.repeat(starts, np.diff(np.append(starts, len(req_i)))) + 1
    obj = lambda values: np.asarray(values, dtype=object)[req_i] if len(req_i) else np.zeros(0, object)  # noqa: E731
    out = {"user_id": obj([r.user_id for r in reqs]), "media_id": obj([r.media_id for r in reqs]), "rank": rank,
           "item_id": state.catalogue.ids[pos], "score": score, "pctr": pctr, "pcvr": pcvr, "reason": reasons,
           "reason_code": codes, "source": source, "fallback": obj([r.path for r in reqs]),
           "score_kind": obj([score_kind(state, r) for r in reqs])}
    if with_request:
        out["_request"] = req_i
    return {k: v for k, v in out.items() if k not in drop}


def _reason_codes(state: ServingState, reqs: list[Request], ranked: Ranked, req_i: np.ndarray, pos: np.ndarray,
                  score: np.ndarray, source: np.ndarray, safe: np.ndarray, has_row: np.ndarray,
                  channel: tuple[np.ndarray, np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reason code and the named viewed item (position, -1 for none) of every output row. The viewed item
    named is the most similar one of the user's history in the item's own category, else the most similar
    of all (then it must be alike enough to be named: :func:`choose_reasons`). A row the item-to-item channel
    brought (``channel``: the mask of those rows and their anchors) names the viewed item that brought it."""
    n = len(pos)
    default = np.where(source == "popular", "popular", "for_you").astype(object)
    default[source == "backfill"] = "popular"
    default[source == "friends"] = "friends"  # brought by what the user's friends engaged with
    sim, anchor, same_category = np.full(n, np.nan), np.full(n, -1, np.int64), np.zeros(n, bool)
    if state.vocab_to_pos is not None:
        cat = state.catalogue.category_code
        for i in np.unique(req_i):
            hist = citable_history(state, reqs[i])
            if not len(hist):
                continue
            m = req_i == i
            s = state.item_emb[pos[m]] @ state.item_emb[hist].T
            s[pos[m][:, None] == hist[None, :]] = -np.inf
            same = (cat[pos[m]][:, None] == cat[hist][None, :]) & np.isfinite(s)
            has_same = same.any(axis=1)
            best = np.where(has_same, np.where(same, s, -np.inf).argmax(axis=1), s.argmax(axis=1))
            sim[m], anchor[m] = s[np.arange(len(best)), best], hist[best]
            same_category[m] = has_same
    sim[source == "friends"] = np.nan  # the friends channel's rows: their friends, not a viewed item, brought them
    if channel is not None and channel[0].any():  # named by the table: people who engaged with it chose this too
        rows = channel[0]
        sim[rows], anchor[rows], same_category[rows] = 1.0, channel[1][rows], True
    names: list[str] = []
    values = np.zeros((n, 0))
    if ranked.contributions is not None and has_row.any():
        names, part = ranked.contributions(safe[has_row], score[has_row])
        values = np.full((n, len(names)), np.nan)
        values[has_row] = part
    return choose_reasons((names, values), score, similarity=sim, default=default, anchor_fits=same_category), anchor


def _text(state: ServingState, req: Request, code: str, pos: int, anchor: int, memo: dict | None = None) -> str:
    cat = state.catalogue
    named = code == "viewed" and anchor >= 0
    key = (req.media_id, code, cat.category[pos], anchor if named else -1)
    hit = memo.get(key) if memo is not None else None
    if hit is not None:
        return hit
    title = cat.title[anchor] or str(cat.ids[anchor]) if named else None
    text = reason_text(code, item_title=title, category=cat.category[pos], media_id=req.media_id)
    if memo is not None:
        memo[key] = text
    return text
