"""Why an item is in the feed: a short reason a media app can show, from what actually drove its score.

For each returned item the ranker's score is recomputed with one kind of evidence taken away
(counterfactual ablation on the item's feature row):

* ``viewed``: the user's own history with the item's brand and category (brand lifecycle stage,
  brand impressions, user x category rates reset to the category's rate);
* ``friends``: friends' recent clicks and purchases of the item (set to zero);
* ``trending``: the item's own recent CTR/CVR and counts (reset to its category's rate, counts zero).

The evidence whose removal costs the most score wins, if it is worth at least ``min_share`` of the
score. Otherwise a user with history gets "because you viewed ..." when one of the viewed items is
close to the item in the two towers' space (that similarity is what retrieved it), and everyone else
a reason from the candidate's source ("popular on <partner>", "picked for you"). The viewed item
named is the history item most similar to the candidate.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["REASON_CODES", "ablation_plan", "ablated_frames", "reason_contributions", "matrix_contributions",
           "reason_text", "choose_reasons"]

REASON_CODES = ("viewed", "friends", "trending", "popular", "for_you")
_WINDOWED = re.compile(r"^(item|user_category)_(.+)_(log_imp|log_clk|log_buy|ctr|cvr)$")


def ablation_plan(columns: list[str]) -> dict[str, list[tuple[str, str | None]]]:
    """For each evidence kind present in ``columns``: (column, replacement column or None for zero) pairs."""
    return {k: list(v) for k, v in _plan(tuple(columns)).items()}


@functools.lru_cache(maxsize=64)
def _plan(columns: tuple[str, ...]) -> dict[str, list[tuple[str, str | None]]]:
    cols = set(columns)
    plan: dict[str, list[tuple[str, str | None]]] = {}
    friends = [(c, None) for c in columns if c.startswith("friends_")]
    if friends:
        plan["friends"] = friends
    for code, prefix, extra in (("viewed", "user_category", ("brand_stage", "user_brand_log_seen")),
                                ("trending", "item", ())):
        ops: list[tuple[str, str | None]] = [(c, None) for c in extra if c in cols]
        for c in columns:
            m = _WINDOWED.match(c)
            if not m or m.group(1) != prefix:
                continue
            window, stat = m.group(2), m.group(3)
            if stat.startswith("log_"):
                ops.append((c, None))
            elif f"category_{window}_{stat}" in cols:
                ops.append((c, f"category_{window}_{stat}"))
        if ops:
            plan[code] = ops
    return plan


def _kind_arrays(where: dict[str, int], plan: dict) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per evidence kind: the columns it ablates, the column each takes its value from and whether it is zeroed
    instead (a later op on a column wins, as in the plan's order)."""
    out = []
    for ops in plan.values():
        new: dict[int, int] = {}  # column -> source column, or -1 for zero
        for col, src in ops:
            new[where[col]] = -1 if src is None else where[src]
        dest = np.fromiter(new.keys(), np.int64, len(new))
        src = np.fromiter(new.values(), np.int64, len(new))
        out.append((dest, np.maximum(src, 0), src < 0))
    return out


@functools.lru_cache(maxsize=64)
def _matrix_kind_arrays(columns: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return _kind_arrays({c: j for j, c in enumerate(columns)}, _plan(columns))


def _ablate(x: np.ndarray, kinds: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stacked ablated copies of the rows of ``x`` (one block per evidence kind of ``kinds``, see
    :func:`_kind_arrays`; changed rows only) and the rows each block holds."""
    blocks, rows = [], []
    for dest, src, zero in kinds:
        old = x[:, dest]
        new = np.where(zero, 0.0, x[:, src])
        # only the ablated columns can differ: compare those (NaN against NaN is no change), not whole copies
        diff = ((new != old) & ~(np.isnan(new) & np.isnan(old))).any(axis=1)
        changed = np.flatnonzero(diff)
        b = x[changed]
        b[:, dest] = new[changed]
        blocks.append(b)
        rows.append(changed)
    return np.concatenate(blocks), rows


def ablated_frames(frame: pd.DataFrame) -> tuple[list[str], pd.DataFrame, list[np.ndarray]]:
    """The evidence kinds present in ``frame``, one stacked frame of ablated rows, and per kind the rows
    (of ``frame``) it holds: only rows the ablation changes, since an unchanged row loses nothing."""
    columns = list(frame.columns)
    plan = ablation_plan(columns)
    if not plan:
        return [], frame.iloc[:0], []
    numeric = [c for c, dt in zip(columns, frame.dtypes, strict=True)
               if isinstance(dt, np.dtype) and dt.kind in "fiu"]
    where = {c: j for j, c in enumerate(numeric)}
    blocks, rows = _ablate(frame[numeric].to_numpy(dtype=np.float64), _kind_arrays(where, plan))
    stacked = pd.DataFrame(blocks, columns=numeric)
    other = [c for c in columns if c not in where]
    if other:
        rest = pd.concat([frame[other].iloc[r] for r in rows], ignore_index=True)
        stacked = pd.concat([stacked, rest], axis=1)[columns]
    return list(plan), stacked, rows


def reason_contributions(frame: pd.DataFrame, score: Callable[[pd.DataFrame, np.ndarray], np.ndarray],
                         base: np.ndarray) -> pd.DataFrame:
    """Score lost per row when each evidence kind is removed (``base`` = the unablated scores).

    One ``score(stacked_frame, row_of_each_stacked_row)`` call covers every ablated copy; rows an
    ablation leaves unchanged lose exactly nothing and are not scored again.
    """
    names, stacked, rows = ablated_frames(frame)
    if not names:
        return pd.DataFrame(index=frame.index)
    return pd.DataFrame(_losses(stacked, rows, score, base, len(frame)), columns=names, index=frame.index)


def matrix_contributions(x: np.ndarray, columns: list[str], score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                         base: np.ndarray) -> tuple[list[str], np.ndarray]:
    """:func:`reason_contributions` on a numeric feature matrix (``columns`` name its columns): the evidence
    kinds and the score lost per row and kind. ``score(stacked_matrix, row_of_each_stacked_row)``."""
    plan = _plan(tuple(columns))
    if not plan:
        return [], np.zeros((len(x), 0))
    stacked, rows = _ablate(np.asarray(x, dtype=np.float64), _matrix_kind_arrays(tuple(columns)))
    return list(plan), _losses(stacked, rows, score, base, len(x))


def _losses(stacked, rows: list[np.ndarray], score: Callable, base: np.ndarray, n: int) -> np.ndarray:
    """(n, kinds) score lost per row and kind: ``stacked`` (the ablated rows, block j = ``rows[j]``) scored in
    one call; rows a kind's ablation leaves unchanged lose 0."""
    source = np.concatenate(rows)
    scores = np.asarray(score(stacked, source), dtype=np.float64) if len(source) else np.zeros(0)
    out, start = np.zeros((n, len(rows))), 0
    for j, r in enumerate(rows):
        out[r, j] = base[r] - scores[start:start + len(r)]
        start += len(r)
    return out


def reason_text(code: str, *, item_title: str | None = None, category: str | None = None,
                media_id: str | None = None) -> str:
    """The sentence shown for a reason code."""
    where = f" on {media_id}" if media_id else ""
    if code == "viewed":
        return f"because you viewed {item_title}"
    if code == "friends":
        return "popular with your friends"
    if code == "trending":
        return f"trending in {category}{where}"
    if code == "popular":
        return f"popular{where}" if where else "popular right now"
    return "picked for you"


def choose_reasons(contrib: pd.DataFrame | tuple[list[str], np.ndarray], scores: np.ndarray, *,
                   similarity: np.ndarray, default: np.ndarray, min_share: float = 0.02,
                   min_similarity: float = 0.3, anchor_fits: np.ndarray | None = None) -> np.ndarray:
    """Reason code per row.

    ``contrib``: score lost per evidence kind (see :func:`reason_contributions`), a frame or
    ``(kinds, values)`` as :func:`matrix_contributions` gives them; ``similarity``: the cosine
    between the item and the viewed item the reason would name (NaN without history); ``default``:
    the code when nothing stands out ("popular" or "for_you", from the candidate's source);
    ``anchor_fits``: rows whose named viewed item is a fitting one (e.g. the same category); without
    it, any viewed item fits. History evidence names a viewed item only where it fits or is at least
    ``min_similarity`` alike, so an item is never explained by an unrelated one.
    """
    n = len(scores)
    codes = np.asarray(default, dtype=object).copy()
    sim = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=-np.inf)
    by_similarity = sim >= min_similarity
    codes[by_similarity] = "viewed"
    names, vals = (list(contrib.columns), contrib.to_numpy(dtype=np.float64)) if isinstance(contrib, pd.DataFrame) \
        else (list(contrib[0]), np.asarray(contrib[1], dtype=np.float64))
    if len(names):
        vals = np.where(np.isfinite(vals), vals, -np.inf)
        if "viewed" in names:  # nothing to name without a viewed item, or with an unrelated one
            fits = np.isfinite(sim) if anchor_fits is None else (np.asarray(anchor_fits, bool) | by_similarity)
            vals[~fits, names.index("viewed")] = -np.inf
        best = vals.argmax(axis=1)
        top = vals[np.arange(n), best]
        floor = min_share * np.abs(np.nan_to_num(np.asarray(scores, dtype=np.float64)))
        strong = (top > floor) & (top > 0)
        codes[strong] = np.asarray(names, dtype=object)[best[strong]]
    return codes
