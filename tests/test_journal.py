"""The event journal (issue 19, item 5): acknowledged events are durable, replayable and read by training.

Real SQLite files throughout: a round trip keeps ids' types and timestamps' nanoseconds; a bad batch writes
nothing; threads append without losing a row; two processes appending in a loop are SIGKILLed and every
sequence number they printed as acknowledged is there after reopening (and the file passes SQLite's integrity
check); a Recommender loaded from the bundle and replayed from the journal serves the live one's feeds; and
``data.event_journal`` adds the journaled events to ``recsys train``'s events.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recsys
from recsys.errors import ConfigError, DataValidationError
from recsys.feed.live import open_journal
from recsys.storage.journal import JOURNAL_ENV, EventJournal

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "tests" / "fixtures" / "bundles" / "v1"
T0 = pd.Timestamp("2026-01-15 10:00:00")


def _events(n: int, user=1, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [user] * n, "item_id": [(start + i) % 50 for i in range(n)],
                         "timestamp": [T0 + pd.Timedelta(start + i, "s") for i in range(n)],
                         "event_type": ["click"] * n, "media_id": ["guide-0"] * n})


def test_append_read_round_trip_keeps_types_and_order(tmp_path):
    j = open_journal(tmp_path / "events.sqlite")
    assert j.last_seq() == 0 and len(j.read()) == 0
    first = pd.DataFrame({"user_id": ["007", "u-2"], "item_id": [3, 2**62],
                          "timestamp": [T0 + pd.Timedelta(123_456_789, "ns"), T0 + pd.Timedelta(1, "h")],
                          "event_type": ["Purchase", "click"], "media_id": ["kol-0", None], "value": [19.5, None],
                          "impression_id": ["imp-1", None]})
    assert j.append(first) == 2
    assert j.append(_events(3, user="u-3")) == 5
    assert j.append(_events(1, user="u-4").assign(timestamp=1_768_471_300)) == 6  # integer Unix seconds
    got = j.read()
    assert got["seq"].tolist() == [1, 2, 3, 4, 5, 6]
    assert got["user_id"].tolist()[:2] == ["007", "u-2"] and got["item_id"].tolist()[:2] == [3, 2**62]
    assert got["timestamp"].iloc[0] == T0 + pd.Timedelta(123_456_789, "ns")  # nanoseconds kept
    assert got["timestamp"].iloc[5] == pd.Timestamp(1_768_471_300, unit="s")  # validated as the contract reads it
    assert got["event_type"].tolist()[:2] == ["purchase", "click"]
    assert got["media_id"].tolist()[:2] == ["kol-0", None] and got["impression_id"].tolist()[:2] == ["imp-1", None]
    assert got["value"].iloc[0] == 19.5 and np.isnan(got["value"].iloc[1])
    assert j.read(since=3)["seq"].tolist() == [4, 5, 6]
    j.close()
    assert EventJournal(tmp_path / "events.sqlite").read().equals(got)  # reopened: the same rows


def test_a_bad_batch_writes_nothing(tmp_path):
    j = open_journal(tmp_path / "events.sqlite")
    j.append(_events(2))
    bad = _events(3, start=10)
    bad.loc[2, "event_type"] = "buy"
    with pytest.raises(DataValidationError, match="event_type"):
        j.append(bad)
    bare = EventJournal(tmp_path / "events.sqlite")  # no contract validation: the journal's own row checks
    bad = _events(3, start=10)
    bad["user_id"] = pd.Series([1, None, 3], dtype=object)
    with pytest.raises(DataValidationError, match="events row 1: user_id is missing"):
        bare.append(bad)
    with pytest.raises(DataValidationError, match="timestamp"):
        bare.append(_events(1).assign(timestamp="2026-01-15"))  # not validated: refused, not guessed
    assert j.last_seq() == 2 and len(j.read()) == 2


def test_the_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(JOURNAL_ENV, raising=False)
    with pytest.raises(ConfigError, match=JOURNAL_ENV):
        EventJournal()
    monkeypatch.setenv(JOURNAL_ENV, str(tmp_path / "deploy" / "events.sqlite"))
    assert EventJournal().append(_events(1)) == 1
    assert (tmp_path / "deploy" / "events.sqlite").is_file()


def test_threads_append_concurrently_without_losing_a_row(tmp_path):
    j = open_journal(tmp_path / "events.sqlite")
    acks: list[int] = []
    errors: list[BaseException] = []

    def appender(user: int) -> None:
        try:
            for b in range(10):
                acks.append(j.append(_events(2, user=user, start=b * 2)))
        except BaseException as e:  # collected: the test thread reports it
            errors.append(e)

    threads = [threading.Thread(target=appender, args=(u,)) for u in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    got = j.read()
    assert len(got) == 4 * 10 * 2 and got["seq"].is_unique and sorted(acks) == sorted(set(acks))
    assert got.groupby("user_id").size().tolist() == [20] * 4


CHILD = """
import sys
import pandas as pd
from recsys.storage.journal import EventJournal

journal, user = EventJournal(sys.argv[1]), int(sys.argv[2])
t0 = pd.Timestamp("2026-01-15")
for n in range(1_000_000):
    batch = pd.DataFrame({"user_id": [user, user], "item_id": [n, n + 1], "event_type": ["click", "purchase"],
                          "timestamp": [t0 + pd.Timedelta(n, "s"), t0 + pd.Timedelta(n, "s")]})
    print(journal.append(batch), flush=True)  # acknowledged: printed only after append returned
"""


def test_every_acknowledged_append_survives_a_sigkill(tmp_path):
    path = tmp_path / "events.sqlite"
    EventJournal(path)  # created before the writers race to create it
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(u)], stdout=subprocess.PIPE,
                                 text=True, cwd=ROOT) for u in (1, 2)]
    acked: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline:  # both writers well into their loops
            acked.append(int(children[len(acked) % 2].stdout.readline()))
    finally:
        for c in children:
            os.kill(c.pid, signal.SIGKILL)
    for c in children:
        acked += [int(line) for line in c.stdout.read().split()]  # printed before the kill: acknowledged too
        c.wait(timeout=30)
        assert c.returncode == -signal.SIGKILL
    assert len(acked) >= 40
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    j = EventJournal(path)
    got = j.read()
    seqs = set(got["seq"].tolist())
    assert set(acked) <= seqs  # every acknowledged batch is there ...
    assert all(s - 1 in seqs for s in acked)  # ... whole (two rows, consecutive numbers)
    assert len(got) % 2 == 0 and got.groupby("user_id").size().min() > 0  # no half batch from the kill
    assert j.append(_events(1)) == max(seqs) + 1  # and the journal goes on


def test_replay_after_a_restart_serves_the_live_feeds(tmp_path):
    j = open_journal(tmp_path / "events.sqlite")
    live = recsys.load(BUNDLE)
    users = [52, 7, 30_000]
    bought = live.recommend(52, k=5, media_id="guide-0").item_ids[0]
    batches = [[{"user_id": 52, "item_id": bought, "timestamp": T0, "event_type": "purchase", "media_id": "guide-0"}],
               _events(4, user=7), _events(3, user=30_000, start=20)]
    applied = sum(live.observe(b, journal=j) for b in batches)
    assert applied == 8 and len(j.read()) == 8
    restarted = recsys.load(BUNDLE)
    assert j.replay_into(restarted) == 8
    assert j.replay_into(restarted) == 0  # a second replay applies nothing twice
    for u in users:
        a, b = live.recommend(u, k=10, media_id="guide-0"), restarted.recommend(u, k=10, media_id="guide-0")
        assert a.item_ids == b.item_ids and a.fallback == b.fallback
        # the same computation on equal inputs; a tolerance guards against summation-order noise only
        np.testing.assert_allclose(np.asarray(a.items["score"]), np.asarray(b.items["score"]), rtol=1e-6)
    assert bought not in restarted.recommend(52, k=10, media_id="guide-0").item_ids
    saved = recsys.load(live.save(tmp_path / "bundle"))  # a bundle saved after the events holds them ...
    assert j.replay_into(saved) == 0  # ... so replaying the journal into it applies none twice
    assert saved.recommend(30_000, k=10, media_id="guide-0").item_ids == \
        live.recommend(30_000, k=10, media_id="guide-0").item_ids


def test_replay_into_a_model_without_an_item_skips_only_those_events(tmp_path):
    j = open_journal(tmp_path / "events.sqlite")
    j.append(_events(3, user=7).assign(item_id=[1, 99_999, 2]))  # 99999: an item this model never had
    rec = recsys.load(BUNDLE)
    with pytest.raises(DataValidationError, match="events row 1: item_id 99999"):
        rec.observe(j.read().drop(columns="seq"))  # a live batch naming it is refused whole
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        assert j.replay_into(rec) == 2  # a replay keeps the rest


def test_recsys_train_reads_journaled_events(tmp_path):
    from recsys.fit.parsing import parse
    from recsys.fit.settings import DataConfig
    from recsys.fit.tables import load_tables

    data = tmp_path / "data"
    data.mkdir()
    items = pd.DataFrame({"item_id": [1, 2, 3], "category": "c", "brand": "b", "shop": "s", "price": 10.0,
                          "commission_rate": 0.05, "title": ["a", "b", "c"]})
    events = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "event_type": "click",
                           "timestamp": [T0 - pd.Timedelta(3 - i, "h") for i in range(3)]})
    items.to_parquet(data / "items.parquet")
    events.to_parquet(data / "events.parquet")
    j = open_journal(tmp_path / "events.sqlite")
    j.append(pd.DataFrame({"user_id": [3, 1], "item_id": [2, 3], "event_type": ["purchase", "cart"],
                           "timestamp": [T0, T0 + pd.Timedelta(1, "s")]}))
    j.append(events.iloc[:1])  # an event training already has: the contract keeps it once
    cfg = parse(DataConfig, {"source": "files", "path": str(data), "event_journal": str(tmp_path / "events.sqlite")})
    with pytest.warns(UserWarning, match="duplicate"):
        got = load_tables(cfg).events
    assert len(got) == 5
    rows = set(zip(got["user_id"], got["item_id"], got["event_type"].astype(str), strict=True))
    assert rows >= {(3, 2, "purchase"), (1, 3, "cart")}
    missing = parse(DataConfig, {"source": "files", "path": str(data), "event_journal": str(tmp_path / "no.sqlite")})
    with pytest.raises(ConfigError, match="data.event_journal"):
        load_tables(missing)


def test_catalogue_updates_table_orders_updates_after_the_events_before_them(tmp_path):
    j = open_journal(tmp_path / "events.sqlite")
    assert j.heads() == (0, 0)
    j.append(_events(3))
    first = j.append_update("remove_items", {"item_ids": [1, "007"]})
    j.append(_events(2, start=3))
    second = j.append_update("set_in_stock", {"item_ids": [4], "in_stock": False})
    assert (first, second) == (1, 2) and j.heads() == (5, 2)
    assert j.read_updates() == [(1, "remove_items", {"item_ids": [1, "007"]}, 3),  # ids keep their JSON type
                                (2, "set_in_stock", {"item_ids": [4], "in_stock": False}, 5)]
    assert [u[0] for u in j.read_updates(since=1)] == [2] and j.read_updates(until=1)[0][0] == 1
    assert list(j.read(since=1, until=3)["seq"]) == [2, 3]
    with pytest.raises(DataValidationError, match="not JSON"):
        j.append_update("add_items", {"items": [{"price": float("nan")}]})
    j.retract_update(2)
    assert [u[0] for u in EventJournal(tmp_path / "events.sqlite").read_updates()] == [1]  # reopened
    assert j.append_update("remove_items", {"item_ids": [9]}) == 3  # a retracted number is never reused
