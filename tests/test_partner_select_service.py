"""Products to carry and partners to recruit over HTTP (keys: a partner reads its own carry list only; recruit
is the admin's) and as `partner carry` / `partner recruit` commands writing JSON and a bar plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from recsys.cli.partner_select import register  # noqa: E402
from recsys.service.app import create_app  # noqa: E402
from recsys.service.keys import KeyStore  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from tests.test_service_support import ADMIN, GUIDE0, V1, auth  # noqa: E402

KEYS = KeyStore.from_mapping({"admin": ADMIN, "partners": {"guide-0": GUIDE0}})


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServiceSettings(model=str(V1), poll_seconds=0), keys=KEYS)) as c:
        yield c


def test_a_partner_reads_its_own_carry_list_only(client: TestClient) -> None:
    r = client.get("/v1/partners/guide-0/carry?n=5", headers=auth(GUIDE0))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["media_id"] == "guide-0" and body["model_version"] and len(body["items"]) == 5
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5] and all(i["reason"] for i in body["items"])
    other = client.get("/v1/partners/guide-1/carry", headers=auth(GUIDE0))
    assert other.status_code == 403 and "guide-1" in other.json()["error"]
    assert client.get("/v1/partners/guide-0/carry").status_code == 401
    assert client.get("/v1/partners/guide-1/carry?n=3", headers=auth(ADMIN)).status_code == 200
    assert client.get("/v1/partners/guide-0/carry?n=0", headers=auth(GUIDE0)).status_code == 422
    unknown = client.get("/v1/partners/no-such/carry", headers=auth(ADMIN))
    assert unknown.status_code == 422 and "unknown media_id" in unknown.json()["error"]


def test_recruit_is_the_admins(client: TestClient) -> None:
    refused = client.get("/v1/partners/recruit?item_id=3", headers=auth(GUIDE0))
    assert refused.status_code == 403 and "admin key" in refused.json()["error"]
    r = client.get("/v1/partners/recruit?item_id=3&n=4", headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == 3 and body["by"] == "commission" and 0 < len(body["partners"]) <= 4
    values = [p["expected_commission"] for p in body["partners"]]
    assert values == sorted(values, reverse=True)
    assert client.get("/v1/partners/recruit", headers=auth(ADMIN)).status_code == 422
    assert client.get("/v1/partners/recruit?item_id=3&brand=x", headers=auth(ADMIN)).status_code == 422
    unknown = client.get("/v1/partners/recruit?brand=no-such-brand", headers=auth(ADMIN))
    assert unknown.status_code == 422 and "unknown brand" in unknown.json()["error"]


def test_commands_write_json_and_a_plot(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a Typer app with a single command would take it as the root
    runner = CliRunner()
    r = runner.invoke(app, ["carry", "--model", str(V1), "--out", str(tmp_path), "--media-id", "guide-0", "--n", "4"])
    assert r.exit_code == 0, r.output
    carry = json.loads((tmp_path / "carry.json").read_text())
    assert carry["media_id"] == "guide-0" and len(carry["items"]) == 4
    assert (tmp_path / "carry.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["recruit", "--model", str(V1), "--out", str(tmp_path), "--item-id", "3", "--n", "2"])
    assert r.exit_code == 0, r.output
    recruit = json.loads((tmp_path / "recruit.json").read_text())
    assert recruit["item_id"] == 3 and len(recruit["partners"]) == 2 and (tmp_path / "recruit.png").exists()
    bad = runner.invoke(app, ["recruit", "--model", str(V1), "--out", str(tmp_path), "--brand", "no-such-brand"])
    assert bad.exit_code == 2 and "unknown brand" in bad.output
