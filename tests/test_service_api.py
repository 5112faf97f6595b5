"""The HTTP service in process (FastAPI's TestClient): endpoint shapes, keys, errors, catalogue updates, the
update log replayed onto a swapped-in version, refused versions, polling, settings and the CLI's host rule."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from recsys.errors import ConfigError  # noqa: E402
from recsys.service.app import create_app  # noqa: E402
from recsys.service.keys import KeyStore, hash_key, keys_from_env, load_keys  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from tests.test_service_support import (  # noqa: E402
    ADMIN,
    APP0,
    GUIDE0,
    OUT_OF_STOCK_IN_V2,
    V1,
    auth,
    corrupt_copy,
    make_v2,
)

EXPECTED = json.loads((V1.parent / "v1_expected.json").read_text())
KEYS = KeyStore.from_mapping({"admin": ADMIN, "partners": {"guide-0": GUIDE0, "app-0": hash_key(APP0)}})


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    v2 = make_v2(root / "v2")
    return {"v1": V1, "v2": v2, "bad": corrupt_copy(v2, root / "bad")}


@pytest.fixture(scope="module")
def client():
    app = create_app(ServiceSettings(model=str(V1), poll_seconds=0), keys=KEYS)
    with TestClient(app) as c:
        yield c


def test_recommend_shape_and_feed(client: TestClient) -> None:
    first = EXPECTED["feeds"][0]  # user 18 on guide-0
    r = client.post("/v1/recommend", json={"user_id": first["user_id"], "media_id": "guide-0", "k": 5},
                    headers=auth(GUIDE0))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"user_id", "media_id", "model_version", "fallback", "notes", "items"} <= set(body)
    assert body["user_id"] == first["user_id"] and body["media_id"] == "guide-0" and body["fallback"] is None
    assert body["model_version"] == client.get("/readyz").json()["model_version"]
    assert [i["item_id"] for i in body["items"]] == first["item_ids"]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    for item in body["items"]:
        assert {"rank", "item_id", "title", "price", "score", "pctr", "pcvr", "reason"} <= set(item)
    # the partner key's own partner when media_id is left out; exclude drops an item
    r = client.post("/v1/recommend", json={"user_id": first["user_id"], "k": 5, "exclude": [first["item_ids"][0]]},
                    headers=auth(GUIDE0))
    assert r.json()["media_id"] == "guide-0" and first["item_ids"][0] not in [i["item_id"] for i in r.json()["items"]]


def test_unknown_user_falls_back_with_notes(client: TestClient) -> None:
    cold = EXPECTED["feeds"][3]  # 123456 on guide-1: a new user
    r = client.post("/v1/recommend", json={"user_id": cold["user_id"], "media_id": "guide-1", "k": 5},
                    headers=auth(ADMIN))
    assert r.status_code == 200 and r.json()["fallback"] == cold["fallback"] and r.json()["notes"]


def test_keys_401_403(client: TestClient) -> None:
    body = {"user_id": 18, "media_id": "guide-0", "k": 3}
    missing = client.post("/v1/recommend", json=body)
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["fix"]
    assert client.post("/v1/recommend", json=body, headers=auth("not-a-key-0123456789")).status_code == 401
    other = client.post("/v1/recommend", json={**body, "media_id": "app-0"}, headers=auth(GUIDE0))
    assert other.status_code == 403 and "guide-0" in other.json()["error"] and other.json()["fix"]
    assert client.post("/v1/recommend", json={**body, "media_id": "app-0"}, headers=auth(APP0)).status_code == 200
    assert client.post("/v1/similar", json={"item_id": 42, "media_id": "app-0"}, headers=auth(GUIDE0)).status_code == 403
    # the catalogue and the models are the admin's
    assert client.post("/v1/catalogue/remove", json={"item_ids": [1]}, headers=auth(GUIDE0)).status_code == 403
    assert client.post("/v1/admin/reload", json={}, headers=auth(APP0)).status_code == 403


def test_segment_comes_from_the_server(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"user_id": 123457, "media_id": "guide-0", "k": 5,
                                           "context": {"segment": "vip"}}, headers=auth(GUIDE0))
    assert r.status_code == 200
    assert any("'segment' ignored" in n for n in r.json()["notes"])


def test_errors_are_json_4xx(client: TestClient) -> None:
    bad_k = client.post("/v1/recommend", json={"user_id": 18, "k": 0}, headers=auth(GUIDE0))
    assert bad_k.status_code == 422 and bad_k.json()["error"].startswith("k:")
    extra = client.post("/v1/recommend", json={"user_id": 18, "segment": "vip"}, headers=auth(GUIDE0))
    assert extra.status_code == 422 and "segment" in extra.json()["error"]
    unknown = client.post("/v1/recommend", json={"user_id": 18, "media_id": "guide-9"}, headers=auth(ADMIN))
    assert unknown.status_code == 422 and "guide-0" in unknown.json()["error"]  # the library's message, with the fix
    not_json = client.post("/v1/recommend", content=b"{", headers={**auth(GUIDE0), "content-type": "application/json"})
    assert not_json.status_code == 422


def test_partner_audience_and_pool_pages_under_the_partners_key(client: TestClient) -> None:
    import recsys

    rec = recsys.load(V1)
    got = client.get("/v1/partners/guide-0/audience", params={"limit": 3}, headers=auth(GUIDE0)).json()
    assert got["total"] == len(rec.audience("guide-0")) and got["ids"] == rec.audience("guide-0")[:3].tolist()
    rest = client.get("/v1/partners/guide-0/audience", params={"offset": 3, "limit": 1000}, headers=auth(GUIDE0))
    assert got["ids"] + rest.json()["ids"] == rec.audience("guide-0").tolist() and got["model_version"]
    pool = client.get("/v1/partners/guide-0/pool", params={"limit": 1000}, headers=auth(GUIDE0)).json()
    assert pool["ids"] == rec.pool("guide-0").tolist() and 0 < pool["total"] < rec.info["items"]  # restricted
    assert client.get("/v1/partners/app-0/pool", headers=auth(GUIDE0)).status_code == 403  # another partner's
    assert client.get("/v1/partners/app-0/audience", headers=auth(GUIDE0)).status_code == 403
    assert client.get("/v1/partners/app-0/pool", headers=auth(ADMIN)).status_code == 200
    assert client.get("/v1/partners/nope/pool", headers=auth(ADMIN)).status_code == 422
    assert client.get("/v1/partners/guide-0/pool", params={"limit": 0}, headers=auth(GUIDE0)).status_code == 422
    assert client.get("/v1/partners/guide-0/pool").status_code == 401


def test_similar_items(client: TestClient) -> None:
    r = client.post("/v1/similar", json={"item_id": 42, "k": 4}, headers=auth(GUIDE0))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["media_id"] == "guide-0" and len(body["items"]) == 4 and body["model_version"]
    assert 42 not in [i["item_id"] for i in body["items"]]


def test_probes_docs_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert "/v1/recommend" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    status = client.get("/v1/model", headers=auth(GUIDE0)).json()
    assert status["ready"] and status["partners"] == ["guide-0"]  # a partner key sees only its own partner
    assert "source" not in status and "refused_versions" not in status  # nor the server's paths
    text = client.get("/metrics").text
    assert 'recsys_requests_total{endpoint="/v1/recommend",partner="guide-0",status="200"}' in text
    assert f'recsys_model_info{{name="v1",version="{status["model_version"]}"}} 1.0' in text
    assert "recsys_request_seconds_bucket" in text and "recsys_queue_depth" in text


def test_catalogue_updates_replayed_across_a_swap_and_bad_versions_refused(bundles: dict[str, Path]) -> None:
    """Updates through the service survive a swap; a corrupted version is refused and the old one serves on."""
    app = create_app(ServiceSettings(model=str(bundles["v1"]), poll_seconds=0), keys=KEYS)
    req = {"user_id": 18, "media_id": "guide-0", "k": 5}
    with TestClient(app) as c:
        v1 = c.get("/readyz").json()["model_version"]
        second = EXPECTED["feeds"][0]["item_ids"][1]
        r = c.post("/v1/catalogue/stock", json={"item_ids": [second], "in_stock": False}, headers=auth(ADMIN))
        assert r.status_code == 200 and r.json() == {"model_version": v1, "changed": 1}
        assert second not in [i["item_id"] for i in c.post("/v1/recommend", json=req, headers=auth(GUIDE0)).json()["items"]]
        bad_stock = c.post("/v1/catalogue/stock", json={"item_ids": [1, 2], "in_stock": [True]}, headers=auth(ADMIN))
        assert bad_stock.status_code == 422  # the library's DataValidationError, nothing changed nor logged

        swapped = c.post("/v1/admin/reload", json={"model": str(bundles["v2"])}, headers=auth(ADMIN))
        assert swapped.status_code == 200 and swapped.json()["result"] == "swapped", swapped.text
        v2 = swapped.json()["model_version"]
        assert v2 != v1 and swapped.json()["previous"] == v1
        feed = c.post("/v1/recommend", json=req, headers=auth(GUIDE0)).json()
        assert feed["model_version"] == v2
        ids = [i["item_id"] for i in feed["items"]]
        assert OUT_OF_STOCK_IN_V2 not in ids and second not in ids  # v2's own change and the replayed update
        assert c.post("/v1/admin/reload", json={}, headers=auth(ADMIN)).json()["result"] == "unchanged"

        refused = c.post("/v1/admin/reload", json={"model": str(bundles["bad"])}, headers=auth(ADMIN))
        assert refused.status_code == 409 and refused.json()["result"] == "refused"
        assert "checksum" in refused.json()["error"].lower() or "sha256" in refused.json()["error"].lower()
        status = c.get("/v1/model", headers=auth(ADMIN)).json()
        assert status["model_version"] == v2 and status["last_reload"]["result"] == "refused"
        assert c.post("/v1/recommend", json=req, headers=auth(GUIDE0)).json()["model_version"] == v2


def test_poller_follows_a_replaced_bundle(tmp_path: Path, bundles: dict[str, Path]) -> None:
    live = tmp_path / "live"
    shutil.copytree(bundles["v1"], live)
    app = create_app(ServiceSettings(model=str(live), poll_seconds=0.2, warm=False), keys=None)
    with TestClient(app) as c:
        v1 = c.get("/readyz").json()["model_version"]
        staged = tmp_path / "staged"
        shutil.copytree(bundles["v2"], staged)
        old = tmp_path / "old"
        live.rename(old)
        staged.rename(live)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and c.get("/readyz").json()["model_version"] == v1:
            time.sleep(0.1)
        assert c.get("/readyz").json()["model_version"] != v1
        # no keys configured: the service is open (and recsys serve allows that on 127.0.0.1 only)
        assert c.post("/v1/recommend", json={"user_id": 18, "media_id": "guide-0", "k": 2}).status_code == 200


def test_keys_file_env_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"admin: {hash_key(ADMIN)}\npartners:\n  guide-0: {GUIDE0}\n")
    store = load_keys(path)
    assert store.identify(ADMIN).role == "admin" and store.identify(GUIDE0).partner == "guide-0"
    assert store.identify("x" * 20) is None and store.identify(None) is None
    assert GUIDE0 not in repr(store)  # only hashes are kept
    env = keys_from_env({"RECSYS_ADMIN_KEY": ADMIN, "RECSYS_PARTNER_KEYS": f"app-0={APP0}"})
    assert env.identify(APP0).partner == "app-0"
    assert keys_from_env({}) is None
    for bad in ({"admin": "short"}, {"admin": ADMIN, "partners": {"a": ADMIN}}, {"admin": "sha256:zz"},
                {"admins": ADMIN}):
        with pytest.raises(ConfigError):
            KeyStore.from_mapping(bad)


def test_settings_from_env() -> None:
    s = ServiceSettings.from_env({"RECSYS_SERVE_MODEL": "b", "RECSYS_SERVE_MAX_QUEUE": "3", "RECSYS_SERVE_WARM": "0"})
    assert (s.model, s.max_queue, s.warm) == ("b", 3, False)
    assert ServiceSettings.from_env(s.to_env()) == s
    with pytest.raises(ConfigError, match="RECSYS_SERVE_MAX_QUEUE"):
        ServiceSettings.from_env({"RECSYS_SERVE_MODEL": "b", "RECSYS_SERVE_MAX_QUEUE": "many"})


def test_serve_refuses_open_non_local_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from recsys.cli import app

    monkeypatch.delenv("RECSYS_ADMIN_KEY", raising=False)
    monkeypatch.delenv("RECSYS_PARTNER_KEYS", raising=False)
    result = CliRunner().invoke(app, ["serve", "--model", str(V1), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without API keys" in result.output
    result = CliRunner().invoke(app, ["serve", "--model", "no/such/bundle"])
    assert result.exit_code == 2 and "no readable bundle manifest" in result.output


def test_serving_entry_reads_the_environment_and_needs_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    for name in ("RECSYS_ADMIN_KEY", "RECSYS_PARTNER_KEYS", "RECSYS_SERVE_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECSYS_SERVE_MODEL", str(V1))
    monkeypatch.setenv("RECSYS_SERVE_POLL_SECONDS", "0")
    monkeypatch.setenv("RECSYS_SERVE_THREADS", "0")  # leave this test process's thread pools as they are
    monkeypatch.delitem(sys.modules, "serving.app", raising=False)
    with pytest.raises(ConfigError, match="needs API keys"):
        importlib.import_module("serving.app")
    monkeypatch.setenv("RECSYS_ADMIN_KEY", ADMIN)
    monkeypatch.delitem(sys.modules, "serving.app", raising=False)
    entry = importlib.import_module("serving.app")
    with TestClient(entry.app) as c:
        assert c.post("/v1/recommend", json={"user_id": 18, "media_id": "guide-0"}).status_code == 401
        assert c.post("/v1/recommend", json={"user_id": 18, "media_id": "guide-0"}, headers=auth(ADMIN)).status_code == 200
