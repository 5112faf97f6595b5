"""POST /v1/events: a partner posts only its own events, a bad row is refused whole (422 naming it, nothing
journaled), accepted events are journaled before the reply and replayed into a restarted service and into a
swapped-in version (a repeat is then acknowledged as nothing new)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from recsys.service.app import create_app  # noqa: E402
from recsys.service.keys import KeyStore  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from recsys.storage.journal import EventJournal  # noqa: E402
from tests.test_service_support import ADMIN, APP0, GUIDE0, V1, auth, make_v2  # noqa: E402

KEYS = KeyStore.from_mapping({"admin": ADMIN, "partners": {"guide-0": GUIDE0, "app-0": APP0}})
EVENTS = [{"user_id": 18, "item_id": 42, "timestamp": "2026-01-15T10:00:00", "event_type": "click"},
          {"user_id": 18, "item_id": 22, "timestamp": "2026-01-15T10:01:00", "event_type": "purchase", "value": 12.5}]


def _app(model: Path, journal: Path | None):
    return create_app(ServiceSettings(model=str(model), poll_seconds=0, warm=False,
                                      journal=None if journal is None else str(journal)), keys=KEYS)


def test_events_journaled_partner_scoped_and_replayed(tmp_path: Path) -> None:
    journal = tmp_path / "events.sqlite"
    with TestClient(_app(V1, journal)) as c:
        other = c.post("/v1/events", json={"events": [{**EVENTS[0], "media_id": "app-0"}]}, headers=auth(GUIDE0))
        assert other.status_code == 403 and "guide-0" in other.json()["error"]
        bad = c.post("/v1/events", json={"events": [EVENTS[0], {**EVENTS[1], "event_type": "zap"}]},
                     headers=auth(GUIDE0))
        assert bad.status_code == 422 and "event_type" in bad.json()["error"]
        assert c.post("/v1/events", json={"events": EVENTS}).status_code == 401
        assert len(EventJournal(journal).read()) == 0  # nothing of the refused batches was journaled

        ok = c.post("/v1/events", json={"events": EVENTS}, headers=auth(GUIDE0))
        assert ok.status_code == 200 and ok.json()["accepted"] == 2 and ok.json()["model_version"]
        rows = EventJournal(journal).read()
        assert rows["media_id"].tolist() == ["guide-0", "guide-0"] and rows["item_id"].tolist() == [42, 22]
        again = c.post("/v1/events", json={"events": EVENTS}, headers=auth(GUIDE0))
        assert again.status_code == 200 and again.json()["accepted"] == 0  # already in the model's log

        v2 = make_v2(tmp_path / "v2")
        assert c.post("/v1/admin/reload", json={"model": str(v2)}, headers=auth(ADMIN)).json()["result"] == "swapped"
        assert c.post("/v1/events", json={"events": EVENTS}, headers=auth(GUIDE0)).json()["accepted"] == 0
    with TestClient(_app(V1, journal)) as c:  # a restart replays the journal before serving
        assert c.post("/v1/events", json={"events": EVENTS}, headers=auth(GUIDE0)).json()["accepted"] == 0
        new = c.post("/v1/events", json={"events": [{**EVENTS[0], "timestamp": "2026-01-15T11:00:00"}]},
                     headers=auth(APP0))
        assert new.json()["accepted"] == 1
    assert EventJournal(journal).read()["media_id"].tolist() == ["guide-0", "guide-0", "app-0"]


def test_events_need_a_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_EVENT_JOURNAL", raising=False)
    with TestClient(_app(V1, None)) as c:
        r = c.post("/v1/events", json={"events": EVENTS}, headers=auth(GUIDE0))
        assert r.status_code == 503 and "--journal" in r.json()["fix"]


def test_workers_sharing_a_journal_catch_up_at_each_poll(tmp_path: Path) -> None:
    """Two apps on one journal (what `recsys serve --workers 2` runs): events posted to one reach the other's model
    at its next poll (a repeat is then nothing new there)."""
    import time

    journal = tmp_path / "events.sqlite"

    def worker():
        return create_app(ServiceSettings(model=str(V1), poll_seconds=0.2, warm=False, journal=str(journal)), keys=KEYS)

    with TestClient(worker()) as a, TestClient(worker()) as b:
        assert a.post("/v1/events", json={"events": EVENTS}, headers=auth(GUIDE0)).json()["accepted"] == 2
        time.sleep(1.5)  # several polls of b (every 0.2 s); generous for a loaded 2-core machine
        accepted = b.post("/v1/events", json={"events": [EVENTS[0]]}, headers=auth(GUIDE0)).json()["accepted"]
        assert accepted == 0  # b already holds the event a journaled
