"""What people open in a browser: the dashboard and Swagger UI, both served from this process.

Every script and stylesheet is a local file under `api/static/` (the vendored ones under
`api/static/vendor/`, refreshed by `scripts/vendor.sh`), so `/docs` and the dashboard work without
internet access. None of these routes is in the OpenAPI document. (No ReDoc: its bundle loads its logo
from a CDN, which an offline page must not do.)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
VENDOR = f"{STATIC_PREFIX}/vendor"
DASHBOARD_PATH = "/dashboard"
DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


def pages_router(title: str, openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PATH, status_code=307)

    @router.get(DASHBOARD_PATH)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "dashboard" / "index.html", headers={"Cache-Control": "no-cache"})

    @router.get(DOCS_PATH)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} — Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
        )

    @router.get(OAUTH2_REDIRECT_PATH)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    return router


def install_pages(app: FastAPI) -> None:
    """The dashboard, `/docs` and the static files (create the app with docs_url=redoc_url=None)."""
    app.include_router(pages_router(app.title, app.openapi_url or "/openapi.json"))
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
