"""The admin page: static files, no build step; it signs in with a token kept in the tab's session storage and
calls the same HTTP API as everyone else (no route of its own beyond its files)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page's script is split by view, as ES modules: app.js (the session) imports common.js and one module per view.
_PAGE_FILES = {"index.html": "text/html", "app.css": "text/css",
               **{f"{name}.js": "text/javascript" for name in ("app", "common", "predict", "data", "models", "tokens")}}


async def page(request: web.Request) -> web.FileResponse:
    """The admin page: static files, no build step; it signs in with a token kept in the tab's session storage."""
    name = request.match_info.get("name", "index.html")
    if name not in _PAGE_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={"Content-Type": f"{_PAGE_FILES[name]}; charset=utf-8",
                                                        "Cache-Control": "no-cache"})


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)  # browsers ask for one; an empty answer keeps 404s out of the log


def mount(app: web.Application) -> None:
    """The page at /, its files under /static (a sub-application), and the browser's favicon question."""
    app.router.add_get("/", page)
    app.router.add_get("/favicon.ico", no_icon)
    files = web.Application()
    files.router.add_get("/{name}", page)
    app.add_subapp("/static", files)
