"""GET /v1/partners/{media_id}/insight and /funnel in process: the functions' JSON under the partner's key, another
partner's refused, the privacy floor kept for partner keys, bad parameters answered 422."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

import recsys  # noqa: E402
from recsys.partners import DEFAULT_MIN_GROUP, audience_insight, lifecycle_funnel, partner_tables  # noqa: E402
from recsys.service.app import create_app  # noqa: E402
from recsys.service.keys import KeyStore  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from tests.test_service_support import ADMIN, APP0, GUIDE0, V1, auth  # noqa: E402

KEYS = KeyStore.from_mapping({"admin": ADMIN, "partners": {"guide-0": GUIDE0, "app-0": APP0}})


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServiceSettings(model=str(V1), poll_seconds=0), keys=KEYS)) as c:
        yield c


def test_insight_is_the_functions_report_under_the_partners_key(client: TestClient) -> None:
    r = client.get("/v1/partners/app-0/insight", headers=auth(APP0))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == client.get("/readyz").json()["model_version"]
    expected = audience_insight(recsys.load(V1), "app-0")
    assert body["min_group"] == DEFAULT_MIN_GROUP and body["size"] == expected["size"]
    assert body["top"] == expected["top"] and body["profile"] == expected["profile"]


def test_keys_and_privacy_floor(client: TestClient) -> None:
    assert client.get("/v1/partners/app-0/insight").status_code == 401
    other = client.get("/v1/partners/app-0/insight", headers=auth(GUIDE0))
    assert other.status_code == 403 and "guide-0" in other.json()["error"]
    assert client.get("/v1/partners/app-0/funnel", headers=auth(GUIDE0)).status_code == 403
    low = client.get("/v1/partners/app-0/insight?min_group=3", headers=auth(APP0))
    assert low.status_code == 403 and "privacy floor" in low.json()["error"]
    admin = client.get("/v1/partners/app-0/insight?min_group=3", headers=auth(ADMIN))
    assert admin.status_code == 200 and admin.json()["min_group"] == 3
    assert client.get("/v1/partners/app-0/insight?min_group=0", headers=auth(ADMIN)).status_code == 422


def test_funnel_matches_the_function_and_bad_parameters_are_422(client: TestClient) -> None:
    r = client.get("/v1/partners/app-0/funnel?window=3D&windows=3&brand=bolu&brand=haka", headers=auth(APP0))
    assert r.status_code == 200, r.text
    t = partner_tables(recsys.load(V1))
    expected = lifecycle_funnel(t.events, t.items, media_id="app-0", brands=["bolu", "haka"], window="3D", windows=3)
    body = r.json()
    assert body["counts"] == expected["counts"] and body["flows"] == expected["flows"]
    assert client.get("/v1/partners/app-0/funnel?brand=nope", headers=auth(APP0)).status_code == 422
    assert client.get("/v1/partners/app-0/funnel?window=soon", headers=auth(APP0)).status_code == 400
    assert client.get("/v1/partners/app-0/funnel?windows=0", headers=auth(APP0)).status_code == 422
