"""The pages the gateway serves itself: the built console at /console/ and Swagger UI at /docs.

Nothing is fetched from the internet: Swagger UI's files come from the PyPI package
`swagger-ui-bundle-v2` (Swagger UI 5, which renders FastAPI's OpenAPI 3.1; the older
`swagger-ui-bundle` ships 4.15, which does not), served under /docs/assets/. The console is
web/dist (XGET_CONSOLE_DIST_DIR), built by `make setup`; any path under /console/ that is not
a file is the single-page app's own route and gets index.html. Without a build, /console/
answers a page that says how to build it.
"""

from __future__ import annotations

import html
from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from libs.settings import Settings

from .console_auth import ROLE_KEY

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
DOCS_ASSETS = "/docs/assets"
PUBLIC = {ROLE_KEY: "public"}
REPO_ROOT = Path(__file__).resolve().parents[2]

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>XGet console not built</title></head><body style="font-family:sans-serif;margin:3em">
<h1>The XGet console is not built</h1>
<p>No built console at <code>{dist}</code>. Build it with <code>make setup</code>
(or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>), or point
<code>XGET_CONSOLE_DIST_DIR</code> at a build. The API works without it:
<a href="/docs">/docs</a>.</p></body></html>"""


def dist_dir(settings: Settings) -> Path:
    p = Path(settings.console_dist_dir)
    return p if p.is_absolute() else REPO_ROOT / p


def install(app: FastAPI, settings: Settings) -> None:
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False, openapi_extra=PUBLIC)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            # Swagger UI would fetch a validity badge from validator.swagger.io: off.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/console", include_in_schema=False, openapi_extra=PUBLIC)
    async def console_root() -> Response:
        return RedirectResponse("/console/", 308)

    @app.get("/console/{path:path}", include_in_schema=False, openapi_extra=PUBLIC)
    async def console(path: str) -> Response:
        root = dist_dir(settings).resolve()
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT.format(dist=html.escape(str(root))), 503)
        target = (root / path).resolve()
        if path and target.is_file():
            if not target.is_relative_to(root):
                raise HTTPException(404, "not found")
            # Vite names built assets by content hash: they never change under one name.
            immutable = target.parent.name == "assets"
            return FileResponse(
                target,
                headers={
                    "Cache-Control": "public, max-age=31536000, immutable"
                    if immutable
                    else "no-cache"
                },
            )
        if path.startswith("assets/"):
            raise HTTPException(404, f"no console asset {path}")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
