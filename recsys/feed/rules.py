"""The business rules of a feed: one implementation, used by serving and by offline evaluation alike.

For one request (a user on a partner's page) an item is **eligible** when

* it exists, is not removed, and is in stock (``require_in_stock``);
* it is in the partner's product pool, when the partner has one;
* its eligibility segment is empty (everyone) or one of the user's segments (invite-only items);
* the user has not bought it, unless its category is in ``repeat_purchase_categories``
  (consumables such as snacks or diapers), and the caller did not exclude it.

A feed of ``k`` items takes the eligible candidates tier by tier (ranked candidates first, then the
backfill tiers: the partner's popular items, then the rest of the pool) in score order within each
tier, never twice the same item, and at most ``max_per_category`` items of one category. ``k`` is a
promise: whenever the pool holds ``k`` eligible items the feed has ``k`` items, so when the
category cap alone would leave the feed short, the cap is relaxed for the remaining slots (best
remaining candidates first). :func:`feed_violations` checks a finished feed against all of this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from recsys.errors import ConfigError
from recsys.feed.catalogue import Catalogue

__all__ = ["BusinessRules", "RequestScope", "Selection", "eligible", "apply_rules", "apply_rules_batch",
           "feed_violations"]


@dataclass(frozen=True)
class BusinessRules:
    """Rule settings shared by every request (stored in the bundle as JSON)."""

    max_per_category: int | None = 3
    repeat_purchase_categories: frozenset[str] = field(default_factory=frozenset)
    require_in_stock: bool = True

    def __post_init__(self) -> None:
        m = self.max_per_category
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1):
            raise ConfigError(f"max_per_category must be a positive int or None (no cap), got {m!r}")
        cats = self.repeat_purchase_categories
        if isinstance(cats, str):
            raise ConfigError(f"repeat_purchase_categories must be a collection of category names, got the "
                              f"string {cats!r}; wrap it: [{cats!r}]")
        object.__setattr__(self, "repeat_purchase_categories", frozenset(str(c) for c in cats))
        object.__setattr__(self, "require_in_stock", bool(self.require_in_stock))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["repeat_purchase_categories"] = sorted(self.repeat_purchase_categories)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BusinessRules:
        known = {"max_per_category", "repeat_purchase_categories", "require_in_stock"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown business-rule keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class RequestScope:
    """What one request may see: the partner pool (bool mask by position or None), the user's segments and
    the positions excluded for this user (bought items outside repeat categories, caller's exclusions)."""

    pool: np.ndarray | None = None
    segments: frozenset[str] = frozenset()
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pool_positions: np.ndarray | None = None  # np.flatnonzero(pool), when the caller has it cached

    def __post_init__(self) -> None:
        ex = np.asarray(self.excluded, dtype=np.int64).reshape(-1)
        if len(ex) > 1 and not (ex[1:] > ex[:-1]).all():
            ex = np.unique(ex)
        object.__setattr__(self, "excluded", ex)  # sorted and unique: membership is a binary search


def in_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_unique)`` for a sorted array without duplicates: one binary search per value."""
    if not len(sorted_unique):
        return np.zeros(np.shape(values), bool)
    at = np.searchsorted(sorted_unique, values)
    return sorted_unique[np.minimum(at, len(sorted_unique) - 1)] == values


@dataclass
class Selection:
    """A finished feed: positions in feed order, their scores and the tier each came from."""

    positions: np.ndarray
    scores: np.ndarray
    tiers: np.ndarray
    relaxed: int = 0  # items beyond the category cap (the cap alone would have left the feed short)


def eligible(catalogue: Catalogue, positions: np.ndarray, scope: RequestScope, rules: BusinessRules) -> np.ndarray:
    """Boolean mask: which of ``positions`` (any ints; -1 = none) this request may show."""
    pos = np.asarray(positions, dtype=np.int64)
    ok = (pos >= 0) & (pos < len(catalogue))
    safe = np.where(ok, pos, 0)
    ok &= catalogue.alive[safe]
    if rules.require_in_stock:
        ok &= catalogue.in_stock[safe]
    if scope.pool is not None:
        pool = scope.pool
        ok &= (safe < len(pool)) & pool[np.minimum(safe, len(pool) - 1)] if len(pool) else False
    restricted = np.flatnonzero(catalogue.restricted[safe])
    if len(restricted):
        tags = catalogue.eligibility[safe[restricted]]
        allowed = np.isin(tags, list(scope.segments)) if scope.segments else np.zeros(len(tags), bool)
        ok[restricted[~allowed]] = False
    if len(scope.excluded):
        if len(pos) > 4 * len(scope.excluded) + 1024:  # long lists: one mask beats sorting them
            mask = np.zeros(len(catalogue), bool)
            mask[scope.excluded[scope.excluded < len(catalogue)]] = True
            ok &= ~mask[safe]
        else:
            ok &= ~in_sorted(safe, scope.excluded)
    return ok


def _occurrence(codes: np.ndarray) -> np.ndarray:
    """How many earlier entries of ``codes`` share each entry's code (0 for the first of its category)."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1]
    occurrence = np.empty(n, np.int64)
    occurrence[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return occurrence


def _cap_order(categories: np.ndarray, k: int, cap: int | None) -> tuple[np.ndarray, int]:
    """Indices (into the walk order) of the feed, and how many respect the cap: first the walk under the
    cap, then, only if that leaves the feed short, the best of the rest (the cap relaxed). ``categories``:
    names or integer codes of the items' categories."""
    n = len(categories)
    if cap is None or n == 0:
        return np.arange(min(k, n)), min(k, n)
    codes = categories if categories.dtype.kind in "iu" else pd.factorize(categories)[0]
    occurrence = _occurrence(codes)
    under = np.flatnonzero(occurrence < cap)[:k]
    if len(under) == k:
        return under, k
    over = np.flatnonzero(occurrence >= cap)[: k - len(under)]
    return np.concatenate([under, over]), len(under)


def apply_rules(catalogue: Catalogue, scope: RequestScope, rules: BusinessRules, k: int,
                tiers: Sequence[tuple[np.ndarray, np.ndarray]], *, scan_pool: bool = True) -> Selection:
    """The feed of ``k`` items from candidate ``tiers`` [(positions, scores), ...] under the rules.

    Within a tier candidates go by score (highest first, ties by input order); earlier tiers come
    first. With ``scan_pool``, when the tiers cannot fill ``k`` slots under the category cap, the rest
    of the pool is scanned (catalogue order, score NaN, last tier): that is what makes ``k`` a promise.
    """
    pos, scores, tier, idx, n_under = _walk(catalogue, scope, rules, k, tiers)
    if n_under < k and scan_pool:
        extra = _scan(catalogue, scope, rules, pos, k)
        if len(extra):
            pos = np.concatenate([pos, extra])
            scores = np.concatenate([scores, np.full(len(extra), np.nan)])
            tier = np.concatenate([tier, np.full(len(extra), len(tiers), np.int64)])
            idx, n_under = _cap_order(catalogue.category_code[pos], k, rules.max_per_category)
    return Selection(pos[idx], scores[idx], tier[idx], relaxed=len(idx) - n_under)


def _walk(catalogue: Catalogue, scope: RequestScope, rules: BusinessRules, k: int,
          tiers: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple:
    """Eligible, deduplicated candidates in walk order (positions, scores, tiers), the feed's indices into
    them and how many of those respect the category cap."""
    pos_parts, score_parts, tier_parts = [], [], []
    for t, (p, s) in enumerate(tiers):
        p = np.asarray(p, dtype=np.int64).reshape(-1)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        ok = eligible(catalogue, p, scope, rules)
        p, s = p[ok], s[ok]
        order = np.argsort(-np.nan_to_num(s, nan=-np.inf), kind="stable")
        pos_parts.append(p[order])
        score_parts.append(s[order])
        tier_parts.append(np.full(len(p), t, np.int64))
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64)
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
    tier = np.concatenate(tier_parts) if tier_parts else np.zeros(0, np.int64)
    keep = np.sort(np.unique(pos, return_index=True)[1])
    pos, scores, tier = pos[keep], scores[keep], tier[keep]
    idx, n_under = _cap_order(catalogue.category_code[pos], k, rules.max_per_category)
    return pos, scores, tier, idx, n_under


def _scan(catalogue: Catalogue, scope: RequestScope, rules: BusinessRules, taken: np.ndarray, k: int,
          chunk: int = 2048) -> np.ndarray:
    """Eligible pool items not in ``taken`` (catalogue order), at most ``cap`` (or ``k``) per category, then,
    when even the whole pool cannot fill ``k`` under the cap, enough of the other eligible items (catalogue
    order) to fill it with the cap relaxed.

    Reads the pool chunk by chunk (each four times the last) and stops as soon as the feed can be filled
    under the cap, so a large catalogue is only read to the end when the pool really is short of
    eligible items. The feed takes the first of these items in catalogue order, so where the chunks
    end does not change it.
    """
    where = np.arange(len(catalogue)) if scope.pool is None else (
        scope.pool_positions if scope.pool_positions is not None else np.flatnonzero(scope.pool))
    per_category = rules.max_per_category or k
    codes = catalogue.category_code
    taken_counts = np.bincount(codes[taken], minlength=catalogue.n_categories)
    room = per_category - taken_counts  # may be negative: the cap was already relaxed for that category
    need = k - int(np.minimum(taken_counts, per_category).sum())
    taken_sorted = np.unique(taken)
    out = []
    start = 0
    while start < len(where):
        part = where[start:start + chunk]
        start, chunk = start + chunk, chunk * 4
        ok = eligible(catalogue, part, scope, rules)
        if len(taken):
            ok &= ~in_sorted(part, taken_sorted)
        part = part[ok]
        cats = codes[part]
        keep = part[_occurrence(cats) < room[cats]]  # rank of each item within its category, in pool order
        out.append(keep)
        room -= np.bincount(codes[keep], minlength=len(room))
        need -= len(keep)
        if need <= 0:
            break
    extra = np.concatenate(out) if out else np.zeros(0, np.int64)
    short = k - len(taken) - len(extra)  # slots no candidate can fill, even over the cap
    if need > 0 and short > 0:
        extra = np.concatenate([extra, _scan_rest(catalogue, scope, rules, where, np.union1d(taken, extra), short)])
    return extra


def _scan_rest(catalogue: Catalogue, scope: RequestScope, rules: BusinessRules, where: np.ndarray,
               skip: np.ndarray, n: int, chunk: int = 2048) -> np.ndarray:
    """The first ``n`` eligible items of ``where`` not in ``skip`` (sorted), any category: the cap relaxed."""
    out, start = [], 0
    while start < len(where) and n > 0:
        part = where[start:start + chunk]
        start, chunk = start + chunk, chunk * 4
        part = part[eligible(catalogue, part, scope, rules) & ~in_sorted(part, skip)][:n]
        out.append(part)
        n -= len(part)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def apply_rules_batch(catalogue: Catalogue, scopes: Sequence[RequestScope], rules: BusinessRules, k: int,
                      candidates: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Offline evaluation under the serving rules: per-user candidate positions (rows; -1 = padding), best
    first or with ``scores`` -> (n_users, k) feed positions, -1 where fewer than ``k`` items are eligible.

    The same :func:`apply_rules` serving uses, so offline metrics see exactly what users would.
    """
    cand = np.asarray(candidates, dtype=np.int64)
    if cand.ndim != 2 or len(cand) != len(scopes):
        raise ConfigError(f"candidates must be (n_users, n) with one row per scope; got shape {cand.shape} for "
                          f"{len(scopes)} scopes")
    sc = -np.arange(cand.shape[1], dtype=np.float64)[None, :].repeat(len(cand), 0) if scores is None else \
        np.asarray(scores, dtype=np.float64)
    out = np.full((len(cand), k), -1, np.int64)
    for u, scope in enumerate(scopes):
        sel = apply_rules(catalogue, scope, rules, k, [(cand[u], sc[u])])
        out[u, : len(sel.positions)] = sel.positions
    return out


def feed_violations(catalogue: Catalogue, scope: RequestScope, rules: BusinessRules, positions: np.ndarray,
                    k: int) -> list[str]:
    """Every rule a finished feed breaks (empty when it is clean): for tests and offline audits."""
    pos = np.asarray(positions, dtype=np.int64)
    out = []
    bad = pos[~eligible(catalogue, pos, scope, rules)]
    if len(bad):
        out.append(f"ineligible items at positions {bad[:5].tolist()}")
    if len(np.unique(pos)) != len(pos):
        out.append("duplicate items")
    n_eligible = int(eligible(catalogue, np.arange(len(catalogue)), scope, rules).sum())
    if len(pos) != min(k, n_eligible):
        out.append(f"{len(pos)} items returned, {min(k, n_eligible)} expected ({n_eligible} eligible)")
    cap = rules.max_per_category
    if cap is not None and len(pos):
        counts = pd.Series(catalogue.category[pos]).value_counts()
        eligible_cats = pd.Series(catalogue.category[eligible(catalogue, np.arange(len(catalogue)), scope, rules)])
        fillable = int(np.minimum(eligible_cats.value_counts().to_numpy(), cap).sum())
        if counts.max() > cap and fillable >= min(k, n_eligible):
            out.append(f"category {counts.idxmax()!r} appears {int(counts.max())} times (cap {cap}) although "
                       f"the pool could fill the feed under the cap")
    return out
