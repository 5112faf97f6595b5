"""Train/test splits without leakage, and the checks that guard them.

- :func:`time_split`: one global cut in time; everything before it trains, the rest tests.
- :func:`leave_last_out`: per user, the last ``n`` interactions test; only what came before trains.
- :func:`published_split`: a split someone published (e.g. LightGCN's train.txt/test.txt), as given,
  validated.
- :func:`check_no_leakage`: raises :class:`~recsys.errors.LeakageError` when a test interaction
  (a ``keys`` tuple, by default the user-item pair) is also in train.
- :func:`check_time_leakage`: raises when feature rows carry timestamps at or after the split time.

"Interactions" are the rows whose ``event_type`` is in ``event_types``; by default every type
except ``"impression"`` (an item shown is not an item chosen). Tables without an ``event_type``
column are all interactions. Split outputs have a fresh RangeIndex and keep the input's row order;
both carry ``df.attrs["split_time"]`` when the split has one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError, LeakageError
from recsys.features.schema import EVENT_TYPES

SAMPLE = 5


def time_split(events: pd.DataFrame, *, test_start=None, test_fraction: float = 0.2,
               time_col: str = "timestamp", drop_seen_pairs: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global time cut: rows before ``test_start`` train, rows at or after it test.

    Without ``test_start`` the cut is the time that leaves about ``test_fraction`` of rows in test.
    A user's repeat interactions with an item on both sides of the cut are legitimate in a time split;
    ``drop_seen_pairs=True`` removes them from test (with every row sharing their ``impression_id``),
    for a "discover new items" evaluation that passes :func:`check_no_leakage`. An impression shortly
    before the cut whose click lands after it counts as unclicked in train, as it would in production.
    """
    _require(events, "events", [time_col])
    ts = events[time_col]
    if test_start is None:
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
        values = np.sort(ts.to_numpy())
        cut = values[min(len(values) - 1, int(np.floor(len(values) * (1.0 - test_fraction))))]
        cut = pd.Timestamp(cut) if pd.api.types.is_datetime64_any_dtype(ts.dtype) else cut
    else:
        cut = _as_time(test_start, ts, "test_start")
    in_test = (ts >= cut).to_numpy()
    if in_test.all() or not in_test.any():
        side = "test" if in_test.all() else "train"
        raise DataValidationError(
            f"time_split: every row falls in {side} (cut at {cut}; {time_col} runs from {ts.min()} to {ts.max()}, "
            f"{len(ts)} rows).\nFix: pass a test_start strictly inside that range, or check that {time_col} "
            "holds distinct times.")
    train, test = events.loc[~in_test], events.loc[in_test]
    if drop_seen_pairs:
        test = _drop_seen(train, test)
    return _finish(train, cut), _finish(test, cut)


def leave_last_out(events: pd.DataFrame, *, n: int = 1, event_types: Sequence[str] | None = None,
                   time_col: str = "timestamp") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, hold out the last ``n`` interactions; train keeps only that user's earlier rows.

    Order is by time, ties broken by ``item_id`` then input order, so the split is deterministic.
    Users with ``n`` or fewer interactions stay entirely in train. From a held-out user's train rows
    we also drop rows after their first held-out time (the future), earlier interactions with a
    held-out item (so :func:`check_no_leakage` holds) and rows sharing a held-out ``impression_id``.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}.")
    _require(events, "events", ["user_id", "item_id", time_col])
    df = events.reset_index(drop=True)
    inter = _interaction_mask(df, event_types)
    sub = df.loc[inter, ["user_id", "item_id", time_col]].sort_values([time_col, "item_id"], kind="stable")
    sub = sub.sort_values("user_id", kind="stable")
    grouped = sub.groupby("user_id", sort=False)
    held = (grouped.cumcount(ascending=False) < n) & (grouped["item_id"].transform("size") > n)
    test_rows = sub.index[held.to_numpy()]
    is_test = np.zeros(len(df), bool)
    is_test[test_rows] = True
    cutoff = df.loc[test_rows].groupby("user_id")[time_col].min()
    user_cut = df["user_id"].map(cutoff)
    keep = ~is_test & (user_cut.isna() | (df[time_col] <= user_cut)).to_numpy()
    pairs = pd.MultiIndex.from_frame(df.loc[test_rows, ["user_id", "item_id"]])
    keep &= ~(inter & pd.MultiIndex.from_frame(df[["user_id", "item_id"]]).isin(pairs))
    if "impression_id" in df.columns:
        keep &= ~df["impression_id"].isin(df.loc[test_rows, "impression_id"].dropna()).to_numpy()
    return _finish(df.loc[keep], None), _finish(df.loc[is_test], None)


def published_split(train: pd.DataFrame, test: pd.DataFrame, *, keys: Sequence[str] = ("user_id", "item_id"),
                    check_leakage: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A published split as given: check both tables have the keys (and, by default, no leakage)."""
    _require(train, "train", keys)
    _require(test, "test", keys)
    if check_leakage:
        check_no_leakage(train, test, keys=keys)
    return train, test


def check_no_leakage(train: pd.DataFrame, test: pd.DataFrame, *, keys: Sequence[str] = ("user_id", "item_id"),
                     event_types: Sequence[str] | None = None) -> None:
    """Raise LeakageError when a test interaction's ``keys`` also occur among train interactions."""
    keys = list(keys)
    _require(train, "train", keys)
    _require(test, "test", keys)
    for k in keys:
        a, b = train[k].dtype, test[k].dtype
        if _kind(a) != _kind(b):
            raise DataValidationError(
                f"check_no_leakage: column '{k}' is {a} in train but {b} in test, so equal ids would not match."
                f"\nFix: give both tables one id type, e.g. test['{k}'] = test['{k}'].astype(train['{k}'].dtype).")
    tr = train.loc[_interaction_mask(train, event_types), keys].drop_duplicates()
    te = test.loc[_interaction_mask(test, event_types), keys]
    leaked = te.merge(tr, on=keys, how="inner")
    if len(leaked):
        n_rows = len(leaked)
        sample = leaked.drop_duplicates().head(SAMPLE).to_string(index=False)
        raise LeakageError(
            f"{n_rows} test interaction(s) ({len(leaked.drop_duplicates())} distinct {tuple(keys)}) also occur in "
            f"train; the first ones:\n{sample}\nFix: remove them from train (or test), e.g. "
            f"train = train.merge(test[{keys}].drop_duplicates(), on={keys}, how='left', indicator=True)"
            ".query('_merge == \"left_only\"').drop(columns='_merge'); or split with "
            "leave_last_out(events) / time_split(events, drop_seen_pairs=True), which keep them apart.")


def check_time_leakage(features: pd.DataFrame, split_time, time_col: str = "timestamp") -> None:
    """Raise LeakageError when feature rows carry times at or after ``split_time`` (future information).

    The same guard evaluation uses (:func:`recsys.evaluation.check_features_before_split`).
    """
    from recsys.evaluation.leakage import check_features_before_split

    check_features_before_split(features, split_time, timestamp_col=time_col, name="features")


def _interaction_mask(df: pd.DataFrame, event_types: Sequence[str] | None) -> np.ndarray:
    if "event_type" not in df.columns:
        if event_types is not None:
            raise DataValidationError(
                f"event_types={list(event_types)} was given but the table has no 'event_type' column "
                f"(columns: {list(df.columns)}).\nFix: drop the event_types argument or add the column.")
        return np.ones(len(df), bool)
    if event_types is None:
        event_types = [t for t in EVENT_TYPES if t != "impression"]
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise ConfigError(f"unknown event type(s) {unknown}; use some of {list(EVENT_TYPES)}.")
    return df["event_type"].isin(list(event_types)).to_numpy()


def _drop_seen(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    keys = ["user_id", "item_id"]
    _require(train, "events", keys)
    seen = pd.MultiIndex.from_frame(train.loc[_interaction_mask(train, None), keys].drop_duplicates())
    drop = _interaction_mask(test, None) & pd.MultiIndex.from_frame(test[keys]).isin(seen)
    if "impression_id" in test.columns and drop.any():
        drop |= test["impression_id"].isin(test.loc[drop, "impression_id"].dropna()).to_numpy()
    return test.loc[~drop]


def _require(df: object, name: str, columns: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}.\n"
                                  "Fix: load the table first, e.g. recsys.features.schema.validate_events(path).")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{name}: missing column(s) {missing}; the table has {list(df.columns)}.\n"
            f"Fix: rename your columns, e.g. df.rename(columns={{'<your name>': '{missing[0]}'}}).")
    if len(df) == 0:
        raise DataValidationError(f"{name}: the table is empty.\nFix: pass a table with at least one row.")


def _kind(dtype) -> str:
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "other"  # strings, objects, categoricals: merge compares values


def _as_time(value, ts: pd.Series, name: str):
    """Bring a cut-off into the column's time kind: Timestamps for datetimes, Unix seconds for numbers."""
    is_dt = pd.api.types.is_datetime64_any_dtype(ts.dtype)
    try:
        if is_dt:
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                return pd.Timestamp(value, unit="s", tz=ts.dt.tz)
            out = pd.Timestamp(value)
            if ts.dt.tz is None and out.tzinfo is not None:
                out = out.tz_convert("UTC").tz_localize(None)
            elif ts.dt.tz is not None and out.tzinfo is None:
                out = out.tz_localize(ts.dt.tz)
            return out
        if pd.api.types.is_numeric_dtype(ts.dtype):
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                return value
            return pd.Timestamp(value).timestamp()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{name}={value!r} is not a time ({e}).\nFix: pass e.g. '2026-01-10' or a "
                          "pd.Timestamp (Unix seconds for integer time columns).") from None
    raise DataValidationError(f"the time column has dtype {ts.dtype}; expected datetime64 or Unix seconds.\n"
                              "Fix: validate the table first (recsys.features.schema.validate_events).")


def _finish(df: pd.DataFrame, cut) -> pd.DataFrame:
    out = df.reset_index(drop=True)
    if cut is not None:
        out.attrs["split_time"] = cut
    return out
