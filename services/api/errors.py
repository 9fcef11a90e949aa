"""Exception handlers: every error is JSON ``{"detail": ...}``, and none echoes the input.

Echoing is what FastAPI's default 422 does, and an input that is NaN (or holds a lone
surrogate) cannot be serialized: the error report itself would become a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from regsearch.domain.spec import SpecError
from regsearch.domain.validation import MAX_MESSAGE_CHARS, field_errors
from regsearch.store.db import StoreUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
def _json(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # Starlette's Allow names only the first route on the path (POST /jobs hides GET /jobs).
        allowed = [
            method
            for method in _METHODS
            if any(
                r.matches({**request.scope, "method": method})[0] == Match.FULL
                for r in request.app.router.routes
            )
        ]
        return _json(405, exc.detail, {"Allow": ", ".join(allowed)})
    return await http_exception_handler(request, exc)


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the route's body (``JobSpec`` for ``POST /jobs``), if it has one."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(body_field, "field_info", None), "annotation", None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


async def request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # With the body's model, a misspelt field gets the same "did you mean" as the CLI's.
    return _json(422, field_errors(exc.errors(), model=_body_model(request)))


async def spec_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpecError)
    return _json(422, [{"field": exc.field, "message": exc.message[:MAX_MESSAGE_CHARS]}])


async def store_unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    # A database that is down or locked is transient: tell the client when to come back.
    message = str(exc).splitlines()[0] if str(exc) else "database unavailable"
    if not isinstance(exc, StoreUnavailable):
        message = f"database unavailable: {message}"
    log.warning("answering 503: %s", message)
    return _json(503, message[:MAX_MESSAGE_CHARS], {"Retry-After": str(RETRY_AFTER_S)})


async def unexpected_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    # Starlette sends this response, then re-raises so the server logs the traceback.
    return _json(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(SpecError, spec_error_handler)
    app.add_exception_handler(StoreUnavailable, store_unavailable_handler)
    app.add_exception_handler(OperationalError, store_unavailable_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
