"""The privacy rule of partner reports, and the rates with Wilson confidence intervals they quote.

The rule (every report section follows it; tests/test_partner_insight.py holds it):

1. **Only aggregates.** A description of users (profile make-up, price levels, categories, brands and shops
   engaged with, rates) is shown only for a group of at least ``min_group`` distinct users; a smaller group's
   row is suppressed and the section's ``suppressed`` count says how many rows were. Plain counts of the
   partner's own users and events (audience size, events per type) are shown as they are: the partner
   sees its own traffic. An audience smaller than ``min_group`` gets its sizes and nothing else.
2. **No recovery by subtraction.** In a breakdown whose rows add up to a total that is also shown (profile
   make-up, price levels) the suppressed rows are merged into one ``"(other)"`` row; when that row would
   itself hold fewer than ``min_group`` users, the smallest shown rows join it until it holds enough (or the
   whole breakdown is suppressed).
3. **No raw ids**, except an influencer's: a member is named only when at least ``min_group`` distinct
   friends bought after them in the category, so no single friend's purchase can be told from the row.
4. **Only the partner's own data** describes its audience; the rest of the network appears only as
   network-wide shares and rates (lift), aggregates over everybody.
"""

from __future__ import annotations

import math

import pandas as pd

from recsys.errors import ConfigError

__all__ = ["DEFAULT_MIN_GROUP", "OTHER", "check_min_group", "check_positive", "wilson", "rate", "merge_small"]

DEFAULT_MIN_GROUP = 10
OTHER = "(other)"
Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def check_min_group(min_group: int) -> int:
    """``min_group`` as an int >= 1 (ConfigError otherwise)."""
    if isinstance(min_group, bool) or not isinstance(min_group, int) or min_group < 1:
        raise ConfigError(f"min_group must be an integer >= 1 (the smallest group a report may describe), "
                          f"got {min_group!r}")
    return min_group


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (None, None without trials, or with more successes than
    trials: clicks logged without their impressions are not a proportion)."""
    if trials <= 0 or not 0 <= successes <= trials:
        return None, None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends: rounding leaves 1e-17 there
    return low, 1.0 if successes == trials else min(1.0, centre + half)


def rate(successes: int, trials: int) -> dict:
    """``{"successes", "trials", "rate", "ci_low", "ci_high"}`` with a 95% Wilson interval (rate None at 0 trials;
    no interval when successes exceed trials)."""
    low, high = wilson(successes, trials)
    return {"successes": int(successes), "trials": int(trials),
            "rate": successes / trials if trials > 0 else None, "ci_low": low, "ci_high": high}


def merge_small(counts: pd.Series, min_group: int) -> tuple[list, list] | None:
    """Rule 2 on a breakdown of distinct users (``counts``: value -> users, each user in one value): the values
    shown (``min_group`` users or more, largest first) and the values merged into the ``OTHER`` row (empty when
    nothing was merged); None when even everything merged holds fewer than ``min_group`` users."""
    counts = counts[counts > 0].sort_values(kind="stable")
    small = (counts < min_group).to_numpy()
    merged, kept = list(counts.index[small]), counts[~small]
    other = int(counts[small].sum())
    while 0 < other < min_group and len(kept):  # top up the merged row so no small row can be subtracted out
        merged.append(kept.index[0])
        other += int(kept.iloc[0])
        kept = kept.iloc[1:]
    if other and other < min_group:
        return None
    return list(kept.sort_values(ascending=False, kind="stable").index), merged


def check_positive(name: str, value: int) -> int:
    """``value`` as an int >= 1 (ConfigError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return value
