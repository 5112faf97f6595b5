"""What several workers share through the journal: catalogue updates and events, applied in journal order.

Every catalogue update through the service (add items, remove items, stock) is journaled (the ``updates``
table of :class:`~recsys.storage.journal.EventJournal`) before its 2xx, as events are. :class:`JournalSync`
keeps, per worker process, how far into the journal the serving Recommender is (the last event and update
sequence numbers it applied) and brings it up to date: before every request that reads or changes the model
(:meth:`JournalSync.catch_up`, one small SQLite read when nothing is new), and onto every newly loaded version
from the start (:meth:`JournalSync.on_load`), so a swap never forgets an update and no worker serves an item
that another worker removed once its request has been answered.

Order: updates and events replay in the order they were journaled (an update after the events numbered up to
its ``events_seq``). An update written by another worker that cannot be applied here (an item the loaded
version lacks) is skipped with a warning, as replayed events naming unknown items are; the worker that wrote
it applies it first and retracts it from the journal when it fails there (a bad request: 422, never
acknowledged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from recsys.errors import DataValidationError, RecsysError

__all__ = ["JournalSync", "apply_update", "UPDATE_KINDS"]

log = logging.getLogger("recsys.service")


def _add_items(rec: Any, payload: dict) -> int:
    items = pd.DataFrame(payload["items"])
    pools = payload.get("media_pools")
    pools = None if pools is None else pd.DataFrame(pools, columns=["media_id", "item_id"])
    return int(rec.add_items(items, pools))


def _remove_items(rec: Any, payload: dict) -> int:
    return int(rec.remove_items(list(payload["item_ids"])))


def _set_in_stock(rec: Any, payload: dict) -> int:
    ids = list(payload["item_ids"])
    rec.set_in_stock(ids, payload["in_stock"])
    return len(ids)


UPDATE_KINDS: dict[str, Callable[[Any, dict], int]] = {
    "add_items": _add_items, "remove_items": _remove_items, "set_in_stock": _set_in_stock}


def apply_update(rec: Any, kind: str, payload: dict) -> int:
    """Apply one catalogue update (a kind of :data:`UPDATE_KINDS` and its JSON payload) to ``rec``; returns how
    many items it changed."""
    try:
        fn = UPDATE_KINDS[kind]
    except KeyError:
        raise DataValidationError(f"unknown catalogue update {kind!r}; known: {sorted(UPDATE_KINDS)}") from None
    return fn(rec, payload)


class JournalSync:
    """How far the serving Recommender of this worker is into ``journal`` (events and updates), and the calls
    that bring it up to date. Every method that applies runs with the model holder's update lock held."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        self.events_seen = 0
        self.updates_seen = 0

    def behind(self) -> bool:
        """Whether the journal holds events or updates this worker has not applied (one SQLite read)."""
        events, updates = self.journal.heads()
        return events > self.events_seen or updates > self.updates_seen

    def on_load(self, rec: Any) -> None:
        """A newly loaded version: the whole journal applied to it; this worker's position becomes its."""
        self.events_seen, self.updates_seen = self._apply(rec, 0, 0, None, own=None)[:2]

    def catch_up(self, rec: Any) -> None:
        """Apply to the serving ``rec`` what was journaled since this worker's position."""
        if self.behind():
            self.events_seen, self.updates_seen = self._apply(rec, self.events_seen, self.updates_seen, None,
                                                              own=None)[:2]

    def update(self, rec: Any, kind: str, payload: dict) -> int:
        """A catalogue update through this worker: journaled (durable), then applied with every earlier journal
        entry in order; one that cannot be applied is retracted from the journal and its error raised."""
        if kind not in UPDATE_KINDS:
            raise DataValidationError(f"unknown catalogue update {kind!r}; known: {sorted(UPDATE_KINDS)}")
        seq = self.journal.append_update(kind, payload)
        try:
            self.events_seen, self.updates_seen, changed = self._apply(rec, self.events_seen, self.updates_seen,
                                                                       seq, own=seq)
        except BaseException:
            self.journal.retract_update(seq)
            raise
        return changed

    def _apply(self, rec: Any, events_seen: int, updates_seen: int, until: int | None,
               own: int | None) -> tuple[int, int, int]:
        """Updates after ``updates_seen`` (to ``until``), each after the events journaled before it, then (with
        no ``until``) the events journaled since. Returns the new positions and update ``own``'s result; only
        update ``own`` raises when it cannot be applied (the others are skipped with a warning). After an error
        the caller keeps its old positions: the next call applies those entries again, which is safe (adding,
        removing and stock updates are idempotent, and a replayed event the model holds is skipped)."""
        changed = 0
        for seq, kind, payload, events_seq in self.journal.read_updates(updates_seen, until):
            if events_seq > events_seen:
                self.journal.replay_into(rec, since=events_seen, until=events_seq)
                events_seen = events_seq
            if seq == own:
                changed = apply_update(rec, kind, payload)
            else:
                try:
                    apply_update(rec, kind, payload)
                except RecsysError as e:
                    log.warning("journaled update %d (%s) skipped on this version: %s", seq, kind, e)
            updates_seen = seq
        if until is None:
            last = self.journal.heads()[0]
            if last > events_seen:
                self.journal.replay_into(rec, since=events_seen, until=last)
                events_seen = last
        return events_seen, updates_seen, changed
