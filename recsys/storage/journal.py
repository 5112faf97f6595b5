"""A durable, append-only journal of live events in SQLite: what the service acknowledged survives a crash.

>>> journal = EventJournal("state/events.sqlite")            # doctest: +SKIP
>>> seq = journal.append(events)      # returns only once the rows are committed and fsynced
>>> journal.read(since=0)             # every row since sequence number 0, with its ``seq``
>>> journal.replay_into(rec)          # after a restart: the journaled events applied to a fresh Recommender

Where it lives: ``EventJournal(path)``, or with no path the file named by the environment variable
``RECSYS_EVENT_JOURNAL`` (a deployment points the journal at its persistent volume by setting it); the folder
is created if missing. The file is an ordinary SQLite database: back it up with ``sqlite3 PATH ".backup ..."``
while it is in use. A store other than SQLite can stand in wherever a journal is passed
(``Recommender.observe(events, journal=...)`` calls only ``append``).

Durability: WAL mode with ``synchronous=FULL``, one transaction per :meth:`EventJournal.append`, so a
returned sequence number is on disk (a SIGKILL or power cut after the return loses nothing) and a batch is
either wholly in the journal or not at all. Threads share one connection behind a lock; processes (several
service workers) share the file through SQLite's own locking, waiting up to ``timeout`` seconds for a writer.
A process forked after opening gets a new connection of its own.

Catalogue updates (``updates`` table; :meth:`EventJournal.append_update`): a kind (``add_items``,
``remove_items``, ``set_in_stock``, ...) and a JSON payload, with their own increasing sequence numbers and,
taken in the same transaction, the last event sequence number (``events_seq``), so events and updates replay
in the order they were journaled: an update after the events numbered up to its ``events_seq``. The service
journals every catalogue update there before it answers, and every worker applies the ones it has not seen
(``recsys/service/sync.py``). :meth:`EventJournal.retract_update` deletes an update its writer could not apply.

Rows: the events contract's columns (``user_id``, ``item_id``, ``timestamp``, ``event_type``, ``media_id``,
``value``, ``impression_id``). Only validated rows are stored: ``validate`` (:func:`recsys.feed.live.open_journal`
passes the contract's :func:`~recsys.features.schema.validate_events`; this layer cannot import it) cleans the
batch first, and every row is then checked to have ids (int or str, kept as such), a datetime64 timestamp and
an event type; a bad row raises DataValidationError naming it and nothing is written. Ids keep their type (an
int comes back an int, ``"007"`` stays a string), timestamps their nanoseconds.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataValidationError
from recsys.storage.atomic import fsync_path

__all__ = ["EventJournal", "JOURNAL_ENV", "COLUMNS"]

JOURNAL_ENV = "RECSYS_EVENT_JOURNAL"
COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "media_id", "value", "impression_id")
_REQUIRED = COLUMNS[:4]
_IDS = ("user_id", "item_id", "media_id", "impression_id")
_SCHEMA = ("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
           "item_id TEXT NOT NULL, timestamp INTEGER NOT NULL, event_type TEXT NOT NULL, media_id TEXT, value REAL, "
           "impression_id TEXT)")
_UPDATES_SCHEMA = ("CREATE TABLE IF NOT EXISTS updates (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
                   "payload TEXT NOT NULL, events_seq INTEGER NOT NULL)")
_HEADS = "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), (SELECT COALESCE(MAX(seq), 0) FROM updates)"
_INSERT = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _encode_id(v: Any, row: int, column: str) -> str | None:
    """An id as text that keeps its type: ``i:42`` or ``s:abc`` (any width of int; None when missing)."""
    if isinstance(v, np.generic):
        v = v.item()
    if _missing(v):
        if column in _REQUIRED:
            raise DataValidationError(f"events row {row}: {column} is missing")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise DataValidationError(f"events row {row}: {column} must be an int or a str id, got {type(v).__name__} "
                                  f"{v!r}")
    return f"i:{v}" if isinstance(v, int) else f"s:{v}"


def _decode_id(v: str | None) -> Any:
    if v is None:
        return None
    return int(v[2:]) if v.startswith("i:") else v[2:]


def _records(events: pd.DataFrame) -> list[tuple]:
    """The rows as tuples for the table, each field checked (DataValidationError naming the row and field)."""
    if not isinstance(events, pd.DataFrame):
        raise DataValidationError(f"the journal appends a DataFrame of events, got {type(events).__name__}")
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise DataValidationError(f"events: missing column(s) {missing}; the journal stores {list(COLUMNS)}")
    if not pd.api.types.is_datetime64_any_dtype(events["timestamp"].dtype):
        raise DataValidationError("events: column 'timestamp' must be datetime64 (validated rows); validate the "
                                  "batch first, e.g. with recsys.features.schema.validate_events, or open the "
                                  "journal with recsys.feed.live.open_journal")
    ts = events["timestamp"].dt.tz_localize(None) if events["timestamp"].dt.tz is not None else events["timestamp"]
    times = ts.to_numpy(dtype="datetime64[ns]")
    cols = {c: (events[c].tolist() if c in events.columns else [None] * len(events)) for c in COLUMNS}
    out = []
    for n in range(len(events)):
        if np.isnat(times[n]):
            raise DataValidationError(f"events row {n}: timestamp is missing")
        kind = cols["event_type"][n]
        if _missing(kind) or not str(kind):
            raise DataValidationError(f"events row {n}: event_type is missing")
        value = cols["value"][n]
        if not _missing(value) and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
            raise DataValidationError(f"events row {n}: value must be a number, got {value!r}")
        out.append((_encode_id(cols["user_id"][n], n, "user_id"), _encode_id(cols["item_id"][n], n, "item_id"),
                    int(times[n].astype(np.int64)), str(kind), _encode_id(cols["media_id"][n], n, "media_id"),
                    None if _missing(value) else float(value),
                    _encode_id(cols["impression_id"][n], n, "impression_id")))
    return out


def _upper(until: int | None) -> int:
    return 2**62 if until is None else int(until)


class EventJournal:
    """Append-only SQLite journal of validated events with increasing sequence numbers (module docstring)."""

    def __init__(self, path: str | os.PathLike | None = None, *,
                 validate: Callable[[pd.DataFrame], pd.DataFrame] | None = None, timeout: float = 30.0) -> None:
        path = path if path is not None else os.environ.get(JOURNAL_ENV)
        if not path:
            raise ConfigError(f"no event journal path: pass EventJournal(path) or set ${JOURNAL_ENV} to a file on "
                              "persistent storage, e.g. /var/lib/recsys/events.sqlite")
        self.path = Path(path).expanduser()
        self.validate = validate
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._pid = -1
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._connection().execute(_SCHEMA)
            self._connection().execute(_UPDATES_SCHEMA)
        if new:  # the new file's name is durable too
            fsync_path(self.path.parent)

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (call with the lock held)."""
        if self._con is None or self._pid != os.getpid():
            try:
                con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise ConfigError(f"cannot open the event journal {self.path} ({e}): check that the path is a "
                                  "writable SQLite file on a local disk") from None
            self._con, self._pid = con, os.getpid()
        return self._con

    def append(self, events: pd.DataFrame) -> int:
        """Write ``events`` in one transaction; returns the last sequence number once committed and on disk (an
        empty batch returns the journal's last sequence number). A bad row raises DataValidationError, and
        nothing is written."""
        rows = _records(self.validate(events) if self.validate is not None and len(events) else events)
        if not rows:
            return self.last_seq()
        return self._insert(lambda con: con.executemany(_INSERT, rows))

    def _insert(self, write: Any) -> int:
        """Run ``write(connection)`` in one transaction; the last inserted sequence number once committed and on
        disk (nothing is written when it raises)."""
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                write(con)
                seq = int(con.execute("SELECT last_insert_rowid()").fetchone()[0])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return seq

    def last_seq(self) -> int:
        """The highest sequence number written (0 for an empty journal)."""
        with self._lock:
            return int(self._connection().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def read(self, since: int = 0, until: int | None = None) -> pd.DataFrame:
        """Every event with a sequence number above ``since`` (and at most ``until``), in sequence order: the
        contract's columns and ``seq``."""
        with self._lock:
            cur = self._connection().execute(f"SELECT seq, {', '.join(COLUMNS)} FROM events WHERE seq > ? AND "
                                             "seq <= ? ORDER BY seq", (int(since), _upper(until)))
            rows = cur.fetchall()
        seq, user, item, ts, kind, media, value, imp = (list(c) for c in zip(*rows, strict=True)) if rows else \
            ([] for _ in range(8))
        out = pd.DataFrame({"user_id": pd.Series([_decode_id(v) for v in user], dtype=None if rows else object),
                            "item_id": pd.Series([_decode_id(v) for v in item], dtype=None if rows else object),
                            "timestamp": pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="ns"),
                            "event_type": pd.Series(kind, dtype=object),
                            "media_id": pd.Series([_decode_id(v) for v in media], dtype=object),
                            "value": pd.Series(value, dtype=np.float64),
                            "impression_id": pd.Series([_decode_id(v) for v in imp], dtype=object),
                            "seq": pd.Series(seq, dtype=np.int64)})
        return out

    def replay_into(self, rec: Any, since: int = 0, until: int | None = None) -> int:
        """Apply the events after ``since`` (up to ``until``) to ``rec`` (``rec.observe``) in one batch; returns how
        many it applied.
        Events its serving log already holds are skipped, so a replay is safe to repeat; events naming items or
        partners ``rec`` does not know (a newer model's catalogue) are skipped with a warning, not refused."""
        events = self.read(since, until)
        if not len(events):
            return 0
        return int(rec.observe(events.drop(columns="seq"), skip_unknown=True))

    # ----- catalogue updates ---------------------------------------------------------------------
    def append_update(self, kind: str, payload: dict) -> int:
        """Journal one catalogue update (``payload``: JSON data) in one transaction, with the last event sequence
        number; returns its sequence number once committed and on disk. A payload that is not JSON data raises
        DataValidationError, and nothing is written."""
        if not kind or not isinstance(payload, dict):
            raise DataValidationError(f"a journaled update needs a kind and a dict payload, got {kind!r}, "
                                      f"{type(payload).__name__}")
        try:
            text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise DataValidationError(f"update {kind!r}: the payload is not JSON data ({e}); send ids, numbers, "
                                      "text and booleans") from None
        return self._insert(lambda con: con.execute("INSERT INTO updates (kind, payload, events_seq) VALUES (?, ?, "
                                                    "(SELECT COALESCE(MAX(seq), 0) FROM events))", (str(kind), text)))

    def read_updates(self, since: int = 0, until: int | None = None) -> list[tuple[int, str, dict, int]]:
        """The updates after ``since`` (up to ``until``) in sequence order: ``(seq, kind, payload, events_seq)``."""
        with self._lock:
            rows = self._connection().execute("SELECT seq, kind, payload, events_seq FROM updates WHERE seq > ? AND "
                                              "seq <= ? ORDER BY seq", (int(since), _upper(until))).fetchall()
        return [(int(s), str(k), json.loads(p), int(e)) for s, k, p, e in rows]

    def retract_update(self, seq: int) -> None:
        """Delete update ``seq`` (its writer could not apply it: it was never acknowledged)."""
        with self._lock:
            self._connection().execute("DELETE FROM updates WHERE seq = ?", (int(seq),))

    def heads(self) -> tuple[int, int]:
        """``(last event seq, last update seq)`` in one read: what a reader compares with what it has applied."""
        with self._lock:
            ev, up = self._connection().execute(_HEADS).fetchone()
        return int(ev), int(up)

    def close(self) -> None:
        """Close this process's connection (a later call opens a new one)."""
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    def __repr__(self) -> str:
        return f"EventJournal({str(self.path)!r})"
