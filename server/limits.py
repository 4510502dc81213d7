"""Request limits and error answers: every refused request is a 4xx JSON body ``{"detail": ...}`` naming the
problem (plus ``errors`` for workflow problems), never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..components.errors.nodes import ArtifactError, WorkflowError
from ..components.errors.server import RequestError, ServerError

logger = logging.getLogger("diffblocks.server")
ARTIFACT_STATUS = {"malformed": 400, "missing": 404, "not_image": 415, "too_large": 413}


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``upload_limit`` on upload paths, ``json_limit`` elsewhere,
    by their Content-Length up front and by counting the bytes as they arrive (chunked bodies)."""

    def __init__(self, app, json_limit: int, upload_limit: int, upload_paths: tuple[str, ...] = ("/api/uploads",)):
        self.app, self.json_limit, self.upload_limit, self.upload_paths = app, json_limit, upload_limit, upload_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"] in self.upload_paths
        limit = self.upload_limit if upload else self.json_limit
        what = "the upload" if upload else "the request body"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            error = RequestError.too_large(what, int(length), limit)
            return await JSONResponse({"detail": str(error)}, status_code=error.status)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # raised inside the route's body read; FastAPI lets HTTPException through
                error = RequestError.too_large(what, None, limit)
                raise HTTPException(error.status, str(error))
            return message

        return await self.app(scope, counted, send)


def _validation_message(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where or 'body'}: {error.get('msg', 'invalid')}"


async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        ctx = bad_json[0].get("ctx") or {}
        error = RequestError.malformed_json(str(ctx.get("error", bad_json[0].get("msg"))))
        return JSONResponse({"detail": str(error)}, status_code=error.status)
    error = RequestError.bad_fields([_validation_message(e) for e in errors])
    return JSONResponse({"detail": str(error), "errors": jsonable_encoder(errors, exclude={"input", "ctx", "url"})},
                        status_code=error.status)


async def on_workflow(request: Request, exc: WorkflowError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "errors": exc.errors}, status_code=422)


async def on_artifact(request: Request, exc: ArtifactError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=ARTIFACT_STATUS.get(getattr(exc, "kind", ""), 400))


async def on_server(request: Request, exc: ServerError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error answering %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def install(app: FastAPI, json_limit: int, upload_limit: int) -> None:
    """Add the body limits and the error handlers to ``app``."""
    app.add_middleware(BodyLimit, json_limit=json_limit, upload_limit=upload_limit)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(WorkflowError, on_workflow)
    app.add_exception_handler(ArtifactError, on_artifact)
    app.add_exception_handler(ServerError, on_server)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
