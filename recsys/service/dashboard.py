"""The partner's dashboard at ``/ui`` of ``recsys serve``: a static page (HTML, vanilla JS, CSS in ``static/``).

The page holds no data of its own: after the partner logs in with its API key (kept in the tab's
``sessionStorage``, sent only as ``Authorization: Bearer KEY`` on ``fetch`` calls to this same service), it
reads the partner's endpoints (``/v1/model``, ``/v1/partners/{id}/audience``, ``POST /v1/recommend`` and the
insight, funnel and carry endpoints under ``/v1/partners/{id}/``) and draws them; every key check is theirs,
so another partner's data is refused (403) here as anywhere. Nothing is fetched from another origin: the
Content-Security-Policy below lets the page load scripts, styles and data from this service only.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

__all__ = ["router", "STATIC_FILES"]

router = APIRouter(include_in_schema=False)

# the files the page is made of, and their media types (a fixed list: no path from the URL reaches the disk)
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "render.js": "text/javascript; charset=utf-8",
    "panels.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def static_file(name: str) -> bytes:
    """The bytes of one of the page's files (packaged beside this module in ``static/``)."""
    return resources.files("recsys.service").joinpath("static", name).read_bytes()


def _answer(name: str) -> Response:
    return Response(static_file(name), media_type=STATIC_FILES[name], headers=_HEADERS)


@router.get("/ui")
def ui_page() -> Response:
    """The dashboard's page (log in with the partner key, then four panels)."""
    return _answer("index.html")


@router.get("/ui/")
def ui_slash() -> RedirectResponse:
    """``/ui/`` -> ``/ui`` (one address for the page, so its relative links resolve one way)."""
    return RedirectResponse("/ui", status_code=308)


@router.get("/ui/{name}")
def ui_file(name: str) -> Response:
    """One of the page's scripts and style sheets (404 for any other name)."""
    if name not in STATIC_FILES or name == "index.html":
        return Response("not found", status_code=404, media_type="text/plain")
    return _answer(name)
