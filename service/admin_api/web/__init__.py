"""The chat page: a static single page (index.html, app.js, app.css) served at `/`.

No build step and no external assets. The files are read once and served from memory by a small router,
each with a Content-Security-Policy that allows only this origin (no inline script or style, no
framing); core.middleware keeps a header a route set and adds the rest.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException, Response

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Revalidated on each load (cheap 200s, no ETag): a new release is never mixed with a cached old script.
WEB_HEADERS = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"}

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_CONTENT = {name: (files(__package__) / name).read_bytes() for name in _ASSETS}

router = APIRouter(include_in_schema=False)


def _asset(name: str) -> Response:
    return Response(_CONTENT[name], media_type=_ASSETS[name], headers=WEB_HEADERS)


@router.get("/")
async def index() -> Response:
    return _asset("index.html")


@router.get("/web/{name}")
async def asset(name: str) -> Response:
    if name == "index.html" or name not in _ASSETS:
        raise HTTPException(404, "Not Found")
    return _asset(name)
