"""``create_app``: the FastAPI application, its routers under ``/api``, and one lifespan that starts and stops
the workers."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles

from ..components.errors.server import EngineError
from . import limits
from .routers import artifacts, events, jobs, model_files, nodes, system
from .settings import ServerSettings
from .engine import NodeEngine
from .state import ServerState

STATIC = Path(__file__).parent / "static"
NO_PAGE = ("diffblocks node server: the web page is not built here (server/static/index.html is missing).\n"
           "The API is under /api (GET /api/nodes, POST /api/jobs, WS /api/events); its documentation is at /docs.\n")


def create_app(settings: ServerSettings | None = None, engine=None, static_dir: Path | None = None) -> FastAPI:
    """The node server's ASGI application.

    Args:
        settings: devices, data folder, limits; the defaults serve the CPU from a temporary folder.
        engine: the node engine seam (``engine.NodeEngine`` unless given; tests pass a fake).
        static_dir: the built web page (``server/static`` unless given), served at ``/`` when it has an index.html.
    """
    settings = settings or ServerSettings()
    if settings.engine_process and engine is not None:
        raise EngineError.not_in_child()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServerState.open(settings, engine if engine is not None else NodeEngine(settings.data_dir))
        app.state.server = state
        state.serve_catalog()
        state.pool.start()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="diffblocks node server", version="1", lifespan=lifespan,
                  description="List node types, validate and queue workflows, watch them run, fetch images.")
    for module in (nodes, jobs, artifacts, system, model_files, events):
        app.include_router(module.router, prefix="/api")
    limits.install(app, settings.max_json_bytes, settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    static_dir = STATIC if static_dir is None else Path(static_dir)
    if (static_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="page")
    else:
        @app.get("/", include_in_schema=False)
        async def no_page() -> PlainTextResponse:
            return PlainTextResponse(NO_PAGE)
    return app
