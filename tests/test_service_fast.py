"""The fast path of POST /v1/recommend (recsys/service/fast.py) answers as the FastAPI route does; bodies it does not
take reach FastAPI intact; the answer's JSON comes straight from the feed's columns; the model is frozen out of the
cyclic collector after a load; a worker's intra-op threads are limited."""

from __future__ import annotations

import gc
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

import recsys.service.fast as fast  # noqa: E402
from recsys.feed.result import Feed  # noqa: E402
from recsys.service.app import create_app  # noqa: E402
from recsys.service.keys import KeyStore  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from tests.test_service_support import ADMIN, APP0, GUIDE0, V1, auth  # noqa: E402

KEYS = KeyStore.from_mapping({"admin": ADMIN, "partners": {"guide-0": GUIDE0, "app-0": APP0}})
# FastAPI reads application/*+json bodies as JSON too; the fast path takes application/json only, so this content
# type sends the same request through FastAPI's route: the reference the fast path is held to
VIA_FASTAPI = {"Content-Type": "application/merge+json"}


@pytest.fixture(scope="module")
def client():
    gc.unfreeze()  # what an earlier test froze; the app's load freezes again
    app = create_app(ServiceSettings(model=str(V1), poll_seconds=0), keys=KEYS)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """Each request the fast path answered (the FastAPI route does not go through recsys.service.fast)."""
    calls: list = []
    answer = fast.recommend_content

    def counted(*args, **kwargs):
        calls.append(args[2])
        return answer(*args, **kwargs)

    monkeypatch.setattr(fast, "recommend_content", counted)
    return calls


def _close(a, b) -> bool:
    """JSON values equal, floats within 1e-9: the two paths compute each feed anew (same code, same state)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


REQUESTS = [
    (GUIDE0, {"user_id": 18, "media_id": "guide-0", "k": 5}),                          # a known user
    (GUIDE0, {"user_id": 18, "k": 3, "exclude": [42]}),                                # media_id from the key
    (GUIDE0, {"user_id": "nobody", "media_id": "guide-0", "context": {"segment": "vip"}}),  # unknown, a note
    (ADMIN, {"user_id": 18, "media_id": "app-0", "k": 4}),
    (None, {"user_id": 18, "media_id": "guide-0"}),                                    # 401
    (GUIDE0, {"user_id": 18, "media_id": "app-0"}),                                    # 403
    (ADMIN, {"user_id": 18, "media_id": "no-such-partner"}),                           # the library's 422
]


def test_fast_path_answers_as_the_fastapi_route(client: TestClient, fast_calls: list) -> None:
    for key, body in REQUESTS:
        headers = auth(key) if key else {}
        quick = client.post("/v1/recommend", json=body, headers=headers)
        reference = client.post("/v1/recommend", json=body, headers={**headers, **VIA_FASTAPI})
        assert quick.status_code == reference.status_code, (body, quick.text, reference.text)
        assert _close(quick.json(), reference.json()), (body, quick.text, reference.text)
        assert quick.headers["content-type"] == "application/json"
        assert quick.headers.get("www-authenticate") == reference.headers.get("www-authenticate")
    assert len(fast_calls) == 6  # every request with a known key went the fast way (the 401 stops before it)
    ok = client.post("/v1/recommend", json=REQUESTS[0][1], headers=auth(GUIDE0)).json()
    assert len(ok["items"]) == 5 and ok["model_version"] and ok["items"][0]["rank"] == 1
    assert {"rank", "item_id", "title", "price", "score", "pctr", "pcvr", "reason"} <= set(ok["items"][0])


@pytest.mark.parametrize("raw, headers, expected", [
    (b'{"user_id": 18, "k": 0}', {"Content-Type": "application/json"}, "k:"),       # out of range
    (b'{"user_id": 18, "colour": 1}', {"Content-Type": "application/json"}, "colour"),  # unknown field
    (b'{"user_id": 18,', {"Content-Type": "application/json"}, "JSON decode error"),  # not JSON
    (b'{"user_id": 18}', {"Content-Type": "text/plain"}, ""),                          # not sent as JSON
    (b'[1, 2]', {"Content-Type": "application/json"}, ""),                             # not an object
])
def test_bodies_the_fast_path_does_not_take_reach_fastapi(client: TestClient, fast_calls: list, raw: bytes,
                                                          headers: dict, expected: str) -> None:
    r = client.post("/v1/recommend", content=raw, headers={**auth(GUIDE0), **headers})
    assert r.status_code == 422 and expected in r.json()["error"] and r.json()["fix"], r.text
    assert fast_calls == []


def test_fast_answers_are_counted_per_route_and_partner(client: TestClient) -> None:
    def count() -> float:
        line = '\nrecsys_requests_total{endpoint="/v1/recommend",partner="app-0",status="200"} '
        text = client.get("/metrics").text
        return float(text.split(line)[1].split()[0]) if line in text else 0.0

    before = count()
    for _ in range(3):
        assert client.post("/v1/recommend", json={"user_id": 18, "k": 2}, headers=auth(APP0)).status_code == 200
    assert count() == before + 3


def test_a_load_freezes_the_model_out_of_the_collector(client: TestClient) -> None:
    assert gc.get_freeze_count() > 10_000  # the loaded fixture bundle and the modules it imported


def test_to_dict_from_columns_as_from_a_frame() -> None:
    columns = {"rank": np.array([1, 2, 3]), "item_id": np.array([7, 8, 9], dtype=np.int64),
               "score": np.array([0.5, np.nan, np.inf], dtype=np.float32),
               "reason": ["a", None, "c"], "flag": np.array([True, False, True]),
               "at": np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[ns]"),
               "count": pd.array([1, None, 3], dtype="Int64")}
    expected_items = [
        {"rank": 1, "item_id": 7, "score": 0.5, "reason": "a", "flag": True, "at": pd.Timestamp("2024-01-01"),
         "count": 1},
        {"rank": 2, "item_id": 8, "score": None, "reason": None, "flag": False, "at": pd.Timestamp("2024-01-02"),
         "count": None},
        {"rank": 3, "item_id": 9, "score": None, "reason": "c", "flag": True, "at": pd.Timestamp("2024-01-03"),
         "count": 3},
    ]
    from_columns = Feed(np.int64(5), "guide-0", columns).to_dict()
    from_frame = Feed(np.int64(5), "guide-0", pd.DataFrame(columns)).to_dict()
    for out in (from_columns, from_frame):
        assert out["user_id"] == 5 and type(out["user_id"]) is int and out["media_id"] == "guide-0"
        assert out["items"] == expected_items
        assert [type(i["item_id"]) for i in out["items"]] == [int] * 3
        assert list(out["items"][0]) == ["rank", "item_id", "score", "reason", "flag", "at", "count"]


def test_threads_setting_from_the_environment() -> None:
    from recsys.errors import ConfigError

    assert ServiceSettings(model="m").threads == 1
    assert ServiceSettings.from_env({"RECSYS_SERVE_MODEL": "m", "RECSYS_SERVE_THREADS": "0"}).threads == 0
    assert ServiceSettings(model="m", threads=3).to_env()["RECSYS_SERVE_THREADS"] == "3"
    with pytest.raises(ConfigError, match="threads"):
        ServiceSettings(model="m", threads=-1)
