"""Catalogue updates shared by the workers (issue 19): an update is journaled (the journal's ``updates`` table)
before its 2xx and every worker applies what it has not seen before its next request, in journal order with
the events; a new version (a swap, a restart) replays them. Without a journal the in-memory update log is
bounded. In process (two apps on one journal) and with a real `recsys serve --workers 2` subprocess."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from recsys.service.app import create_app  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from recsys.storage.journal import EventJournal  # noqa: E402
from tests.test_service_support import V1, Server, make_v2  # noqa: E402

REQ = {"user_id": 18, "media_id": "guide-0", "k": 5}
FIRST, SECOND = 42, 22  # the first two items of user 18's guide-0 feed in v1 (tests/fixtures/bundles/v1_expected.json)


def _app(journal: Path | None, model: Path = V1, **kw):
    return create_app(ServiceSettings(model=str(model), poll_seconds=0, warm=False,
                                      journal=None if journal is None else str(journal), **kw), keys=None)


def _items(client, req=REQ) -> list:
    r = client.post("/v1/recommend", json=req)
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def test_an_update_through_one_worker_reaches_the_other_before_its_next_request(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with TestClient(_app(journal)) as a, TestClient(_app(journal)) as b:  # no poller: only the request path
        assert FIRST in _items(b)
        assert a.post("/v1/catalogue/remove", json={"item_ids": [FIRST]}).json()["changed"] == 1
        assert FIRST not in _items(b) and FIRST not in _items(a)
        assert b.post("/v1/catalogue/stock", json={"item_ids": [SECOND], "in_stock": False}).status_code == 200
        assert SECOND not in _items(a)
        bad = b.post("/v1/catalogue/stock", json={"item_ids": [10, 17], "in_stock": [False]})  # flags != ids
        assert bad.status_code == 422  # refused by the library: retracted from the journal, applied nowhere
        assert [u[1] for u in EventJournal(journal).read_updates()] == ["remove_items", "set_in_stock"]
        assert 10 in _items(a) and 10 in _items(b)
    with TestClient(_app(journal)) as c:  # a restart replays the journaled updates
        got = _items(c)
        assert FIRST not in got and SECOND not in got


def test_a_swapped_in_version_gets_the_journaled_updates(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    v2 = make_v2(tmp_path / "v2")
    with TestClient(_app(journal)) as a:
        a.post("/v1/catalogue/remove", json={"item_ids": [SECOND]})
        r = a.post("/v1/admin/reload", json={"model": str(v2)})
        assert r.json()["result"] == "swapped", r.text
        assert SECOND not in _items(a)
        assert a.get("/v1/model").json()["update_log_entries"] == 0  # kept in the journal, not in memory


def test_without_a_journal_the_update_log_is_bounded(tmp_path: Path) -> None:
    app = _app(None)
    app.ctx.holder.max_log = 2
    with TestClient(app) as a:
        for item in (10, 17):
            assert a.post("/v1/catalogue/remove", json={"item_ids": [item]}).status_code == 200
        r = a.post("/v1/catalogue/remove", json={"item_ids": [FIRST]})
        assert r.status_code == 503 and "--journal" in r.json()["error"]
        assert FIRST in _items(a)  # refused: nothing changed


def test_two_real_workers_share_a_removal(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    srv = Server(["--model", str(V1), "--poll-seconds", "0", "--workers", "2", "--journal", str(journal)], tmp_path,
                 timeout=120)
    try:
        def feed(_: int) -> tuple[str, list]:
            with httpx.Client() as c:  # a new connection each time, so either worker may take it
                r = c.post(srv.url + "/v1/recommend", json=REQ, timeout=30)
                assert r.status_code == 200, r.text
                return r.headers["x-recsys-worker"], [i["item_id"] for i in r.json()["items"]]

        before = [feed(0) for _ in range(4)]
        assert all(FIRST in items for _, items in before)
        r = httpx.post(srv.url + "/v1/catalogue/remove", json={"item_ids": [FIRST]}, timeout=30)
        assert r.status_code == 200 and r.json()["changed"] == 1
        pids: set[str] = set()
        with ThreadPoolExecutor(4) as pool:
            for _ in range(10):  # until both workers answered (each round: 20 requests, 4 at a time)
                got = list(pool.map(feed, range(20)))
                assert all(FIRST not in items for _, items in got), got
                pids |= {pid for pid, _ in got}
                if len(pids) == 2:
                    break
        assert len(pids) == 2, f"only worker(s) {pids} answered; the test did not reach both"
    finally:
        srv.stop()
    assert EventJournal(journal).read_updates()[0][1:3] == ("remove_items", {"item_ids": [FIRST]})
