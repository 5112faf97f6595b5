"""Hypothesis strategies of the fuzz suite (tests/test_fuzz.py): request arguments and table cells.

Each request argument has a valid and a hostile form (:data:`ARGS`); :func:`draw_args` makes 0-2 of an
input's arguments hostile, so most inputs still reach a feed and the feed's checks run.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
from hypothesis import strategies as st

# ----- strategies: each argument has a valid and a hostile form; an example makes 0-2 arguments hostile ----
SURROGATES = st.sampled_from(["\ud800", "a\udfff", "\udc80x", "guide-0\ud83d"])
TEXTS = st.one_of(st.text(max_size=6), SURROGATES,
                  st.sampled_from(["", " ", "007", "-1", "5", "1e3", "NaN", "٣", "guide-0", "vip"]))
INTS = st.one_of(st.integers(-3, 320), st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]))
FLOATS = st.one_of(st.floats(), st.sampled_from([5.0, 69.0, -0.0, 1e300]))
ODD = st.sampled_from([None, True, False, b"5", [5], (5,), frozenset([5]), {"a": 1}, np.int64(5), np.float32(3.0),
                       np.uint64(2**64 - 1), pd.NA, pd.NaT, Decimal(5), 1 + 1j, dt.date(2026, 1, 1)])
ANY = st.one_of(INTS, TEXTS, SURROGATES, FLOATS, ODD)
KNOWN = st.sampled_from([0, 3, 5, 17, 42, 69, 84, 149, "u5", "u84", "i3", "i69", "5", 5.0, np.int64(17), "new", 10**6])
PARTNERS = st.sampled_from([None, "guide-0", "guide-2", "app-1", "kol-0", "kol-2", "nowhere"])
TIMES = st.one_of(st.datetimes(), st.sampled_from(["2026-01-02", "2500-01-01", "not a time", "1600-01-01"]), ANY)
CONTEXTS = st.fixed_dictionaries({}, optional={
    "segment": st.one_of(st.just("vip"), TEXTS, ODD), "timestamp": TIMES, "gender": st.one_of(TEXTS, ODD),
    "friends": st.one_of(st.lists(st.one_of(KNOWN, ANY), max_size=3), ANY), 5: st.just("x"), "\udc00": st.just(1)})
ARGS = {  # name: (valid, hostile)
    "user": (KNOWN, ANY), "item": (KNOWN, ANY),
    "users": (st.lists(KNOWN, max_size=4), st.one_of(st.lists(st.one_of(KNOWN, ANY), max_size=4), ANY, st.builds(
        lambda u, m, s: pd.DataFrame({"user_id": pd.Series(u, dtype=object), "segment": pd.Series(
            [s] * len(u), dtype=object), "media_id": pd.Series((m * len(u))[:len(u)], dtype=object)}),
        st.lists(KNOWN, min_size=1, max_size=3), st.lists(st.one_of(PARTNERS, ANY), min_size=1, max_size=3),
        st.one_of(st.just("vip"), ANY)))),
    "k": (st.integers(1, 40), st.one_of(st.integers(-2, 12_000), FLOATS, TEXTS, ODD, st.sampled_from(
        [0, 10_000, 10_001, 2**63 - 1, 2**63, 2**64, np.int64(3)]))),
    "media": (PARTNERS, ANY),
    "exclude": (st.lists(KNOWN, max_size=6), st.one_of(st.lists(st.one_of(KNOWN, ANY), max_size=6), ANY,
                                                       st.just({5: [3]}), st.dictionaries(KNOWN, ANY, max_size=2))),
    "context": (st.sampled_from([None, {"segment": "vip"}, {"timestamp": "2026-01-02"}, {"friends": [5, "u84"]}]),
                st.one_of(CONTEXTS, ANY)),
    "chunk": (st.sampled_from([1, 2, 1024]), st.one_of(st.integers(-1, 0), ANY)),
}


def draw_args(data, names: list[str]) -> dict:
    """The named arguments, valid except for 0-2 drawn hostile ones."""
    hostile = data.draw(st.sets(st.sampled_from(names), max_size=2), label="hostile")
    return {n: data.draw(ARGS[n][n in hostile], label=n) for n in names}


# table cells and dtypes for the validators
CELLS = st.one_of(KNOWN, ANY, TIMES, st.sampled_from(["click", "purchase", "PV", 0.5, -1.0, 2.0, "yes", np.inf]))
DTYPES = st.sampled_from([None, object, "Int64", "Float64", "boolean", "category", "str", "float64",
                          "datetime64[s]"])
