"""Live events: clicks, carts, favs, purchases (and impressions) applied to a serving state without retraining.

:func:`observe` takes a batch of rows of the events contract (:func:`recsys.features.schema.validate_events`)
and returns a NEW :class:`~recsys.feed.state.ServingState` (copy-on-write: a request in flight keeps reading the
old one, whose arrays are never touched) in which

* each user's history (what the user tower reads) and bought items (excluded from their feeds unless the
  category allows repeat purchases) include the events;
* the ranker's point-in-time counts (per item, category, brand, shop, partner, user, user x category, the
  user's own and friends' events on an item) count them: the feature builder is refitted on the grown log,
  exactly as ``add_items`` and loading a bundle fit it, and the serving time ``as_of`` moves to just after the
  latest event;
* the caches that depend on history (user vectors, filters, per-partner histories) start empty.

Unknown users become known users: they enter the serving log, so they get that history, purchases, counts
and a place in their partner's audience; their tower inputs are the new-user row of each vocabulary (the
two-tower learns their id at the next training). Unknown items and partners are refused with a
DataValidationError naming the row (0-based position in the batch) and the field. A batch is all or nothing:
every row is checked before anything changes. Rows already in the serving log (the same user, item,
timestamp, event type and partner: the contract's duplicates) are skipped, so replaying a journal twice, or
into a bundle saved after some of its events, applies each event once. The popular-items fallback is left as
trained (it moves at the next training). The serving time follows the latest event, for every user: a
client whose clock runs ahead moves the windowed counts' "now" with it, so a service should stamp events
itself or bound their timestamps.

Cost: in proportion to the batch, not to the serving log: the count indexes, vocabularies and priors of the
feature builder grow by the new rows (:mod:`recsys.features.live_counts`; the result equals a refit on the
grown log), and only the batch users' rows of the per-user state are recomputed
(:mod:`recsys.feed.live_users`). What still reads the whole log or catalogue, in NumPy/pandas without
per-row Python: the duplicate check, appending to the log, finding the batch users' events, the builder's
prior strengths (one count per item, user and user x category pair) and the ranker's per-item feature blocks.
A batch with events older than the log's latest is applied by rebuilding the per-user state; one naming an
item or category the builder was fitted without, by refitting the builder.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import DataValidationError
from recsys.features.live_counts import extend_builder
from recsys.feed.live_users import grown_partner_log, grown_users
from recsys.feed.partners import known_partners
from recsys.feed.state import ServingState, builder_events, builder_items
from recsys.feed.users import UserState
from recsys.ids import coerce_id, coerce_media, id_kind

__all__ = ["observe", "checked_events", "open_journal", "KEY_COLUMNS"]

KEY_COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "media_id")  # what makes two events the same


def observe(state: ServingState, events: Any, *, skip_unknown: bool = False) -> tuple[ServingState, pd.DataFrame]:
    """``(new state, applied rows)``: ``state`` with the events applied (see the module docstring), and the
    validated rows that were new to its serving log (the ones to journal). No new row: ``state`` itself.
    ``skip_unknown``: rows naming items, partners or ids of a type this state does not know are skipped with a
    DataQualityWarning instead of refusing the batch (a journal replayed into a newer model)."""
    batch = checked_events(state, events, skip_unknown=skip_unknown)
    fresh = batch[~_in_log(state.tables["events"], batch)].reset_index(drop=True)
    if not len(fresh):
        return state, fresh
    return with_events(state, fresh), fresh


def _frame(events: Any) -> pd.DataFrame:
    if isinstance(events, pd.DataFrame):
        return events.reset_index(drop=True)
    if isinstance(events, (list, tuple)) and all(isinstance(e, dict) for e in events):
        return pd.DataFrame(list(events))
    raise DataValidationError(f"events must be a DataFrame or a list of dicts (rows of the events contract: user_id, "
                              f"item_id, timestamp, event_type[, media_id]), got {type(events).__name__}")


def _row_error(row: int, column: str, problem: str) -> DataValidationError:
    return DataValidationError(f"events row {row}: {column} {problem}")


def _ids(frame: pd.DataFrame, column: str, kind: str, what: str, skip: np.ndarray | None) -> pd.Series:
    """``column`` coerced to the model's id type row by row (a no-op when the column already is of it); with
    ``skip``, a value of another type marks its row there instead of raising."""
    s = frame[column]
    if (kind == "int" and pd.api.types.is_integer_dtype(s.dtype)) or kind == "any":
        return s
    out: list = []
    for n, v in enumerate(s.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise _row_error(n, column, "is missing")
        try:
            got, note = coerce_id(v, kind, column, what)
        except DataValidationError as e:
            raise _row_error(n, column, f"is not an id: {e}") from None
        if note is not None and skip is not None:
            skip[n], got = True, (0 if kind == "int" else "")
        elif note is not None:
            raise _row_error(n, column, f"{v!r} is not {'an integer' if kind == 'int' else 'a string'} id of this "
                                        f"model ({what})")
        out.append(got)
    return pd.Series(out, dtype=np.int64 if kind == "int" else object)


def checked_events(state: ServingState, events: Any, *, skip_unknown: bool = False) -> pd.DataFrame:
    """``events`` validated for ``state``: the contract (:func:`recsys.features.schema.validate_events`), ids of
    the model's types, every item in the catalogue, every partner known. Raises DataValidationError naming the
    first bad row and field; returns the cleaned rows (sorted by time, duplicates within the batch dropped).
    ``skip_unknown``: rows failing only the last three checks are dropped, with a DataQualityWarning."""
    from recsys.features.schema import EVENT_TYPES, EVENTS, validate_events

    frame = _frame(events)
    if not len(frame):
        return pd.DataFrame(columns=list(EVENTS.required))
    missing = [c for c in EVENTS.required if c not in frame.columns]
    if missing:
        raise DataValidationError(f"events: missing column(s) {missing}; each event needs {list(EVENTS.required)} "
                                  f"(optional: {list(EVENTS.optional)}), got {list(frame.columns)}")
    frame = frame.copy()
    skip = np.zeros(len(frame), bool) if skip_unknown else None
    frame["user_id"] = _ids(frame, "user_id", id_kind(state.users.ids), "users are keyed by one id type", skip)
    frame["item_id"] = _ids(frame, "item_id", id_kind(state.catalogue.index), "it names no item", skip)
    unknown = np.flatnonzero(state.catalogue.positions(frame["item_id"].to_numpy()) < 0)
    if skip is not None:
        skip[unknown] = True
    elif len(unknown):
        n = int(unknown[0])
        raise _row_error(n, "item_id", f"{frame['item_id'].tolist()[n]!r} is not in the catalogue ({len(unknown)} "
                                       "row(s) name unknown items); add the item with add_items first, or drop the "
                                       "event")
    kinds = frame["event_type"].map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    bad = np.flatnonzero(~kinds.isin(EVENT_TYPES).to_numpy())
    if len(bad):
        n = int(bad[0])
        raise _row_error(n, "event_type", f"{frame['event_type'].tolist()[n]!r} is not one of {list(EVENT_TYPES)}")
    if "media_id" in frame.columns:
        frame["media_id"] = _partners(state, frame["media_id"], skip)
    if skip is not None and skip.any():
        from recsys.features.validation import DataQualityWarning

        warnings.warn(f"events: skipped {int(skip.sum())} of {len(frame)} event(s) naming items, partners or ids "
                      "this model does not know (skip_unknown=True)", DataQualityWarning, stacklevel=3)
        frame = frame[~skip].reset_index(drop=True)
        if not len(frame):
            return pd.DataFrame(columns=list(EVENTS.required))
    return validate_events(frame).reset_index(drop=True)


def _partners(state: ServingState, media: pd.Series, skip: np.ndarray | None) -> pd.Series:
    known = known_partners(state)
    out = []
    for n, v in enumerate(media.tolist()):
        got, note = coerce_media(v)
        if note is not None:
            raise _row_error(n, "media_id", f"is not a partner id: {note}")
        if got is not None and got not in known and skip is not None:
            skip[n], got = True, None
        elif got is not None and got not in known:
            listed = ", ".join(repr(m) for m in sorted(known)[:20]) or "none"
            raise _row_error(n, "media_id", f"{got!r} is not a known partner (known: {listed}); leave it out for an "
                                            "event on no partner")
        out.append(got)
    return pd.Series(out, dtype=object)


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    """The key columns as comparable values: event types as text, no partner as ''."""
    out = pd.DataFrame({c: frame[c].to_numpy(dtype=object) for c in ("user_id", "item_id")})
    out["timestamp"] = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out["event_type"] = frame["event_type"].astype(str).to_numpy(dtype=object)
    media = frame["media_id"] if "media_id" in frame.columns else pd.Series([None] * len(frame), dtype=object)
    out["media_id"] = media.where(media.notna(), "").astype(str).to_numpy(dtype=object)
    return out


def _in_log(log: pd.DataFrame, batch: pd.DataFrame) -> np.ndarray:
    """Which rows of ``batch`` the serving log already holds (same key columns)."""
    if not len(batch) or not len(log):
        return np.zeros(len(batch), bool)
    ts = batch["timestamp"].to_numpy(dtype="datetime64[ns]")
    near = log[log["timestamp"].isin(ts)]  # only rows at one of the batch's times can be the same event
    if not len(near):
        return np.zeros(len(batch), bool)
    seen = set(_keys(near).itertuples(index=False, name=None))
    return np.fromiter((k in seen for k in _keys(batch).itertuples(index=False, name=None)), bool, len(batch))


def with_events(state: ServingState, rows: pd.DataFrame) -> ServingState:
    """A new state whose serving log holds ``rows`` (validated, new to the log) too; see the module docstring."""
    old = state.tables["events"]
    add = rows[[c for c in old.columns if c in rows.columns]]
    if "event_type" in old.columns and not isinstance(old["event_type"].dtype, pd.CategoricalDtype):
        add = add.assign(event_type=add["event_type"].astype(str).to_numpy(dtype=object))
    log = pd.concat([old, add], ignore_index=True)
    at_end = not len(old) or add["timestamp"].min() >= old["timestamp"].max()
    if not at_end:  # stable: equal times keep log order
        log = log.sort_values("timestamp", kind="stable").reset_index(drop=True)
    tables = dict(state.tables, events=log)
    if at_end and len(old):  # the batch users' rows recomputed, the others kept (recsys/feed/live_users.py)
        users = grown_users(state.users, log, add, tables.get("users"), state.catalogue)
    else:
        users = UserState(state.pipeline, log, tables.get("users"), state.catalogue,
                          segment_column=state.config.segment_column)
    builder = state.builder
    if builder is not None:  # the ranker's counts grown by the new rows: what a refit on the grown log gives
        grown = extend_builder(builder, builder_events(add)) if hasattr(builder, "stats_") else None
        if grown is None:  # only a refit can add them (an item or category the fitted builder lacks)
            params = state.builder_params or {}
            grown = type(builder)(**params).fit(builder_events(log), builder_items(state.catalogue.to_frame(False)),
                                                tables.get("social"), tables.get("benefits"))
        builder = grown
    as_of = max(state.as_of, pd.Timestamp(log["timestamp"].max()) + pd.Timedelta(1, "ns"))
    partner_log = grown_partner_log(state, log, users, add) if at_end and len(old) else None
    new = state.evolve(tables=tables, users=users, builder=builder, as_of=as_of, partner_log=partner_log)
    new.candidate_features()  # built now, under the update lock, not by the first request
    known_partners(new)
    return new


def open_journal(path: Any = None):
    """An :class:`~recsys.storage.journal.EventJournal` at ``path`` (else ``$RECSYS_EVENT_JOURNAL``) that holds
    every appended batch to the events contract (:func:`recsys.features.schema.validate_events`) first."""
    from recsys.features.schema import validate_events
    from recsys.storage.journal import EventJournal

    return EventJournal(path, validate=validate_events)
