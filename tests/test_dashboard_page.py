"""The dashboard's files as `recsys serve` answers them at /ui, in process (no browser needed): the page and its
scripts come from the package, with a Content-Security-Policy that lets nothing from another origin load, and no
path from the URL reaches the disk. The browser test (tests/test_dashboard_browser.py) drives the page itself."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from recsys.service.app import create_app  # noqa: E402
from recsys.service.dashboard import STATIC_FILES, static_file  # noqa: E402
from recsys.service.settings import ServiceSettings  # noqa: E402
from tests.test_service_support import V1  # noqa: E402


@pytest.fixture(scope="module")
def client() -> TestClient:
    # no `with`: the lifespan (which loads the model) does not run; the page needs no model
    return TestClient(create_app(ServiceSettings(model=str(V1), poll_seconds=0), keys=None))


def test_page_and_files_are_served(client: TestClient) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert scripts == ["/ui/render.js", "/ui/panels.js", "/ui/dashboard.js"] and styles == ["/ui/dashboard.css"]
    for path in scripts + styles:
        r = client.get(path)
        assert r.status_code == 200 and r.content == static_file(path.removeprefix("/ui/"))
        assert r.headers["content-type"] == STATIC_FILES[path.removeprefix("/ui/")]
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui"


def test_nothing_from_another_origin(client: TestClient) -> None:
    headers = client.get("/ui").headers
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    for name in STATIC_FILES:
        text = static_file(name).decode("utf-8")
        # the SVG namespace is a name, not an address the page loads
        assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", "")), name
        assert "innerHTML" not in text and "eval(" not in text and "<script>" not in text, name  # no inline script


@pytest.mark.parametrize("path", ["/ui/keys.yaml", "/ui/..%2Fapp.py", "/ui/index.html", "/ui/static"])
def test_other_paths_are_not_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_key_stays_in_the_tab() -> None:
    """The page keeps the key in sessionStorage and sends it only as an Authorization header (never in a URL, a
    cookie or localStorage)."""
    js = static_file("dashboard.js").decode("utf-8")
    assert "sessionStorage.setItem(KEY" in js and "Authorization: \"Bearer \"" in js
    assert "localStorage" not in js and "document.cookie" not in js and 'credentials: "omit"' in js
